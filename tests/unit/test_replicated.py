"""The replicated loop (streamsgd.distributed.replicated) with N threads as replicas: byte-identical
models, global totals, the manifest replay as the oracle, multi-sample records split
across steps, the global sample limit, and the split-brain guard. The same loop under real
mpiexec and Kafka is tested in tests/distributed."""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression
from streamsgd.codec import Decoder, Rejection, decode_poll, encode_dense
from streamsgd.codec.binary import encode_binary
from streamsgd.core.controller import NoiseController
from streamsgd.distributed.collective_stepper import CollectiveStepper
from streamsgd.distributed.exchange import OwnershipConflict
from streamsgd.distributed.replicated import replicated_trainer
from streamsgd.distributed.step_manifest import replay_manifest
from streamsgd.training.buffer import Position
from streamsgd.training.ports import Sensor, SourceRecord
from streamsgd.training.trainer import ServiceConfig, Trainer
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


def _stepper(service: Trainer) -> CollectiveStepper:
    assert isinstance(service.stepper, CollectiveStepper)
    return service.stepper


def _model(controller: bool = False, **params: Any) -> OnlineLogisticRegression:
    if controller:
        return OnlineLogisticRegression(D, controller=NoiseController.create("auto"), **params)
    return OnlineLogisticRegression(D, learning_rate=0.2, l2=1e-3, **params)


def _run_replicas(
    values: dict,
    n_replicas: int,
    config: ServiceConfig,
    controller: bool = False,
    model_params: dict[str, Any] | None = None,
    owned_override: dict[int, list[str]] | None = None,
    manifest: MemoryManifest | None = None,
    sensors: dict[int, list[Sensor]] | None = None,
    prepare: Callable[[list[Trainer]], None] | None = None,
    **kwargs: Any,
) -> tuple[list[Trainer], MemoryManifest, list[BaseException]]:
    room = ThreadRoom(n_replicas)
    manifest = MemoryManifest() if manifest is None else manifest
    services = [
        replicated_trainer(
            _model(controller, **(model_params or {})),
            PartitionedMemorySource(values),
            Decoder(D),
            config,
            collective=room.member(rank),
            manifest=manifest,  # every replica has one (any may become rank 0); 0 writes
            sensors=(sensors or {}).get(rank, []),
            **kwargs,
        )
        for rank in range(n_replicas)
    ]
    if prepare is not None:
        prepare(services)
    errors: list[BaseException] = []

    def run(service: Trainer) -> None:
        try:
            if owned_override is not None:
                stepper = _stepper(service)
                original = stepper.membership.assign

                def assign() -> None:
                    original()
                    replica = stepper.replica
                    replica.owned = owned_override.get(stepper.collective.rank, replica.owned)

                stepper.membership.assign = assign  # type: ignore[method-assign]
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
    assert first.positions == {p: Position(len(v)) for p, v in values.items()}
    # The others drop the entries rank 0 confirmed durable (no unbounded growth): at most
    # a checkpoint interval's 5 steps and the exchange confirming them, and the start.
    assert all(len(_stepper(s).replica.pending.entries) <= 7 for s in services[1:])
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


def test_replicas_of_a_forgetting_adagrad_stay_bitwise_equal() -> None:
    """A ← γ^m A + ḡ²: γ^m depends on the reduced batch's m only, so every replica holds the
    same A (compared as bits) and the same θ, under the controller's changing m."""
    values = _values(3, 200, seed=6)
    config = ServiceConfig(batch_size=8, max_wait_seconds=0.05)
    params = {"optimizer": "adagrad", "adagrad_half_life_samples": 40.0}
    services, _, errors = _run_replicas(values, 2, config, controller=True, model_params=params)
    assert not errors
    a, b = (s.model for s in services)
    assert a.adagrad_half_life_samples == 40.0 and a.n_updates > 10
    assert a._squared_gradient_sum.tobytes() == b._squared_gradient_sum.tobytes()
    assert a.parameters.tobytes() == b.parameters.tobytes()


def test_an_ownership_conflict_stops_every_replica() -> None:
    values = _values(2, 40, seed=1)
    config = ServiceConfig(batch_size=8, max_wait_seconds=0.05)
    # Rank 1 also claims rank 0's partition: two readers of t:0.
    _, _, errors = _run_replicas(values, 2, config, owned_override={1: ["t:0", "t:1"]})
    assert any(isinstance(e, OwnershipConflict) for e in errors)


