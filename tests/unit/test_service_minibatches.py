"""m = 32 on hashed named features through the service: a poll's whole minibatches go
through one compiled call (core/multi_step.py), and the model, the statistics and the
progressive totals are the same bits whatever the poll sizes and wherever a crash and a
restart from a checkpoint cut the stream.

Bit-equality is right: every run replays the same steps in the same order."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression
from streamsgd.checkpoint import DirectoryCheckpointStore
from streamsgd.codec import Decoder
from streamsgd.training.ports import Sensor
from streamsgd.training.trainer import ServiceConfig, Trainer
from tests.support.memory_source import MemorySource

BITS = 12
PARAMS = [{}, {"optimizer": "adagrad", "l1": 1e-4}, {"l2": 1e-3}]


def _records(n: int) -> list[bytes]:
    rng = np.random.default_rng(5)
    records = []
    for i in range(n):
        features: dict[str, Any] = {f"f{j}": str(int(rng.integers(0, 50))) for j in range(6)}
        features["x"] = float(rng.normal())
        records.append(json.dumps({"features": features, "y": (i // 7) % 2}).encode())
    return records


class Calls(Sensor):
    """The compiled calls and their steps."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def batches_applied(self, stats: Any, model: Any, duration_seconds: float) -> None:
        self.steps.append(stats.n_steps if stats.fast_path else 0)


def _service(
    params: dict[str, object],
    source: MemorySource,
    store: DirectoryCheckpointStore | None = None,
    sensors: tuple[Sensor, ...] = (),
    **config: object,
) -> Trainer:
    return Trainer(
        OnlineLogisticRegression(1 << BITS, learning_rate=0.1, **params),  # type: ignore[arg-type]
        source,
        Decoder(1 << BITS, hash_bits=BITS),
        ServiceConfig(batch_size=32, **config),  # type: ignore[arg-type]
        checkpoint_store=store,
        sensors=sensors,
    )


def _run_state(service: Trainer) -> bytes:
    totals = service.totals
    return pickle.dumps(
        (service.model.get_state(), totals.progressive_loss_sum, totals.progressive_misclassified)
    )


@pytest.mark.parametrize("params", PARAMS)
def test_poll_sizes_do_not_change_the_bits(params: dict[str, object]) -> None:
    """Polls of 1, 77 and 500 records: the same model, statistics and progressive totals,
    and for a model without L2 many steps per compiled call."""
    records = _records(3200)
    states = []
    for per_poll in (1, 77, 500):
        calls = Calls()
        service = _service(params, MemorySource(records, per_poll=per_poll), sensors=(calls,))
        service.run()
        assert service.model.n_updates == 100
        states.append(_run_state(service))
        compiled = not params.get("l2")
        assert sum(calls.steps) == (100 if compiled else 0)
        if compiled and per_poll == 500:
            assert max(calls.steps) >= 10
    assert states[1] == states[0] and states[2] == states[0]


@pytest.mark.parametrize("params", PARAMS[:2])
def test_restarts_from_mid_stream_checkpoints_are_bit_identical(
    params: dict[str, object], tmp_path: Path
) -> None:
    """Crashes after polls of odd sizes, each restart from the last checkpoint, then the
    rest in compiled calls: the uninterrupted run's model and statistics."""
    records = _records(3200)
    straight = _service(params, MemorySource(records, per_poll=301))
    straight.run()
    store = DirectoryCheckpointStore(tmp_path)
    for fail_after, per_poll in ((2, 411), (5, 97), (4, 233)):
        crashing = _service(
            params,
            MemorySource(records, per_poll=per_poll, fail_after_polls=fail_after),
            store,
            checkpoint_every_updates=1,
        )
        with pytest.raises(KeyboardInterrupt):
            crashing.run()
    calls = Calls()
    final = _service(params, MemorySource(records, per_poll=129), store, (calls,))
    final.run()
    assert final.model.n_samples_seen == 3200 and sum(calls.steps) > 0  # compiled calls
    assert pickle.dumps(final.model.get_state()) == pickle.dumps(straight.model.get_state())
