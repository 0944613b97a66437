"""Partitions that appear, for replicas
(docs/operations.md#what-the-trainer-does-for-each-kafka-operation): rank 0 asks the source for the
partition list (``partitions_check_seconds``), carries a grown list on the exchange, and every
replica reassigns; the product's own discovery, with N threads as replicas. The same under real
mpiexec and Kafka: tests/distributed/test_partitions_appear.py."""

from __future__ import annotations

import numpy as np

from streamsgd.codec import Decoder
from streamsgd.distributed.step_manifest import replay_manifest
from streamsgd.training.buffer import Position
from streamsgd.training.ports import SourceRecord
from streamsgd.training.trainer import ServiceConfig
from tests.support.replicas import PartitionedMemorySource
from tests.unit.test_replicated import (
    D,
    _model,
    _run_replicas,
    _stepper,
    _valid_samples,
    _values,
)


class GrowsWhileRead(PartitionedMemorySource):
    """Lists its first two partitions until this replica has read ``reveal_after`` records,
    then all of them (the topic grown while the job runs). ``shrunk`` answers a partial list
    of one partition first (a metadata answer that must never drop a partition).
    ``answer_seconds``: the broker's metadata answer takes this long (a loaded broker); a
    request that does not wait for it fails, as a client's timeout does."""

    def __init__(
        self,
        values: dict[str, list[bytes]],
        reveal_after: int,
        shrunk: bool,
        answer_seconds: float = 0.0,
    ) -> None:
        super().__init__(values)
        self.reveal_after = reveal_after
        self.shrunk = shrunk
        self.answer_seconds = answer_seconds
        self.read = 0
        self.asked = 0

    def partitions(self, timeout_seconds: float) -> list[str]:
        self.asked += 1
        if timeout_seconds < self.answer_seconds:
            raise TimeoutError(f"no metadata answer within {timeout_seconds} s")
        every = sorted(self.values)
        if self.read >= self.reveal_after:
            return every
        return every[:1] if self.shrunk and self.asked > 1 else every[:2]

    def poll(self, timeout_seconds: float) -> list[SourceRecord]:
        records = super().poll(timeout_seconds)
        self.read += len(records)
        return records


def _run(shrunk: bool, answer_seconds: float = 0.0) -> None:
    values = _values(3, 90, seed=12)
    config = ServiceConfig(batch_size=12, max_wait_seconds=0.05, checkpoint_every_updates=4)
    sources = [
        GrowsWhileRead(values, reveal_after=40, shrunk=shrunk, answer_seconds=answer_seconds)
        for _ in range(2)
    ]
    services, manifest, errors = _run_replicas(
        values,
        2,
        config,
        partitions_check_seconds=0.0,
        prepare=lambda services: [
            setattr(s.intake, "source", source) for s, source in zip(services, sources, strict=True)
        ],
    )
    assert not errors
    first, second = services
    partitions = [_stepper(s).replica.partitions for s in services]
    assert partitions[0] == partitions[1] == tuple(sorted(values))
    assert sources[0].asked > 1, "rank 0 asked the source for the partition list"
    assert sources[1].asked == 0, "only rank 0 asks (the start included: it loads the state)"
    # Every record once: the third partition read from its start to its end, no more.
    assert first.positions == {p: Position(len(v)) for p, v in values.items()}
    assert first.model.n_samples_seen == _valid_samples(values)
    assert first.model.parameters.tobytes() == second.model.parameters.tobytes()
    read = PartitionedMemorySource(values).read
    oracle = replay_manifest(manifest.read(), read, Decoder(D), _model())
    # The replay applies the same steps in the same order: 1e-10 absorbs only numpy's
    # summation paths differing between a thread's reduction and the replay's.
    np.testing.assert_allclose(first.model.parameters, oracle.parameters, rtol=1e-10, atol=1e-13)


def test_rank_0_finds_a_grown_partition_list_and_every_replica_reads_it_once() -> None:
    _run(shrunk=False)


def test_a_partial_partition_list_never_drops_a_partition() -> None:
    _run(shrunk=True)


def test_a_slow_metadata_answer_is_waited_for() -> None:
    """Under load a broker's metadata answer took more than the 0.1 s rank 0 used to give it,
    every time: the new partitions were never read (a CI failure of the mpiexec test)."""
    _run(shrunk=False, answer_seconds=0.5)
