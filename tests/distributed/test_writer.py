"""The checkpoint's writer after a takeover (streamsgd.distributed.writer), in one process: the
new rank 0 waits for the lock its predecessor still holds (bounded), generations grow along
the lineage across directories, and a manifest started over at a takeover replays from its
base. The same under a real partition between two hosts: test_two_hosts_kafka.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression
from streamsgd.checkpoint import DirectoryCheckpointStore, ManifestFile
from streamsgd.checkpoint.generation import GenerationFence
from streamsgd.codec import Decoder, encode_dense
from streamsgd.distributed.collective import LocalCollective
from streamsgd.distributed.replica_state import ReplicaState
from streamsgd.distributed.step_manifest import base_entry, replay_manifest, step_entry
from streamsgd.distributed.writer import CheckpointWriter, WriterLocked
from streamsgd.training.buffer import Position
from streamsgd.training.checkpointer import Checkpointer
from streamsgd.training.ports import SourceRecord
from streamsgd.training.settings import ServiceConfig

D = 3


class WaitingCollective(LocalCollective):
    """One member that allows a takeover to wait ``takeover_wait_seconds`` for the lock."""

    def __init__(self, takeover_wait_seconds: float) -> None:
        self.takeover_wait_seconds = takeover_wait_seconds


def _writer(directory: Path, wait_seconds: float, generation: int = 0) -> CheckpointWriter:
    checkpointer = Checkpointer(
        None,
        ServiceConfig(),
        (),
        time.monotonic,
        open_store=lambda: DirectoryCheckpointStore(directory),
    )
    replica = ReplicaState(generation=generation)
    run: Any = SimpleNamespace(checkpointer=checkpointer, sensors=())
    fence = GenerationFence(directory)
    return CheckpointWriter(
        run,
        replica,
        WaitingCollective(wait_seconds),
        None,
        None,
        fence,
    )


def test_a_takeover_waits_for_the_lock_its_predecessor_releases(tmp_path: Path) -> None:
    """The old rank 0 (here: a store of this process) holds the lock for 1.5 s more; the new
    rank 0 waits, takes it, and claims a generation above the lineage's (3)."""
    predecessor = DirectoryCheckpointStore(tmp_path)
    assert GenerationFence(tmp_path).claim(above=2) == 3  # the predecessor's generation
    threading.Timer(1.5, predecessor.close).start()
    writer = _writer(tmp_path, wait_seconds=60.0, generation=3)
    writer.establish(takeover=True)
    assert writer.run.checkpointer.store is not None
    assert writer.replica.generation == 4 == GenerationFence(tmp_path).latest()
    assert not writer.lineage_elsewhere  # the directory had seen generation 3
    writer.run.checkpointer.close_opened()


def test_a_lock_held_past_the_wait_stops_every_replica(tmp_path: Path) -> None:
    holder = DirectoryCheckpointStore(tmp_path)
    started = time.monotonic()
    with pytest.raises(WriterLocked, match="locked by another trainer"):
        _writer(tmp_path, wait_seconds=1.0).establish(takeover=True)
    assert time.monotonic() - started >= 1.0
    # Not a takeover (a start): asked once, no wait.
    started = time.monotonic()
    with pytest.raises(WriterLocked, match="locked by another trainer"):
        _writer(tmp_path, wait_seconds=60.0).establish(takeover=False)
    assert time.monotonic() - started < 1.0
    holder.close()


def test_a_writer_never_goes_on_without_a_generation(tmp_path: Path) -> None:
    """The lock is free but the generation cannot be claimed for 1.5 s (``generations`` is
    a file): the new rank 0 keeps the lock, claims again, and goes on with a generation."""
    blocker = tmp_path / "generations"
    blocker.write_text("not a directory")
    threading.Timer(1.5, blocker.unlink).start()
    writer = _writer(tmp_path, wait_seconds=60.0)
    writer.establish(takeover=True)
    assert writer.replica.generation == 1 == writer.fence.mine
    writer.run.checkpointer.close_opened()


