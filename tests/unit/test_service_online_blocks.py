"""m = 1 on hashed named features through the service: the O(nnz) loop carries its deferred
work on the model (core/deferred.py), so the weights do not depend on --online-block-size,
on the poll sizes, or on where a crash and a restart from a checkpoint cut the stream.

Bit-equality is right: every run replays the same steps in the same order."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression
from streamsgd.checkpoint import DirectoryCheckpointStore
from streamsgd.codec import Decoder
from streamsgd.training.trainer import ServiceConfig, Trainer
from tests.support.memory_source import MemorySource

BITS = 12
PARAMS = [{"l2": 1e-3}, {"optimizer": "adagrad", "l1": 1e-4}, {}]


def _records(n: int) -> list[bytes]:
    rng = np.random.default_rng(3)
    return [
        json.dumps(
            {"features": {f"f{j}": str(int(rng.integers(0, 50))) for j in range(6)}, "y": i % 2}
        ).encode()
        for i in range(n)
    ]


def _service(
    params: dict[str, object],
    source: MemorySource,
    block: int,
    store: DirectoryCheckpointStore | None = None,
    **config: object,
) -> Trainer:
    return Trainer(
        OnlineLogisticRegression(1 << BITS, learning_rate=0.1, **params),  # type: ignore[arg-type]
        source,
        Decoder(1 << BITS, hash_bits=BITS),
        ServiceConfig(batch_size=1, online_block_size=block, **config),  # type: ignore[arg-type]
        checkpoint_store=store,
    )


@pytest.mark.parametrize("params", PARAMS)
def test_block_size_does_not_change_the_weights(params: dict[str, object]) -> None:
    """Blocks of 32, 48 and 4,096 samples, polls of 1, 77 and 500 records: the same bits
    (the loop used to fold its lazy factors at every block: each block size had its own)."""
    records = _records(1500)
    states = []
    for block, per_poll in ((32, 1), (48, 77), (4096, 500)):
        service = _service(params, MemorySource(records, per_poll=per_poll), block)
        service.run()
        assert service.model.n_updates == 1500
        states.append(pickle.dumps(service.model.get_state()))
    assert states[1] == states[0] and states[2] == states[0]


@pytest.mark.parametrize("params", PARAMS)
def test_restarts_from_mid_stream_checkpoints_are_bit_identical(
    params: dict[str, object], tmp_path: Path
) -> None:
    """Crashes after polls of odd sizes, each restart from the last checkpoint (written
    with deferred work pending), then the rest: the uninterrupted run's weights."""
    records = _records(1500)
    straight = _service(params, MemorySource(records, per_poll=53), 32)
    straight.run()
    store = DirectoryCheckpointStore(tmp_path)
    for fail_after, per_poll in ((3, 41), (9, 7), (20, 37)):
        crashing = _service(
            params,
            MemorySource(records, per_poll=per_poll, fail_after_polls=fail_after),
            32,
            store,
            checkpoint_every_updates=1,
        )
        with pytest.raises(KeyboardInterrupt):
            crashing.run()
    stored = store.load()
    assert stored is not None and stored["model"].get("deferred") is not None
    final = _service(params, MemorySource(records, per_poll=11), 32, store)
    final.run()
    assert final.model.n_samples_seen == 1500
    assert np.array_equal(final.model.coef_, straight.model.coef_)
    assert final.model.intercept_ == straight.model.intercept_
