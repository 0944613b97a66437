"""``GET /model`` bounded (docs/operations.md#what-is-guaranteed): a hashed model's weights sparse
by default, the document built once per model version and one build at a time."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from streamsgd.core.hashing import feature_index
from streamsgd.http.model_document import model_document as build_document
from tests.support.kafka_helpers import wait_until
from tests.unit.test_http import App

BITS = 12


@pytest.fixture
def hashed() -> Iterator[App]:
    app = App(1 << BITS, hash_bits=BITS)
    app.model.learn_batch(*named_rows([f"f{i}" for i in range(12)]))
    yield app
    app.server.stop()


def named_rows(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One row per name, that name's bucket set to 1; labels alternate."""
    X = np.zeros((len(names), 1 << BITS))
    for row, name in enumerate(names):
        X[row, feature_index(name, BITS)] = 1.0
    return X, np.arange(len(names)) % 2.0


def get_model(app: App, query: str = "") -> tuple[int, dict[str, Any]]:
    status, body, ctype = app.request("/model" + query)
    assert ctype == "application/json"
    return status, json.loads(body)


def test_hashed_model_is_sparse_by_default(hashed: App) -> None:
    status, document = get_model(hashed)
    coef = hashed.model.coef_
    assert status == 200 and "coef" not in document and document["coef_format"] == "sparse"
    assert document["coef_indices"] == np.flatnonzero(coef).tolist()
    assert 0 < len(document["coef_indices"]) < 40  # 12 names hashed, out of 4,096 buckets
    assert document["coef_values"] == coef[coef != 0].tolist()
    assert document["progressive_log_loss"] == 0.5 and document["digest"]


def test_dense_coefficients_on_request(hashed: App) -> None:
    status, dense = get_model(hashed, "?coef=dense")
    _, sparse = get_model(hashed)
    assert status == 200 and dense["coef_format"] == "dense"
    assert dense["coef"] == hashed.model.coef_.tolist()
    assert dense["digest"] == sparse["digest"]
    status, error = get_model(hashed, "?coef=all")
    assert status == 400 and error["reason"] == "invalid_query"


def test_document_is_built_once_per_model_version(hashed: App) -> None:
    cache = hashed.server._server.model_cache
    first = [get_model(hashed)[1] for _ in range(5)]
    assert cache.n_builds == 1 and all(doc == first[0] for doc in first)
    hashed.model.learn_batch(*named_rows(["z"]))
    assert get_model(hashed)[1]["n_updates"] == first[0]["n_updates"] + 1
    assert cache.n_builds == 2


def test_concurrent_requests_wait_for_one_build(
    hashed: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 requests at once while a build is held: one build runs, the others wait for it and
    send its bytes (8 clients used to build 8 documents of 2^b weights at once)."""
    release, entered = threading.Event(), threading.Semaphore(0)
    building, most = [0], [0]
    real = build_document

    def slow_build(*args: Any, **kwargs: Any) -> dict[str, Any]:
        building[0] += 1
        most[0] = max(most[0], building[0])
        entered.release()
        release.wait(30)
        building[0] -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr("streamsgd.http.model_cache.model_document", slow_build)
    answers: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: answers.append(get_model(hashed)[1])) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    assert entered.acquire(timeout=30)
    wait_until(lambda: hashed.server.active_connections == 8, 30, "8 requests in")
    release.set()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 8 and all(a == answers[0] for a in answers)
    assert most[0] == 1 and hashed.server._server.model_cache.n_builds == 1
