"""``streamsgd train`` whose step manifest appends fail while ``DIR/fail-manifest`` exists
(DIR the checkpoint directory): half the entries are written, then ``OSError`` (a disk that
fills up, a mount that goes away). The distributed tests run it under ``mpiexec`` in place
of ``python -m streamsgd``; the fault is switched on and off from the test by the file."""

from __future__ import annotations

import errno
import sys
from typing import Any

from streamsgd.checkpoint import ManifestFile
from streamsgd.cli import entry_point

FLAG = "fail-manifest"
_append = ManifestFile.append


def _failing_append(self: ManifestFile, entries: list[dict[str, Any]]) -> None:
    if (self.path.parent / FLAG).exists():
        _append(self, entries[: len(entries) // 2])
        raise OSError(errno.ENOSPC, "No space left on device (injected by the test)")
    _append(self, entries)


if __name__ == "__main__":
    ManifestFile.append = _failing_append  # type: ignore[method-assign]
    sys.argv[0] = "streamsgd"
    entry_point()
