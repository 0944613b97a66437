"""``/healthz`` and ``/predict`` read a view of the model built once per model version, not
a copy of θ per request (at 2^22 buckets 8 clients looping on /healthz took training to 11 %
of its idle rate). Counted builds and traced allocations, not timings."""

from __future__ import annotations

import json
import threading
import tracemalloc
from typing import Any

import numpy as np
import pytest

from streamsgd.core.hashing import feature_index
from streamsgd.core.model import OnlineLogisticRegression
from streamsgd.core.standardize import Standardizer
from streamsgd.http.serving_view import ServingViewCache
from tests.support.kafka_helpers import wait_until
from tests.unit.test_http import App

BITS = 20
N_FEATURES = 1 << BITS  # θ is 8 MiB: a copy per request shows in the traced allocations
NAMES = ["country=FR", "device=ios", "hour=13", "plan=pro"]


def _rows(names: list[str]) -> np.ndarray:
    X = np.zeros((len(names), N_FEATURES))
    for row, name in enumerate(names):
        X[row, feature_index(name, BITS)] = 1.0
    return X


@pytest.fixture
def big() -> Any:
    app = App(N_FEATURES, hash_bits=BITS)
    app.model.learn_batch(_rows(NAMES), np.array([1.0, 0.0, 1.0, 0.0]))
    yield app
    app.server.stop()


def test_healthz_builds_one_view_per_model_version() -> None:
    small = App(4)  # its build is far under 5 ms: a new version is never served an old view
    try:
        views = small.server._server.serving_views
        assert [small.request("/healthz")[0] for _ in range(5)] == [200] * 5
        assert views.n_builds == 1
        small.model.learn_batch(np.ones((2, 4)), np.array([1.0, 0.0]))
        assert small.request("/healthz")[0] == 200
        assert views.n_builds == 2
    finally:
        small.server.stop()


def test_healthz_on_an_unchanged_model_allocates_no_copy_of_theta(big: App) -> None:
    big.request("/healthz")  # the view of this version is built here
    tracemalloc.start()
    try:
        for _ in range(3):
            assert big.request("/healthz")[0] == 200
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    theta_bytes = (N_FEATURES + 1) * 8
    assert peak < theta_bytes / 8, f"{peak} bytes traced: θ ({theta_bytes} bytes) was copied"


def test_predict_reuses_the_view_and_answers_as_the_model(big: App) -> None:
    views = big.server._server.serving_views
    big.request("/healthz")
    body = json.dumps({"features": {"country": "FR", "plan": "pro"}}).encode()
    status, answer, _ = big.request("/predict", body)
    assert status == 200 and views.n_builds == 1
    # Same θ, same order of summation (no standardisation): the model's own answer exactly.
    expected = big.model.predict_proba(_rows(["country=FR"]) + _rows(["plan=pro"]))
    assert json.loads(answer)["probabilities"] == expected.tolist()


def test_concurrent_requests_share_one_build(big: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """8 /healthz at once while the first build is held: one build, every request its."""
    views = big.server._server.serving_views
    release, entered = threading.Event(), threading.Semaphore(0)
    building, most = [0], [0]
    real = OnlineLogisticRegression.health

    def slow_health(model: OnlineLogisticRegression) -> str | None:
        building[0] += 1
        most[0] = max(most[0], building[0])
        entered.release()
        release.wait(30)
        building[0] -= 1
        return real(model)

    monkeypatch.setattr(OnlineLogisticRegression, "health", slow_health)
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(big.request("/healthz")[0]))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    assert entered.acquire(timeout=30)
    wait_until(lambda: big.server.active_connections == 8, 30, "8 requests in")
    release.set()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 8
    assert most[0] == 1 and views.n_builds == 1


def test_a_standardised_model_predicts_within_rounding_of_its_own_scores() -> None:
    """With ``standardize`` the view scores raw features with raw parameters: the model's
    number, summed in another order (relative 1e-12 bounds that rounding at d = 3)."""
    model = OnlineLogisticRegression(3, learning_rate=0.3, standardize=True)
    rng = np.random.default_rng(4)
    for _ in range(20):
        X = rng.normal(5.0, 3.0, size=(16, 3))
        model.learn_batch(X, (X[:, 0] > 5.0).astype(float))
    assert isinstance(model.inputs, Standardizer)
    X = rng.normal(5.0, 3.0, size=(8, 3))
    view = ServingViewCache(lambda: model).current()
    np.testing.assert_allclose(view.probabilities(X), model.predict_proba(X), rtol=1e-12)
