"""``--distributed mpi``: the pieces :func:`~streamsgd.cli.build.build_service` adds to make
this process one replica of a job started by ``mpiexec`` (docs/design.md, Scaling out)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ..checkpoint import CheckpointError, DirectoryCheckpointStore, ManifestFile
from ..checkpoint.generation import GenerationFence
from ..config import TrainConfig
from ..distributed.collective import Collective
from .errors import UsageError

MPI_MISSING = (
    "--distributed mpi needs mpi4py and Open MPI: pip install 'streamsgd[mpi]', then start "
    "the replicas with mpiexec -n N streamsgd train --distributed mpi ..."
)


def build_collective(config: TrainConfig) -> Collective | None:
    """The collective of ``--distributed`` (None for a single process)."""
    d = config.distributed
    if d.distributed == "none":
        return None
    from ..distributed.collective_stepper import refuse_single_sample_steps

    try:
        refuse_single_sample_steps(config.minibatch.batch_size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        from ..distributed.mpi import MpiCollective

        return MpiCollective(
            timeout_seconds=d.replica_timeout_seconds,
            respawn=d.respawn,
            # A replacement runs this very command line.
            spawn_argv=[sys.executable, "-m", "streamsgd", *sys.argv[1:]],
        )
    except ImportError:  # mpi4py, or the MPI library it loads when MPI starts
        raise UsageError(MPI_MISSING) from None


def checkpoint_opener(config: TrainConfig) -> Callable[[], DirectoryCheckpointStore] | None:
    """Opens the checkpoint directory's writer for whichever replica is rank 0."""
    directory = config.checkpoint.checkpoint_dir
    if not directory:
        return None

    def open_store() -> DirectoryCheckpointStore:
        try:
            return DirectoryCheckpointStore(directory, hash_bits=config.model.hash_bits)
        except CheckpointError as exc:
            raise UsageError(str(exc)) from None

    return open_store


def replica_arguments(config: TrainConfig, collective: Collective) -> dict[str, Any]:
    """The keyword arguments of :func:`~streamsgd.distributed.replicated.replicated_trainer`."""
    # Imported here: a single process (most runs) never needs the replicas' agreement
    # machinery, and its modules cost start-up time (each dataclass compiles its methods).
    from ..distributed.agreement import PARTITIONS_CHECK_SECONDS

    directory = config.checkpoint.checkpoint_dir
    return {
        "collective": collective,
        "open_checkpoint_store": checkpoint_opener(config),
        "manifest": ManifestFile(directory) if directory else None,
        "check_every_steps": config.distributed.replica_check_steps,
        "fence": GenerationFence(directory) if directory else None,
        "partitions_check_seconds": min(
            config.kafka.metadata_max_age_seconds, PARTITIONS_CHECK_SECONDS
        ),
    }


def replica_port(base_port: int, collective: Collective | None) -> int:
    """Replica r serves HTTP on ``--metrics-port`` + r (its slot, which a replacement
    inherits); 0 stays "any free port"."""
    if collective is None or base_port == 0:
        return base_port
    return base_port + int(getattr(collective, "slot", collective.rank))
