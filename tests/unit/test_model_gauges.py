"""The O(d) model gauges (‖w‖, health) cost nothing per poll and are exact when scraped."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streamsgd import OnlineLogisticRegression
from streamsgd.core.row_scale import vector_norm
from streamsgd.datasets.synthetic_stream import SyntheticStream
from streamsgd.telemetry.metrics import PrometheusSensor
from tests.support.memory_source import MemorySource
from tests.unit.test_service import D, dense_records, make_service, value


def test_no_full_model_pass_per_poll_and_exact_at_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many polls, no scrape: the model is never copied whole; one scrape: one copy per
    O(d) gauge, and the values are the model's as it is then."""
    copies = 0
    original = OnlineLogisticRegression._snapshot

    def counting_snapshot(self: OnlineLogisticRegression) -> np.ndarray:
        nonlocal copies
        copies += 1
        return original(self)

    monkeypatch.setattr(OnlineLogisticRegression, "_snapshot", counting_snapshot)
    X, y = SyntheticStream(D, seed=41).samples(0, 400)
    records = dense_records(X, y)
    registry = CollectorRegistry()
    model = OnlineLogisticRegression(D, learning_rate=0.3)
    service = make_service(MemorySource(records, per_poll=7), 8, registry, model=model)
    service.run()
    assert copies == 0
    generate_latest(registry)  # one whole scrape
    assert copies == 2  # one per O(d) gauge
    assert value(registry, "streamsgd_samples_learned_total") == 400  # ≈ 58 polls ran
    expected_norm = vector_norm(original(model)[:-1])
    assert value(registry, "streamsgd_model_weight_norm") == expected_norm  # same computation
    assert value(registry, "streamsgd_model_healthy") == 1


def test_health_gauge_follows_a_model_that_explodes_between_scrapes() -> None:
    registry = CollectorRegistry()
    sensor = PrometheusSensor(registry, process_collectors=False)
    assert value(registry, "streamsgd_model_healthy") == 0  # no model yet
    model = OnlineLogisticRegression(D)
    sensor.model_loaded(model)
    assert value(registry, "streamsgd_model_healthy") == 1
    model._theta[0] = np.inf  # no tick since: the scrape still sees it
    assert value(registry, "streamsgd_model_healthy") == 0
    assert not math.isfinite(value(registry, "streamsgd_model_weight_norm"))
