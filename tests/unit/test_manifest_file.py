"""The step manifest file (streamsgd.checkpoint.manifest_file): appended entries read back in
order, a torn last line left out, and truncation to a checkpoint's step; the entries a
replica holds until rank 0 confirmed them (streamsgd.distributed.held_manifest)."""

from __future__ import annotations

import json
from pathlib import Path

from streamsgd.checkpoint import ManifestFile
from streamsgd.distributed.held_manifest import PendingManifest


def _entries(first: int, last: int) -> list[dict]:
    return [
        {"step": k, "n_samples": 8, "ends": {"t:0": [k * 8, 0]}} for k in range(first, last + 1)
    ]


def test_append_read_and_truncate(tmp_path: Path) -> None:
    manifest = ManifestFile(tmp_path)
    assert manifest.read() == []
    start = {"start": {"t:0": [0, 0]}}
    manifest.append([start, *_entries(1, 3)])
    manifest.append(_entries(4, 6))
    assert manifest.read() == [start, *_entries(1, 6)]
    manifest.truncate(4)
    assert manifest.read() == [start, *_entries(1, 4)]


def test_a_torn_line_is_dropped_and_repaired_by_truncate(tmp_path: Path) -> None:
    manifest = ManifestFile(tmp_path)
    manifest.append(_entries(1, 2))
    with open(manifest.path, "a", encoding="utf-8") as fh:
        fh.write('{"step": 3, "n_sam')  # a crash in the middle of an append
    assert manifest.read() == _entries(1, 2)
    manifest.truncate(2)
    assert manifest.path.read_text(encoding="utf-8").endswith("\n")
    manifest.append(_entries(3, 3))
    assert manifest.read() == _entries(1, 3)


def _held(first: int, last: int, durable: int = -1) -> dict:
    return {"entries": _entries(first, last), "durable": durable}


def test_a_new_rank_0_writes_the_held_steps_over_stale_ones(tmp_path: Path) -> None:
    """Scaling out (docs/design.md#scaling-out): the file reaches step 6 (steps 5–6 of a rolled-back
    former rank 0); the survivors hold steps 5–7: the file is cut at 4 and gets their 5–7."""
    manifest = ManifestFile(tmp_path)
    start = {"start": {"t:0": [0, 0]}}
    stale = [{**e, "n_samples": 99} for e in _entries(5, 6)]
    manifest.append([start, *_entries(1, 4), *stale])
    pending = PendingManifest()
    pending.adopt(_held(5, 7, durable=2), step=7)
    assert pending.verify(manifest, "here") is None
    assert pending.slot() == 5  # durable through step 4, confirmed to the others
    pending.write(manifest, step=7)
    assert manifest.read() == [start, *_entries(1, 7)]
    assert (pending.entries, pending.durable) == ([], 7)


def test_a_gap_no_replica_can_fill_stops_the_job(tmp_path: Path) -> None:
    """The file ends at step 3 (another host's directory, or a lost write): the replicas
    hold steps from 9 on, so 4–8 are lost: a clear error, nothing written."""
    manifest = ManifestFile(tmp_path)
    manifest.append([{"start": {"t:0": [0, 0]}}, *_entries(1, 3)])
    pending = PendingManifest()
    pending.adopt(_held(9, 10), step=10)
    error = pending.verify(manifest, str(manifest.path))
    assert error is not None and "steps 4..8 are lost" in error and str(manifest.path) in error
    empty = PendingManifest()
    empty.adopt(_held(1, 0), step=12)  # a restart from a checkpoint at step 12
    assert "has no start entry" in str(empty.verify(ManifestFile(tmp_path / "x"), "x"))
    # ... unless the job started from that checkpoint itself (a single trainer's directory).
    assert empty.verify(ManifestFile(tmp_path / "x"), "x", allow_missing=True) is None
    assert empty.slot() == 13


def test_a_failed_append_is_cut_before_the_retry(tmp_path: Path) -> None:
    manifest = ManifestFile(tmp_path)
    pending = PendingManifest()
    pending.adopt({"entries": [{"start": {"t:0": [0, 0]}}, *_entries(1, 2)], "durable": -1}, 2)
    pending.write(manifest, step=2)
    pending.entries = _entries(3, 5)
    with open(manifest.path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_entries(3, 3)[0]) + "\n")  # what a failed append left
    pending.base = pending.durable  # as write() sets it when the append raised
    pending.write(manifest, step=5)
    assert [e.get("step") for e in manifest.read()] == [None, 1, 2, 3, 4, 5]
