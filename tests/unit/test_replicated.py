"""The replicated loop (streamsgd.replicated) with N threads as replicas: byte-identical
models, global totals, the manifest replay as the oracle, multi-sample records split
across steps, the global sample limit, and the split-brain guard. The same loop under real
mpiexec and Kafka is tested in tests/distributed."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression
from streamsgd.buffer import Position
from streamsgd.codec import Decoder, Rejection, decode_poll, encode_dense
from streamsgd.codec.binary import encode_binary
from streamsgd.core.controller import NoiseController
from streamsgd.exchange import OwnershipConflict
from streamsgd.manifest import replay_manifest
from streamsgd.ports import SourceRecord
from streamsgd.replicated import ReplicatedService
from streamsgd.service import ServiceConfig
from tests.support.replicas import MemoryManifest, PartitionedMemorySource, ThreadRoom

D = 5


def _values(n_partitions: int, n_records: int, seed: int, batched: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(D)
    values: dict[str, list[bytes]] = {}
    for p in range(n_partitions):
        records = []
        for i in range(n_records):
            if i % 17 == 5:
                records.append(b"{not json")
                continue
            n = int(rng.integers(1, 5)) if batched else 1
            X = rng.standard_normal((n, D))
            y = (rng.random(n) < 1 / (1 + np.exp(-X @ w))).astype(float)
            records.append(encode_binary(X, y) if batched else encode_dense(X[0], y[0]))
        values[f"t:{p}"] = records
    return values


def _model(controller: bool = False) -> OnlineLogisticRegression:
    if controller:
        return OnlineLogisticRegression(D, controller=NoiseController.create("auto"))
    return OnlineLogisticRegression(D, learning_rate=0.2, l2=1e-3)


def _run_replicas(
    values: dict,
    n_replicas: int,
    config: ServiceConfig,
    controller: bool = False,
    owned_override: dict[int, list[str]] | None = None,
) -> tuple[list[ReplicatedService], MemoryManifest, list[BaseException]]:
    room = ThreadRoom(n_replicas)
    manifest = MemoryManifest()
    services = [
        ReplicatedService(
            _model(controller),
            PartitionedMemorySource(values),
            Decoder(D),
            config,
            collective=room.member(rank),
            manifest=manifest if rank == 0 else None,
        )
        for rank in range(n_replicas)
    ]
    errors: list[BaseException] = []

    def run(service: ReplicatedService) -> None:
        try:
            if owned_override is not None:
                original = service._assign

                def assign() -> None:
                    original()
                    service.owned = owned_override.get(service.collective.rank, service.owned)

                service._assign = assign  # type: ignore[method-assign]
            service.run()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            room.barrier.abort()

    threads = [threading.Thread(target=run, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    return services, manifest, errors


def _valid_samples(values: dict) -> int:
    records = [SourceRecord(p, i, value=v) for p, vs in values.items() for i, v in enumerate(vs)]
    items = decode_poll(Decoder(D), records)
    return sum(item.n_samples for item in items if not isinstance(item, Rejection))


@pytest.mark.parametrize("n_replicas", [2, 3])
@pytest.mark.parametrize("batched", [False, True])
def test_replicas_agree_and_equal_the_manifest_replay(n_replicas: int, batched: bool) -> None:
    values = _values(4, 120, seed=n_replicas, batched=batched)
    config = ServiceConfig(batch_size=16, max_wait_seconds=0.05, checkpoint_every_updates=5)
    services, manifest, errors = _run_replicas(values, n_replicas, config)
    assert not errors
    first = services[0]
    # Bit-equality: every replica applies the step to the same reduced vector (one
    # computation replayed); against the replay (another summation order) only allclose.
    for s in services[1:]:
        assert s.model.parameters.tobytes() == first.model.parameters.tobytes()
        assert vars(s.totals) == vars(first.totals)
    rejected = sum(v == b"{not json" for records in values.values() for v in records)
    assert first.totals.records_rejected == rejected
    assert first.model.n_samples_seen == _valid_samples(values)
    assert first.global_positions == {p: Position(len(v)) for p, v in values.items()}
    # The others drop the entries rank 0 wrote at each checkpoint (no unbounded growth).
    assert all(len(s._pending_entries) <= 6 for s in services[1:])
    first.checkpoint()  # the final checkpoint appended the manifest already; nothing new
    source = PartitionedMemorySource(values)
    oracle = replay_manifest(manifest.read(), source.read, Decoder(D), _model())
    np.testing.assert_allclose(first.model.parameters, oracle.parameters, rtol=1e-10, atol=1e-13)
    assert oracle.n_updates == first.model.n_updates


def test_the_controller_and_a_global_sample_limit() -> None:
    values = _values(3, 200, seed=4)
    config = ServiceConfig(batch_size=8, max_wait_seconds=0.05, max_samples=301)
    services, _, errors = _run_replicas(values, 2, config, controller=True)
    assert not errors
    assert [s.totals.samples_consumed for s in services] == [301, 301]
    assert services[0].model.parameters.tobytes() == services[1].model.parameters.tobytes()


def test_an_ownership_conflict_stops_every_replica() -> None:
    values = _values(2, 40, seed=1)
    config = ServiceConfig(batch_size=8, max_wait_seconds=0.05)
    # Rank 1 also claims rank 0's partition: two readers of t:0.
    _, _, errors = _run_replicas(values, 2, config, owned_override={1: ["t:0", "t:1"]})
    assert any(isinstance(e, OwnershipConflict) for e in errors)


def test_batch_size_one_is_refused() -> None:
    room = ThreadRoom(2)
    with pytest.raises(ValueError, match="collective round trip"):
        ReplicatedService(
            _model(),
            PartitionedMemorySource({"t:0": []}),
            Decoder(D),
            ServiceConfig(batch_size=1),
            collective=room.member(0),
        )
