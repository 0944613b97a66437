"""Taking the checkpoint directory's lock on a full disk (docs/operations.md#what-is-guaranteed):
writing the holder's name into the lock file is informational and may fail with ENOSPC; the lock is
taken all the same (it was a traceback)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from streamsgd.checkpoint import store as store_module
from streamsgd.checkpoint.errors import CheckpointLocked
from streamsgd.checkpoint.store import DirectoryCheckpointStore


def test_lock_taken_when_the_holder_note_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module.os, "pwrite", full_disk)
    first = DirectoryCheckpointStore(tmp_path)
    try:
        with pytest.raises(CheckpointLocked):
            DirectoryCheckpointStore(tmp_path)
    finally:
        first.close()