def test_batch_size_one_is_refused() -> None:
    room = ThreadRoom(2)
    with pytest.raises(ValueError, match="collective round trip"):
        replicated_trainer(
            _model(),
            PartitionedMemorySource({"t:0": []}),
            Decoder(D),
            ServiceConfig(batch_size=1),
            collective=room.member(0),
        )


class FlakyManifest(MemoryManifest):
    """Appends 2 to 6 fail (a full disk, a lost mount) after writing half their lines."""

    def __init__(self) -> None:
        super().__init__()
        self.appends = 0

    def append(self, entries: list[dict[str, Any]]) -> None:
        self.appends += 1
        if 2 <= self.appends <= 6:
            super().append(entries[: len(entries) // 2])
            raise OSError("No space left on device")
        super().append(entries)


class HeldEntries(Sensor):
    """After every exchange of replica ``service``: each step so far is in the manifest or
    held by that replica (what it would hand over if rank 0 died now)."""

    def __init__(self, manifest: MemoryManifest) -> None:
        self.manifest = manifest
        self.service: Trainer | None = None
        self.gaps: list[tuple[int, list[int]]] = []
        self.failures = 0

    def collective_step(self, global_step: int, *_: float) -> None:
        if self.service is None:  # only counts failures
            return
        written = {e["step"] for e in self.manifest.read() if "step" in e}
        entries = _stepper(self.service).replica.pending.entries
        held = {e["step"] for e in entries if "step" in e}
        lost = sorted(set(range(1, global_step + 1)) - written - held)
        if lost:
            self.gaps.append((global_step, lost))

    def manifest_write_failed(self) -> None:
        self.failures += 1


def test_entries_are_held_until_rank_0_confirms_them_durable() -> None:
    """Scaling out (docs/design.md#scaling-out): rank 0's manifest append fails (half written) at
    five checkpoints; the other replica never drops an entry the file lacks, and the file
    replays."""
    values = _values(4, 120, seed=6)
    config = ServiceConfig(batch_size=16, max_wait_seconds=0.05, checkpoint_every_updates=3)
    manifest = FlakyManifest()
    watch, counter = HeldEntries(manifest), HeldEntries(manifest)
    services, _, errors = _run_replicas(
        values,
        2,
        config,
        manifest=manifest,
        sensors={0: [counter], 1: [watch]},
        prepare=lambda services: setattr(watch, "service", services[1]),
    )
    assert not errors
    assert watch.gaps == [], "steps neither in the manifest nor held by rank 1"
    assert counter.failures == 5
    steps = [e["step"] for e in manifest.read() if "step" in e]
    assert steps == list(range(1, _stepper(services[0]).global_step + 1))
    oracle = replay_manifest(
        manifest.read(), PartitionedMemorySource(values).read, Decoder(D), _model()
    )
    np.testing.assert_allclose(
        services[0].model.parameters, oracle.parameters, rtol=1e-10, atol=1e-13
    )


def test_a_divergent_replica_adopts_rank_0s_model(caplog: pytest.LogCaptureFixture) -> None:
    """Scaling out (docs/design.md#scaling-out): rank 1's θ is changed by one ulp at step 7; the
    next check (every 4 steps) finds it, rank 1 adopts rank 0's model, and the replicas end
    byte-identical."""
    values = _values(3, 150, seed=8)
    config = ServiceConfig(batch_size=12, max_wait_seconds=0.05)

    class Divergence(Sensor):
        service: Trainer | None = None
        diverged = 0

        def collective_step(self, global_step: int, *_: float) -> None:
            if global_step == 7 and self.service is not None:
                theta = self.service.model._theta
                theta[0] = np.nextafter(theta[0], np.inf)

        def replicas_diverged(self) -> None:
            self.diverged += 1

    inject = Divergence()
    with caplog.at_level(logging.WARNING, logger="streamsgd.replicated"):
        services, _, errors = _run_replicas(
            values,
            2,
            config,
            sensors={1: [inject]},
            check_every_steps=4,
            prepare=lambda services: setattr(inject, "service", services[1]),
        )
    assert not errors
    assert inject.diverged == 1
    assert services[0].model.parameters.tobytes() == services[1].model.parameters.tobytes()
    assert "replicas diverged before step 9" in caplog.text


class GrowingSource(PartitionedMemorySource):
    """Shows the job only its first two partitions at the start (a topic grown later)."""

    def partitions(self, timeout_seconds: float) -> list[str]:
        return sorted(self.values)[:2]


def test_a_changed_partition_list_reaches_every_replica() -> None:
    """The repartition slot (docs/design.md#scaling-out): rank 0's new partition list rides on the
    exchange (``repartition``), then a broadcast; every replica reassigns and the third partition is
    read from its start, once, as the manifest replay shows."""
    values = _values(3, 90, seed=11)
    config = ServiceConfig(batch_size=12, max_wait_seconds=0.05, checkpoint_every_updates=4)
    room, manifest = ThreadRoom(2), MemoryManifest()

    def growing(service: Trainer) -> Trainer:
        stepper = _stepper(service)

        def new_partitions() -> tuple[str, ...] | None:
            if stepper.global_step >= 5 and len(stepper.replica.partitions) < 3:
                return tuple(values)
            return None

        stepper.agreement._new_partitions = new_partitions  # type: ignore[method-assign]
        return service

    services = [
        growing(
            replicated_trainer(
                _model(),
                GrowingSource(values),
                Decoder(D),
                config,
                collective=room.member(rank),
                manifest=manifest,
            )
        )
        for rank in range(2)
    ]
    errors: list[BaseException] = []

    def run(service: Trainer) -> None:
        try:
            service.run()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            room.barrier.abort()

    threads = [threading.Thread(target=run, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    first = services[0]
    partitions = [_stepper(s).replica.partitions for s in services]
    assert partitions[0] == partitions[1] == tuple(sorted(values))
    assert first.positions == {p: Position(len(v)) for p, v in values.items()}
    assert first.model.n_samples_seen == _valid_samples(values)
    assert first.model.parameters.tobytes() == services[1].model.parameters.tobytes()
    oracle = replay_manifest(manifest.read(), GrowingSource(values).read, Decoder(D), _model())
    np.testing.assert_allclose(first.model.parameters, oracle.parameters, rtol=1e-10, atol=1e-13)


class MemoryStore:
    """A checkpoint store in memory (every save kept), with the writer's close()."""

    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] = []

    def load(self) -> dict[str, Any] | None:
        return self.saved[-1] if self.saved else None

    def save(self, state: dict[str, Any]) -> None:
        self.saved.append(pickle.loads(pickle.dumps(state)))

    def close(self) -> None:
        pass


def test_a_stale_lineage_never_checkpoints_or_commits_again(tmp_path: Path) -> None:
    """Scaling out (docs/design.md#scaling-out): at step 6 another writer claims the checkpoint
    directory's next generation (a survivor that took rank 0 over while this one was cut off); this
    lineage stops with StaleLineage, without another checkpoint or offset commit."""
    from streamsgd.checkpoint.generation import GenerationFence, StaleLineage

    values = _values(2, 80, seed=12)
    config = ServiceConfig(batch_size=8, max_wait_seconds=0.05, checkpoint_every_updates=2)
    store, commits = MemoryStore(), []

    class CountingSource(PartitionedMemorySource):
        def commit(self, positions: dict[str, Position]) -> None:
            commits.append(store.saved[-1]["global_step"])  # the step it commits after

    class TakeOver(Sensor):
        def collective_step(self, global_step: int, *_: float) -> None:
            if global_step == 6:
                GenerationFence(tmp_path).claim()

    room = ThreadRoom(2)
    services = [
        replicated_trainer(
            _model(),
            CountingSource(values),
            Decoder(D),
            config,
            collective=room.member(rank),
            open_checkpoint_store=lambda: store,
            fence=GenerationFence(tmp_path),
            sensors=[TakeOver()] if rank == 0 else [],
        )
        for rank in range(2)
    ]
    errors: list[BaseException] = []

    def run(service: Trainer) -> None:
        try:
            service.run()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            room.barrier.abort()

    threads = [threading.Thread(target=run, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert any(isinstance(e, StaleLineage) for e in errors), errors
    assert store.saved and max(s["global_step"] for s in store.saved) <= 6
    assert {s["generation"] for s in store.saved} == {1}
    assert commits and max(commits) <= 6
