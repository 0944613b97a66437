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


def _perturbing_digest(self: Any) -> int:
    flag = None if self.manifest is None else self.manifest.path.parent / PERTURB
    if flag is not None and self.collective.rank == 1 and flag.exists():
        flag.unlink()
        theta = self.model._theta
        theta[0] = np.nextafter(theta[0], np.inf)
    return int(_digest(self))


if __name__ == "__main__":
    ManifestFile.append = _failing_append  # type: ignore[method-assign]
    ReplicaAgreement._digest = _perturbing_digest  # type: ignore[method-assign]
    sys.argv[0] = "streamsgd"
    entry_point()