def test_generations_follow_the_lineage_across_directories(tmp_path: Path) -> None:
    """Host a's directory reached generation 2; a writer taking over on host b's own disk
    claims above the lineage's, so host b's directory is the newer one; b's directory never
    saw the lineage's writer, so its manifest is not the lineage's."""
    a, b = GenerationFence(tmp_path / "a"), GenerationFence(tmp_path / "b")
    assert (a.claim(), a.claim()) == (1, 2)
    writer = _writer(tmp_path / "b", wait_seconds=0.0, generation=a.mine or 0)
    writer.establish(takeover=True)
    assert b.latest() == 3 == writer.replica.generation
    assert writer.lineage_elsewhere
    writer.run.checkpointer.close_opened()
    assert a.claim() == 3  # a directory's own numbering still never repeats


def _record(partition: str, offset: int, rng: np.random.Generator) -> SourceRecord:
    x = rng.standard_normal(D)
    return SourceRecord(partition, offset, encode_dense(x, float(x.sum() > 0)))


def _state(model: OnlineLogisticRegression, positions: dict[str, Position]) -> dict[str, Any]:
    offsets = {p: pos.offset for p, pos in positions.items()}
    totals = {
        "samples_consumed": model.n_samples_seen,
        "progressive_misclassified": 0,
        "records_rejected": 0,
        "updates_skipped": 0,
        "progressive_loss_sum": 0.0,
    }
    return {
        "model": model.get_state(),
        "positions": {p: [pos.offset, pos.skip_samples] for p, pos in positions.items()},
        "offsets": offsets,
        "totals": totals,
        "source": {},
        "batch_size": 4,
    }


def test_a_manifest_started_over_replays_from_its_base(tmp_path: Path) -> None:
    """Steps 1-3 learned elsewhere (another host's file); the file here starts over at step 3
    from the state then, and records steps 4-6: the replay from the base reproduces the
    model bit for bit (the same learn_batch calls on the same restored state)."""
    rng = np.random.default_rng(7)
    records = [_record("t:0", offset, rng) for offset in range(24)]
    decoder = Decoder(D)

    def batch(first: int) -> tuple[np.ndarray, np.ndarray]:
        samples = [decoder.decode(r.value) for r in records[first : first + 4]]
        return np.vstack([s.X for s in samples]), np.concatenate([s.y for s in samples])

    model = OnlineLogisticRegression(D, learning_rate=0.2)
    for step in range(1, 4):
        model.learn_batch(*batch(4 * (step - 1)))
    manifest = ManifestFile(tmp_path)
    manifest.append([{"start": {"t:0": [0, 0]}}])  # another lineage's file: kept aside
    at_base = {"t:0": Position(12)}
    manifest.rebase(3, base_entry(3, at_base), _state(model, at_base))
    for step in range(4, 7):
        model.learn_batch(*batch(4 * (step - 1)))
        before, after = {"t:0": Position(4 * step - 4)}, {"t:0": Position(4 * step)}
        manifest.append([step_entry(step, 4, before, after)])
    assert (tmp_path / "manifest.jsonl.before-3").exists()

    def read(partition: str, first: int, last: int) -> list[SourceRecord]:
        return records[first : last + 1]

    def base_model(entry: dict[str, Any]) -> OnlineLogisticRegression:
        return OnlineLogisticRegression.from_state(manifest.base_state(entry)["model"])

    fresh = OnlineLogisticRegression(D, learning_rate=0.2)
    replayed = replay_manifest(manifest.read(), read, decoder, fresh, base_model)
    np.testing.assert_array_equal(replayed._snapshot(), model._snapshot())
    assert replayed.n_samples_seen == model.n_samples_seen == 24
    with pytest.raises(ValueError, match="a base and its state"):
        replay_manifest(manifest.read(), read, decoder, fresh)
