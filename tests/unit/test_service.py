"""The run loop with an in-memory source: metrics read back from an injected registry,
exactly-once resume after a simulated crash, partial batches, skipped steps."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamsgd import OnlineLogisticRegression
from streamsgd.checkpoint import DirectoryCheckpointStore
from streamsgd.codec import REJECT_REASONS, Decoder, encode_binary, encode_dense
from streamsgd.datasets.synthetic_stream import SyntheticStream
from streamsgd.telemetry.metrics import PrometheusSensor
from streamsgd.training.local_stepper import LocalStepper
from streamsgd.training.trainer import (
    FinalCheckpointError,
    ServiceConfig,
    Trainer,
    progressive_log_loss,
)
from tests.support.helpers import reference_fit
from tests.support.memory_source import MemorySource

D = 5


def dense_records(X: np.ndarray, y: np.ndarray) -> list[bytes]:
    return [encode_dense(X[i], y[i]) for i in range(len(y))]


def make_service(
    source: MemorySource,
    batch_size: int,
    registry: CollectorRegistry | None = None,
    store: DirectoryCheckpointStore | None = None,
    model: OnlineLogisticRegression | None = None,
    **config: object,
) -> Trainer:
    sensors = [PrometheusSensor(registry, process_collectors=False)] if registry is not None else []
    return Trainer(
        model or OnlineLogisticRegression(D, learning_rate=0.3),
        source,
        Decoder(D),
        ServiceConfig(batch_size=batch_size, **config),  # type: ignore[arg-type]
        checkpoint_store=store,
        sensors=sensors,
    )


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, labels)
    assert v is not None, name
    return v


def test_metrics_read_back_from_injected_registry() -> None:
    X, y = SyntheticStream(D, seed=4).samples(0, 1000)
    records = dense_records(X, y)
    bad = [b"{oops", b'{"x": [1], "y": 1}', b'{"x": [1, 2, 3, 4, 5], "y": 7}', b""]
    for i, raw in zip((10, 400, 401, 999), bad, strict=True):
        records.insert(i, raw)
    registry = CollectorRegistry()
    service = make_service(MemorySource(records), 16, registry)
    service.run()

    reference = OnlineLogisticRegression(D, learning_rate=0.3)
    loss_sum, misclassified, last = 0.0, 0, None
    for i in range(0, 1000, 16):
        last = reference.learn_batch(X[i : i + 16], y[i : i + 16])
        loss_sum += last.sums.loss_sum
        misclassified += last.n_misclassified
    assert np.array_equal(service.model.coef_, reference.coef_)

    assert value(registry, "streamsgd_records_consumed_total") == 1004
    assert value(registry, "streamsgd_samples_learned_total") == 1000
    assert value(registry, "streamsgd_updates_total") == math.ceil(1000 / 16)
    assert value(registry, "streamsgd_progressive_log_loss_total") == pytest.approx(
        loss_sum, rel=1e-12
    )
    assert value(registry, "streamsgd_progressive_misclassified_total") == misclassified
    assert value(registry, "streamsgd_records_rejected_total", reason="invalid_json") == 1
    assert value(registry, "streamsgd_records_rejected_total", reason="wrong_dimension") == 1
    assert value(registry, "streamsgd_records_rejected_total", reason="invalid_label") == 1
    assert value(registry, "streamsgd_records_rejected_total", reason="empty") == 1
    for reason in REJECT_REASONS:  # every labelled series exists from the start
        assert (
            registry.get_sample_value("streamsgd_records_rejected_total", {"reason": reason})
            is not None
        )
    assert value(registry, "streamsgd_updates_skipped_total", reason="non_finite") == 0
    assert last is not None
    assert value(registry, "streamsgd_batch_size") == last.n_samples == 1000 % 16
    assert value(registry, "streamsgd_batch_loss") == last.loss
    assert value(registry, "streamsgd_learning_rate") == 0.3
    assert value(registry, "streamsgd_gradient_norm") == last.gradient_norm
    stats = reference.gradient_stats
    assert value(registry, "streamsgd_gradient_variance") == stats.per_sample_variance
    assert value(registry, "streamsgd_gradient_estimator_variance") == stats.estimator_variance
    # NaN (not trusted, as after these 63 steps) reads back as NaN.
    noise_scale = value(registry, "streamsgd_gradient_noise_scale")
    both_nan = math.isnan(noise_scale) and math.isnan(stats.noise_scale)
    assert noise_scale == stats.noise_scale or both_nan
    assert value(registry, "streamsgd_model_weight_norm") == pytest.approx(
        np.linalg.norm(reference.coef_), rel=1e-12
    )
    assert value(registry, "streamsgd_model_features") == D
    assert value(registry, "streamsgd_minibatch_buffered_samples") == 0
    assert value(registry, "streamsgd_update_duration_seconds_count") == math.ceil(1000 / 16)
    assert value(registry, "streamsgd_last_update_timestamp_seconds") > 1.7e9


def test_non_finite_step_is_skipped_and_counted() -> None:
    X, y = SyntheticStream(D, seed=4).samples(0, 64)
    records = dense_records(X, y)
    # Valid, finite records whose step overflows: at w = 0 each has r = 0.5, and
    # Σ r x = 4 · 0.5 · 1.7e308 > max float, so the first minibatch's step is inf.
    for i in range(4):
        records[i] = encode_dense(np.full(D, 1.7e308), 0.0)
    registry = CollectorRegistry()
    # κ = 0: the non-finite step guard itself (with clipping these rows are scaled down and
    # learned; tests/faults/test_influence_faults.py).
    unclipped = OnlineLogisticRegression(D, learning_rate=0.3, clip_norm_ratio=0.0)
    service = make_service(MemorySource(records), 8, registry, model=unclipped)
    service.run()
    assert value(registry, "streamsgd_updates_skipped_total", reason="non_finite") == 1
    assert value(registry, "streamsgd_updates_total") == 7
    assert service.totals.samples_consumed == 64 and service.model.n_samples_seen == 56
    expected = reference_fit(X[8:], y[8:], 8, learning_rate=0.3)
    assert np.array_equal(service.model.coef_, expected.coef_)


def test_crash_and_resume_is_exactly_once(tmp_path: Path) -> None:
    X, y = SyntheticStream(D, seed=8).samples(0, 3000)
    # Batched binary records of 7 samples: minibatches of 16 end inside records.
    records = [encode_binary(X[i : i + 7], y[i : i + 7]) for i in range(0, 3000, 7)]
    records.insert(100, b"garbage")
    store = DirectoryCheckpointStore(tmp_path)
    for fail_after in (5, 17, 30):
        service = make_service(
            MemorySource(records, fail_after_polls=fail_after),
            16,
            store=store,
            checkpoint_every_updates=3,
        )
        with pytest.raises(KeyboardInterrupt):
            service.run()
    final = make_service(MemorySource(records), 16, store=store, checkpoint_every_updates=3)
    final.run()
    expected = reference_fit(X, y, 16, learning_rate=0.3)
    # The run ends with its partial minibatch, so its batch boundaries match the reference.
    assert np.array_equal(final.model.coef_, expected.coef_)
    assert final.model.intercept_ == expected.intercept_
    assert final.model.n_samples_seen == 3000
    assert final.totals.records_rejected == 1
    assert final.source.committed["mem"].offset == len(records)  # type: ignore[attr-defined]


def test_max_wait_applies_a_partial_batch() -> None:
    now = [0.0]

    class Trickle(MemorySource):
        """Five records on the first poll, then silence; never ends; each poll takes 1 s."""

        def poll(self, timeout_seconds: float):  # type: ignore[no-untyped-def]
            now[0] += 1.0
            return super().poll(timeout_seconds) if self.polls == 0 else self._idle()

        def _idle(self):  # type: ignore[no-untyped-def]
            self.polls += 1
            return []

        @property
        def exhausted(self) -> bool:
            return False

    X, y = SyntheticStream(D, seed=1).samples(0, 5)
    service = Trainer(
        OnlineLogisticRegression(D),
        Trickle(dense_records(X, y), per_poll=5),
        Decoder(D),
        ServiceConfig(batch_size=100, max_wait_seconds=3.0),
        clock=lambda: now[0],
    )
    stepper = service.stepper
    assert isinstance(stepper, LocalStepper)
    original = stepper.learn
    applied_at: list[float] = []

    def learn_then_stop(n: int):  # type: ignore[no-untyped-def]
        applied_at.append(now[0])
        service.request_stop()
        return original(n)

    stepper.learn = learn_then_stop  # type: ignore[method-assign]
    service.run()
    assert service.model.n_updates == 1 and service.model.n_samples_seen == 5
    # Records arrived at t = 1; the partial batch goes at the first poll with 3 s of silence.
    assert applied_at == [4.0]


def test_a_partial_batch_goes_once_its_first_sample_is_as_old_as_the_budget() -> None:
    """A live stream slower than m per budget: records keep coming (the idle wait never
    fires), yet no sample waits in the buffer longer than ``max_batch_age_seconds``."""
    now = [0.0]

    class Steady(MemorySource):
        """One record per poll, each poll 0.25 s (40 records: a run without the rule ends)."""

        def poll(self, timeout_seconds: float):  # type: ignore[no-untyped-def]
            now[0] += 0.25
            return super().poll(timeout_seconds)

    X, y = SyntheticStream(D, seed=2).samples(0, 40)
    service = Trainer(
        OnlineLogisticRegression(D),
        Steady(dense_records(X, y), per_poll=1),
        Decoder(D),
        ServiceConfig(batch_size=100, max_wait_seconds=3.0, max_batch_age_seconds=1.0),
        clock=lambda: now[0],
    )
    stepper = service.stepper
    assert isinstance(stepper, LocalStepper)
    original = stepper.learn
    applied: list[tuple[float, int]] = []

    def learn_and_record(n: int):  # type: ignore[no-untyped-def]
        applied.append((now[0], n))
        if len(applied) == 3:
            service.request_stop()
        return original(n)

    stepper.learn = learn_and_record  # type: ignore[method-assign]
    service.run()
    # First sample buffered at t = 0.25; at 1.25 it is 1 s old: the five samples so far go.
    assert applied == [(1.25, 5), (2.5, 5), (3.75, 5)]
    assert service.model.n_updates == 3 and service.model.n_samples_seen == 15


def test_online_blocks_take_the_per_sample_steps() -> None:
    """m = 1 through aligned learn_sequence blocks equals one learn_batch per sample (to
    rounding), with the same counters and metrics."""
    X, y = SyntheticStream(D, seed=12).samples(0, 1500)
    registry = CollectorRegistry()
    service = make_service(
        MemorySource(dense_records(X, y), per_poll=37), 1, registry, online_block_size=64
    )
    service.run()
    reference = OnlineLogisticRegression(D, learning_rate=0.3)
    loss_sum = 0.0
    for i in range(1500):
        loss_sum += reference.learn_batch(X[i : i + 1], y[i : i + 1]).sums.loss_sum
    np.testing.assert_allclose(service.model.coef_, reference.coef_, rtol=1e-12)
    assert service.model.n_updates == reference.n_updates == 1500
    assert value(registry, "streamsgd_samples_learned_total") == 1500
    assert value(registry, "streamsgd_updates_total") == 1500
    assert value(registry, "streamsgd_progressive_log_loss_total") == pytest.approx(
        loss_sum, rel=1e-12
    )
    assert value(registry, "streamsgd_batch_size") == 1
    assert value(registry, "streamsgd_gradient_variance") == pytest.approx(
        reference.gradient_stats.per_sample_variance, rel=1e-9
    )


def test_online_blocks_resume_bit_for_bit(tmp_path: Path) -> None:
    """Blocks are aligned on the samples consumed, so crashes (between polls of any size)
    and restarts cut the same blocks as an uninterrupted run: identical weights."""
    X, y = SyntheticStream(D, seed=13).samples(0, 2000)
    records = dense_records(X, y)
    straight = make_service(MemorySource(records, per_poll=53), 1, online_block_size=64)
    straight.run()
    store = DirectoryCheckpointStore(tmp_path)
    for fail_after, per_poll in ((3, 41), (9, 7), (20, 97)):
        crashing = make_service(
            MemorySource(records, per_poll=per_poll, fail_after_polls=fail_after),
            1,
            store=store,
            online_block_size=64,
            checkpoint_every_updates=1,
        )
        with pytest.raises(KeyboardInterrupt):
            crashing.run()
    final = make_service(MemorySource(records, per_poll=11), 1, store=store, online_block_size=64)
    final.run()
    assert np.array_equal(final.model.coef_, straight.model.coef_)
    assert final.model.intercept_ == straight.model.intercept_
    assert final.model.n_samples_seen == 2000


@pytest.mark.parametrize(
    "params",
    [
        {"learning_rate": 0.3},
        {"learning_rate": 0.5, "learning_rate_schedule": "inverse_scaling", "l2": 0.01},
    ],
)
@pytest.mark.parametrize("online_block_size", [32, 96, 48])
def test_online_blocks_give_the_same_weights_however_polls_group_them(
    params: dict[str, object], online_block_size: int
) -> None:
    """A backlog of many aligned blocks is learned in one learn_sequence call; the weights
    must be those of one call per block (a poll of one record each), bit for bit."""
    X, y = SyntheticStream(D, seed=14).samples(0, 3000)
    models = []
    for per_poll in (1, 1000, 333):
        service = Trainer(
            OnlineLogisticRegression(D, **params),  # type: ignore[arg-type]
            MemorySource(dense_records(X, y), per_poll=per_poll),
            Decoder(D),
            ServiceConfig(batch_size=1, online_block_size=online_block_size),
        )
        service.run()
        models.append(service.model)
    for model in models[1:]:
        assert np.array_equal(model.parameters, models[0].parameters)
        assert model.n_updates == 3000


def test_fast_lane_handles_bad_rows_and_offset_gaps_like_the_full_decoder() -> None:
    """Single-sample JSON records take the service's run fast lane; NaN, integers beyond
    float range and offset gaps inside a run must give the per-record results."""
    X, y = SyntheticStream(D, seed=21).samples(0, 300)
    records = dense_records(X, y)
    bad = {
        40: b'{"x": [1, 2, NaN, 4, 5], "y": 1}',
        41: b'{"x": [1, 2, 1' + b"0" * 400 + b', 4, 5], "y": 0}',
        150: b'{"x": [1, 2, 3, 4, Infinity], "y": 1}',
    }
    for i in sorted(bad, reverse=True):
        records.insert(i, bad[i])

    class Gappy(MemorySource):
        """Offsets jump by 5 after record 200 (as compacted topics or transaction markers)."""

        def poll(self, timeout_seconds: float):  # type: ignore[no-untyped-def]
            out = super().poll(timeout_seconds)
            for r in out:
                if r.offset >= 200:
                    r.offset += 5
            return out

    registry = CollectorRegistry()
    service = make_service(Gappy(records, per_poll=64), 16, registry)
    service.run()
    expected = reference_fit(X, y, 16, learning_rate=0.3)
    assert np.array_equal(service.model.coef_, expected.coef_)
    assert value(registry, "streamsgd_records_rejected_total", reason="non_finite") == 3
    assert service.buffer.positions["mem"].offset == len(records) + 5


def test_gauges_describe_a_restored_model_before_its_first_update(tmp_path: Path) -> None:
    X, y = SyntheticStream(D, seed=3).samples(0, 64)
    store = DirectoryCheckpointStore(tmp_path)
    make_service(MemorySource(dense_records(X, y)), 8, store=store).run()
    registry = CollectorRegistry()
    # The checkpoint covers every record: the restarted run makes no update at all.
    restarted = make_service(MemorySource(dense_records(X, y)), 8, registry, store=store)
    restarted.run()
    assert restarted.model.n_updates == 8
    assert value(registry, "streamsgd_model_features") == D
    assert value(registry, "streamsgd_model_weight_norm") == pytest.approx(
        float(np.linalg.norm(restarted.model.coef_)), rel=1e-12
    )
    assert value(registry, "streamsgd_updates_total") == 0


def test_ready_gauge_follows_the_readiness_check() -> None:
    registry = CollectorRegistry()
    sensor = PrometheusSensor(registry, process_collectors=False)
    ready = [False]
    sensor.bind_readiness(lambda: ready[0])
    assert value(registry, "streamsgd_ready") == 0
    ready[0] = True
    assert value(registry, "streamsgd_ready") == 1


# ------------------------------------------------------------------ failures and accounting


class FailingStore:
    """A checkpoint store whose saves fail (as a read-only or full directory does) while
    ``failing`` is true; counts the attempts."""

    def __init__(self, failing: bool = True) -> None:
        self.failing = failing
        self.saves = 0
        self.saved: dict[str, object] | None = None

    def load(self) -> dict[str, object] | None:
        return None

    def save(self, state: dict[str, object]) -> None:
        self.saves += 1
        if self.failing:
            raise OSError(28, "No space left on device")
        self.saved = state


def test_failed_final_checkpoint_raises_final_checkpoint_error() -> None:
    """A run whose last checkpoint cannot be written must not end as a success."""
    X, y = SyntheticStream(D, seed=30).samples(0, 100)
    registry = CollectorRegistry()
    store = FailingStore()
    service = make_service(MemorySource(dense_records(X, y)), 10, registry, store=store)  # type: ignore[arg-type]
    with pytest.raises(FinalCheckpointError, match="No space left"):
        service.run()
    assert isinstance(FinalCheckpointError("x"), RuntimeError)
    assert service.model.n_samples_seen == 100  # the model was learned, only not saved
    assert value(registry, "streamsgd_checkpoint_save_failures_total") == store.saves >= 1


def test_failed_periodic_checkpoints_are_counted_and_the_run_goes_on() -> None:
    """Periodic saves fail for a while, then the disk recovers: every failure is counted,
    the run learns every sample and its final checkpoint succeeds."""
    X, y = SyntheticStream(D, seed=31).samples(0, 400)
    registry = CollectorRegistry()
    store = FailingStore()

    class Recovering(MemorySource):
        def poll(self, timeout_seconds: float):  # type: ignore[no-untyped-def]
            if self.polls == 30:
                store.failing = False
            return super().poll(timeout_seconds)

    service = make_service(
        Recovering(dense_records(X, y), per_poll=10),
        10,
        registry,
        store=store,  # type: ignore[arg-type]
        checkpoint_every_updates=1,
    )
    service.run()
    failures = value(registry, "streamsgd_checkpoint_save_failures_total")
    assert failures >= 20 and store.saved is not None
    assert value(registry, "streamsgd_checkpoint_saves_total") >= 1
    assert service.model.n_samples_seen == 400
    assert service.last_checkpoint_error is None


def _unbounded(learning_rate: float = 0.3) -> OnlineLogisticRegression:
    """A model without the influence bound, which would scale the overflowing rows below
    down instead of letting their steps overflow (the skip path is what these tests test)."""
    return OnlineLogisticRegression(D, learning_rate=learning_rate, clip_norm_ratio=0.0)


def _overflowing_records() -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """64 valid samples whose first 4 overflow a step from w = 0 (as in the test above)."""
    X, y = SyntheticStream(D, seed=4).samples(0, 64)
    records = dense_records(X, y)
    for i in range(4):
        records[i] = encode_dense(np.full(D, 1.7e308), 0.0)
    return records, X, y


@pytest.mark.parametrize("online_block_size", [0, 32])
def test_skipped_steps_count_their_samples_alike_on_both_paths(online_block_size: int) -> None:
    """m = 1 one learn_batch per sample (block 0) and through learn_sequence blocks: the same
    skipped steps, skipped samples, learned samples and updates, in Totals and metrics."""
    records, _, _ = _overflowing_records()
    registry = CollectorRegistry()
    service = Trainer(
        # η = 4: one 1.7e308 sample alone overflows the step from w = 0 (4 · 0.5 · 1.7e308).
        _unbounded(learning_rate=4.0),
        MemorySource(records),
        Decoder(D),
        ServiceConfig(batch_size=1, online_block_size=online_block_size),
        sensors=[PrometheusSensor(registry, process_collectors=False)],
    )
    service.run()
    skipped = service.totals.updates_skipped
    assert skipped == 4  # the four 1.7e308 samples, each from w = 0
    assert service.totals.samples_skipped == skipped  # m = 1: one sample per step
    assert service.totals.samples_consumed == 64
    assert service.model.n_samples_seen == 64 - skipped
    assert value(registry, "streamsgd_updates_skipped_total", reason="non_finite") == skipped
    assert value(registry, "streamsgd_samples_skipped_total", reason="non_finite") == skipped
    assert value(registry, "streamsgd_samples_learned_total") == 64 - skipped
    assert value(registry, "streamsgd_updates_total") == 64 - skipped


def test_a_skipped_minibatch_counts_all_its_samples() -> None:
    records, _, _ = _overflowing_records()
    registry = CollectorRegistry()
    service = make_service(MemorySource(records), 8, registry, model=_unbounded())
    service.run()
    assert service.totals.updates_skipped == 1 and service.totals.samples_skipped == 8
    assert value(registry, "streamsgd_samples_skipped_total", reason="non_finite") == 8
    assert value(registry, "streamsgd_samples_learned_total") == 56


def test_samples_skipped_survive_a_restart_and_old_checkpoints_load(tmp_path: Path) -> None:
    records, _, _ = _overflowing_records()
    store = DirectoryCheckpointStore(tmp_path)
    make_service(MemorySource(records[:32]), 8, store=store, model=_unbounded()).run()
    state = store.load()
    assert state is not None and state["totals"]["samples_skipped"] == 8
    restarted = make_service(MemorySource(records), 8, store=store, model=_unbounded())
    restarted.run()
    assert restarted.totals.samples_skipped == 8 and restarted.totals.samples_consumed == 64
    # A checkpoint written before samples_skipped existed still loads (as 0).
    del state["totals"]["samples_skipped"]
    old = make_service(MemorySource(records), 8, model=_unbounded())
    old.restore(state)
    assert old.totals.samples_skipped == 0 and old.totals.updates_skipped == 1


def test_clipped_samples_and_model_health_reach_the_metrics() -> None:
    """Samples the influence bound scales down feed the clipped counter; the health gauge
    follows the model at every tick."""
    X, y = SyntheticStream(D, seed=32).samples(0, 80)
    X[[3, 40, 77]] *= 1e6  # three rows a million times the typical scale
    registry = CollectorRegistry()
    service = make_service(MemorySource(dense_records(X, y)), 16, registry)
    service.run()
    assert value(registry, "streamsgd_samples_clipped_total", reason="row_norm") == 3
    assert value(registry, "streamsgd_model_healthy") == 1


def test_labelled_series_and_health_exist_from_the_start() -> None:
    registry = CollectorRegistry()
    sensor = PrometheusSensor(registry, process_collectors=False)
    assert value(registry, "streamsgd_samples_skipped_total", reason="non_finite") == 0
    assert value(registry, "streamsgd_samples_clipped_total", reason="row_norm") == 0
    assert value(registry, "streamsgd_updates_skipped_total", reason="non_finite") == 0
    state = OnlineLogisticRegression(D).get_state()
    state["theta"] = np.full(D + 1, np.nan)
    sensor.model_loaded(OnlineLogisticRegression.from_state(state))
    assert value(registry, "streamsgd_model_healthy") == 0
    sensor.tick(OnlineLogisticRegression(D))  # no step since: health still follows the model
    assert value(registry, "streamsgd_model_healthy") == 1


def test_progressive_log_loss_is_the_learned_samples_mean() -> None:
    X, y = SyntheticStream(D, seed=33).samples(0, 96)
    service = make_service(MemorySource(dense_records(X, y)), 32)
    assert math.isnan(progressive_log_loss(service.totals, service.model))
    service.run()
    reference = OnlineLogisticRegression(D, learning_rate=0.3)
    total = sum(
        reference.learn_batch(X[i : i + 32], y[i : i + 32]).sums.loss_sum for i in (0, 32, 64)
    )
    assert progressive_log_loss(service.totals, service.model) == pytest.approx(
        total / 96, rel=1e-12
    )


@pytest.mark.parametrize("params", [{"l2": 1e-3}, {"optimizer": "adagrad", "l1": 1e-4}])
def test_hashed_online_blocks_give_the_same_bits_however_polls_group_them(
    params: dict[str, object],
) -> None:
    """m = 1 on hashed named features runs the O(nnz) compiled loop, whose lazy scale
    factors are folded at every aligned block: one record per poll, large polls and odd
    polls must give the same weights and statistics, bit for bit."""
    rng = np.random.default_rng(3)
    records = [
        json.dumps(
            {"features": {f"f{j}": str(int(rng.integers(0, 50))) for j in range(6)}, "y": i % 2}
        ).encode()
        for i in range(1200)
    ]
    bits = 12
    states = []
    for per_poll in (1, 500, 77):
        service = Trainer(
            OnlineLogisticRegression(1 << bits, learning_rate=0.1, **params),  # type: ignore[arg-type]
            MemorySource(records, per_poll=per_poll),
            Decoder(1 << bits, hash_bits=bits),
            ServiceConfig(batch_size=1, online_block_size=64),
        )
        service.run()
        assert service.model.n_updates == 1200
        states.append(pickle.dumps(service.model.get_state()))
    assert states[1] == states[0] and states[2] == states[0]
