"""The step manifest file (streamsgd.checkpoint.manifest): appended entries read back in
order, a torn last line left out, and truncation to a checkpoint's step."""

from __future__ import annotations

from pathlib import Path

from streamsgd.checkpoint import ManifestFile


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
