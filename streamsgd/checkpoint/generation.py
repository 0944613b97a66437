"""The fence of a replicated job's checkpoint directory (docs/design.md#scaling-out,
Quorum and fencing): lineage generations.

Whichever replica becomes the checkpoint's writer (rank 0 at the start, or a survivor that
took rank 0 over) *claims* a generation: the next free number n, by creating
``DIR/generations/n`` exclusively (``O_CREAT | O_EXCL``, then fsync of the directory), so two
writers never hold the same one. Before every checkpoint and before committing offsets the
writer checks that no higher generation exists: a lineage that was overtaken — a rank 0 cut
off by a partition, or paused, while the others took over — stops before it can overwrite the
checkpoint or move committed offsets. The generation is also stored in the checkpoint.

This works on a directory every writer shares. With a checkpoint directory on each host's
own disk each side sees only its own generations: there the quorum
(:mod:`streamsgd.distributed.mpi`) is what keeps a minority from stepping, and a writer claims
above the lineage's generation (the replicas carry it), so the host whose directory holds the
newest lineage holds the highest generation; a job started with rank 0 on a host whose
directory is behind another replica's stops (:mod:`streamsgd.distributed.membership`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..distributed.collective import ReplicaStop

GENERATIONS_DIR = "generations"


class StaleLineage(ReplicaStop):
    """A newer writer claimed the checkpoint directory: this lineage must stop."""


class GenerationFence:
    """The generations of ``directory`` (a checkpoint directory)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / GENERATIONS_DIR
        self.mine: int | None = None

    def latest(self) -> int:
        """The highest generation claimed so far (0: none)."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return 0
        return max((int(n) for n in names if n.isdigit()), default=0)

    def claim(self, above: int = 0) -> int:
        """Claim the next generation for this writer, higher than ``above`` too (the
        lineage's generation, carried by the replicas: with a directory on each host's own
        disk, generations then grow along the lineage across hosts); returns it."""
        self.path.mkdir(parents=True, exist_ok=True)
        n = max(self.latest(), above) + 1
        while True:
            try:
                fd = os.open(self.path / str(n), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                n += 1
                continue
            os.close(fd)
            break
        directory = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self.mine = n
        return n

    def check(self) -> None:
        """Raise :class:`StaleLineage` when a generation above this writer's exists."""
        if self.mine is None:
            return
        latest = self.latest()
        if latest > self.mine:
            raise StaleLineage(
                f"another writer took over the checkpoint directory (generation {latest}; "
                f"this one holds {self.mine}): this lineage stops without checkpointing or "
                "committing offsets"
            )
