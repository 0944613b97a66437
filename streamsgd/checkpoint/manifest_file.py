"""The step manifest of a replicated run (:mod:`streamsgd.distributed.step_manifest`) as JSON Lines
next to the checkpoint: ``DIR/manifest.jsonl``, written by the checkpoint's writer (rank 0).

Entries are appended and fsynced *before* the checkpoint that covers them is written, so the
file always reaches at least the checkpoint's step. Steps past it (a crash between the two
writes) are dropped by :meth:`ManifestFile.truncate` when the run resumes, as is a line torn
by a crash in the middle of an append. One line per step (about 60 bytes per moved
partition): a run of 100 steps/s writes some 20 MB a day.

A *rebased* file (:meth:`ManifestFile.rebase`) begins with a base entry instead of the start
entry: a writer that took over on a host whose directory lacks the lineage's manifest (each
host its own disk) records the agreed state at step k in ``DIR/manifest-base-k.json`` (a
checkpoint document) and starts the file at k; the replay starts from that state
(:func:`~streamsgd.distributed.step_manifest.replay_manifest`). The file it replaces, if any, is
kept as ``manifest.jsonl.before-k``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .document import dumps, loads

MANIFEST_NAME = "manifest.jsonl"
BASE_NAME = "manifest-base-{step}.json"


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` in ``path`` by a temp file, fsync, rename and fsync of the directory."""
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class ManifestFile:
    """``directory/manifest.jsonl``: a :class:`~streamsgd.training.ports.ManifestLog`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / MANIFEST_NAME

    def append(self, entries: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> list[dict[str, Any]]:
        """The entries, in order; a torn last line (a crash mid-append) is left out."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                break  # only the last line can be torn; nothing after it was written
        return entries

    def rebase(self, step: int, base: dict[str, Any], state: dict[str, Any]) -> None:
        """Start the file over at ``step``: ``state`` (the run's state at that step, a
        checkpoint document) in ``DIR/manifest-base-<step>.json``, then a file whose first
        entry is ``base`` (:func:`~streamsgd.distributed.step_manifest.base_entry`, naming that
        document). The previous file, if any, stays as ``manifest.jsonl.before-<step>``.
        Raises OSError."""
        name = BASE_NAME.format(step=step)
        _write_atomically(self.path.with_name(name), dumps(state))
        if self.path.exists():
            os.replace(self.path, self.path.with_name(f"{self.path.name}.before-{step}"))
        line = json.dumps({**base, "state": name}, separators=(",", ":")) + "\n"
        _write_atomically(self.path, line.encode("utf-8"))

    def base_state(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The state a base entry names (for the replay); CheckpointError if damaged."""
        return loads((self.path.parent / str(entry["state"])).read_bytes())

    def truncate(self, n_steps: int) -> None:
        """Keep the start entry and the steps up to ``n_steps`` (atomically rewritten)."""
        entries = self.read()
        kept = [e for e in entries if int(e.get("step", 0)) <= n_steps]
        if len(kept) == len(entries) and self._whole():
            return
        temp = self.path.with_suffix(".tmp")
        with open(temp, "w", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in kept))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, self.path)

    def _whole(self) -> bool:
        """The file ends with a complete line (or does not exist)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() == 0:
                    return True
                fh.seek(-1, os.SEEK_END)
                return fh.read(1) == b"\n"
        except FileNotFoundError:
            return True
