"""HTTP endpoints against a real server on 127.0.0.1 (stdlib client)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamsgd import OnlineLogisticRegression
from streamsgd.codec import Decoder
from streamsgd.core.hashing import feature_index
from streamsgd.datasets.synthetic_stream import SyntheticStream
from streamsgd.http import HttpServer, model_document
from streamsgd.telemetry.metrics import PrometheusSensor


class App:
    def __init__(self, n_features: int, hash_bits: int | None = None) -> None:
        self.model = OnlineLogisticRegression(n_features, learning_rate=0.5)
        self.ready = False
        self.healthy = True
        self.registry = CollectorRegistry()
        self.sensor = PrometheusSensor(self.registry)
        self.server = HttpServer(
            "127.0.0.1",
            0,
            self.registry,
            get_model=lambda: self.model,
            decoder=Decoder(n_features, hash_bits),
            is_ready=lambda: self.ready,
            is_healthy=lambda: self.healthy,
            model_extra=lambda: {"progressive_log_loss": 0.5},
            max_body_bytes=4096,
        ).start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def request(self, path: str, body: bytes | None = None) -> tuple[int, bytes, str]:
        req = urllib.request.Request(
            self.url + path, data=body, method="POST" if body is not None else "GET"
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read(), resp.headers["Content-Type"]
        except urllib.error.HTTPError as err:
            return err.code, err.read(), err.headers["Content-Type"]


@pytest.fixture
def app() -> Iterator[App]:
    a = App(4)
    X, y = SyntheticStream(4, seed=1).samples(0, 256)
    for i in range(0, 256, 32):
        a.model.learn_batch(X[i : i + 32], y[i : i + 32])
    yield a
    a.server.stop()


def post(app: App, document: Any) -> tuple[int, Any]:
    status, body, ctype = app.request("/predict", json.dumps(document).encode())
    assert ctype == "application/json"
    return status, json.loads(body)


def test_metrics_endpoint_exposes_the_registry(app: App) -> None:
    status, body, ctype = app.request("/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    text = body.decode()
    assert 'streamsgd_records_rejected_total{reason="invalid_json"} 0.0' in text
    assert "streamsgd_build_info{" in text


def test_health_and_readiness(app: App) -> None:
    assert app.request("/healthz")[0] == 200
    status, body, _ = app.request("/readyz")
    assert status == 503 and json.loads(body) == {"ready": False}
    app.ready = True
    assert app.request("/readyz")[0] == 200


def test_model_document(app: App) -> None:
    status, body, _ = app.request("/model")
    doc = json.loads(body)
    assert status == 200
    assert doc["coef"] == app.model.coef_.tolist()
    assert doc["intercept"] == app.model.intercept_
    assert doc["n_updates"] == 8 and doc["n_samples_seen"] == 256
    assert doc["progressive_log_loss"] == 0.5
    assert (
        doc["gradient_statistics"]["gradient_variance"]
        == app.model.gradient_stats.per_sample_variance
    )


def test_predict_dense_forms(app: App) -> None:
    X = np.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    status, doc = post(app, {"X": X.tolist()})
    assert status == 200
    assert doc["probabilities"] == app.model.predict_proba(X).tolist()
    status, doc = post(app, {"x": X[0].tolist()})
    assert status == 200 and doc["probabilities"] == app.model.predict_proba(X[:1]).tolist()


def test_predict_named_features() -> None:
    a = App(1 << 6, hash_bits=6)
    try:
        X = np.zeros((4, 64))
        X[:, feature_index("country=FR", 6)] = 1.0
        a.model.learn_batch(X, np.ones(4))
        status, doc = post(a, {"features": {"country": "FR"}})
        assert status == 200
        expected = 1 / (
            1 + np.exp(-(a.model.coef_[feature_index("country=FR", 6)] + a.model.intercept_))
        )
        assert doc["probabilities"] == pytest.approx([expected], rel=1e-12)
    finally:
        a.server.stop()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{nope", "invalid_json"),
        (b'{"x": [1, 2]}', "wrong_dimension"),
        (b'{"x": [1, 2, "a", 4]}', "invalid_schema"),
        (b'{"x": [1, 2, NaN, 4]}', "non_finite"),
        (b'{"features": {"a": 1}}', "hashing_disabled"),
        (b'{"y": 1}', "invalid_schema"),
        (b"[1, 2]", "invalid_schema"),
    ],
)
def test_predict_bad_input_is_400_json(app: App, body: bytes, reason: str) -> None:
    status, raw, ctype = app.request("/predict", body)
    assert status == 400 and ctype == "application/json"
    assert json.loads(raw)["reason"] == reason


def test_predict_body_limit_and_unknown_paths(app: App) -> None:
    status, _, _ = app.request("/predict", b"{" + b" " * 5000 + b"}")
    assert status == 413
    assert app.request("/nothing")[0] == 404
    assert app.request("/other", b"{}")[0] == 404


def test_predictions_under_load_do_not_change_training() -> None:
    """Hammer /predict and /metrics from threads while training; the trained weights must be
    bit-for-bit those of the same training without HTTP traffic, and every answer valid."""
    X, y = SyntheticStream(4, seed=9).samples(0, 20000)
    quiet = OnlineLogisticRegression(4, learning_rate=0.5)
    for i in range(0, 20000, 4):
        quiet.learn_batch(X[i : i + 4], y[i : i + 4])

    app = App(4)
    stop = threading.Event()
    answers: list[float] = []
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            while not stop.is_set():
                status, doc = post(app, {"X": X[:3].tolist()})
                assert status == 200
                answers.extend(doc["probabilities"])
                assert app.request("/metrics")[0] == 200
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(0, 20000, 4):
            app.model.learn_batch(X[i : i + 4], y[i : i + 4])
    finally:
        stop.set()
        for t in threads:
            t.join()
        app.server.stop()
    assert not errors
    assert answers and all(0.0 < p < 1.0 for p in answers)
    assert np.array_equal(app.model.coef_, quiet.coef_)
    assert app.model.intercept_ == quiet.intercept_


class _HealthReportingModel(OnlineLogisticRegression):
    """A model that reports itself unhealthy through ``health()`` (the core's contract)."""

    def health(self) -> str | None:
        return "weight_norm"


def test_healthz_reports_the_service_and_the_model_health(app: App) -> None:
    status, body, _ = app.request("/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    app.model = _HealthReportingModel(4)
    status, body, _ = app.request("/healthz")
    assert status == 503
    assert json.loads(body) == {
        "status": "unhealthy",
        "reason": "weight_norm",
        "error": "model unhealthy: weight_norm",
    }
    status, body, _ = app.request("/predict", b'{"x": [1, 2, 3, 4]}')
    assert status == 503 and json.loads(body)["reason"] == "model_unhealthy"


def test_healthz_fails_when_the_service_failed(app: App) -> None:
    app.healthy = False
    status, body, _ = app.request("/healthz")
    assert status == 503
    assert json.loads(body) == {
        "status": "failed",
        "reason": "service_failed",
        "error": "the training loop has failed",
    }


def test_head_sends_the_headers_of_get_without_a_body(app: App) -> None:
    _, get_body, _ = app.request("/model")
    req = urllib.request.Request(app.url + "/model", method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == len(get_body)
        assert resp.read() == b""


def test_model_document_is_finite_or_null_and_keeps_its_own_fields() -> None:
    state = OnlineLogisticRegression(3).get_state()
    state["theta"] = np.array([1.5, np.nan, -np.inf, np.inf])
    model = OnlineLogisticRegression.from_state(state)
    document = model_document(
        model,
        {"loss": np.float64("nan"), "nested": {"a": [1.0, float("inf")], "b": np.arange(2)}},
    )
    assert document["coef"] == [1.5, None, None] and document["intercept"] is None
    assert document["health"] == "non_finite"
    assert document["loss"] is None
    assert document["nested"] == {"a": [1.0, None], "b": [0, 1]}
    json.dumps(document, allow_nan=False)  # raises on any NaN or Infinity left
    with pytest.raises(ValueError, match="coef"):
        model_document(model, {"coef": []})
