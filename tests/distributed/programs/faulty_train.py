"""``streamsgd train`` with faults the distributed tests switch on by creating a file in the
checkpoint directory DIR (they run it under ``mpiexec`` in place of ``python -m streamsgd``):

* ``DIR/fail-manifest``: step manifest appends write half their entries, then raise
  ``OSError`` (a disk that fills up, a mount that goes away), while the file exists;
* ``DIR/perturb-rank-1``: rank 1 changes its θ by one ulp once (a host whose CPU rounds
  differently) and removes the file.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

import numpy as np

from streamsgd.checkpoint import ManifestFile
from streamsgd.cli import entry_point
from streamsgd.distributed.agreement import ReplicaAgreement

FAIL_MANIFEST = "fail-manifest"
PERTURB = "perturb-rank-1"
_append = ManifestFile.append
_digest = ReplicaAgreement._digest


def _failing_append(self: ManifestFile, entries: list[dict[str, Any]]) -> None:
    if (self.path.parent / FAIL_MANIFEST).exists():
        _append(self, entries[: len(entries) // 2])
        raise OSError(errno.ENOSPC, "No space left on device (injected by the test)")
    _append(self, entries)


def _checkpoint_dir() -> Path | None:
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == "--checkpoint-dir" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--checkpoint-dir="):
            return Path(arg.partition("=")[2])
    return None


def _perturbing_digest(self: Any) -> int:
    directory = _checkpoint_dir()
    flag = None if directory is None else directory / PERTURB
    if flag is not None and self.collective.rank == 1 and flag.exists():
        flag.unlink()
        theta = self.run.model._theta
        theta[0] = np.nextafter(theta[0], np.inf)
    return int(_digest(self))


if __name__ == "__main__":
    ManifestFile.append = _failing_append  # type: ignore[method-assign]
    ReplicaAgreement._digest = _perturbing_digest  # type: ignore[method-assign]
    sys.argv[0] = "streamsgd"
    entry_point()
