"""The ``[distributed]`` section of the train configuration: N replicas of one trainer
stepping together over MPI (docs/design.md, Scaling out; re-exported by
:mod:`streamsgd.config`; standard library only)."""

from __future__ import annotations

from dataclasses import dataclass

from .options import BOOLEAN, POSITIVE_FLOAT, POSITIVE_INT, Section, option

DISTRIBUTED_CHOICES = ("none", "mpi")


@dataclass(frozen=True, kw_only=True)
class DistributedConfig(Section):
    distributed: str = option(
        "none",
        "none = one process; mpi = this process is one replica of a job started by "
        "mpiexec (every replica takes the same global steps; needs --source kafka)",
        choices=DISTRIBUTED_CHOICES,
    )
    respawn: bool = option(
        False,
        "with --distributed mpi: when a replica dies, the survivors start a replacement "
        "(needs mpiexec --with-ft ulfm and a free slot)",
        BOOLEAN,
    )
    replica_timeout_seconds: float = option(
        60.0,
        "with --distributed mpi: a step that waits longer than this for a replica (alive but "
        "hung) stops the whole job, to be restarted from the checkpoint",
        POSITIVE_FLOAT,
    )
    replica_check_steps: int = option(
        100,
        "with --distributed mpi: every this many steps (and after every checkpoint) the "
        "replicas compare digests of the weights; on a difference they adopt rank 0's",
        POSITIVE_INT,
    )
