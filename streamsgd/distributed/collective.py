"""The collective that N replicas of one trainer step through (docs/design.md#scaling-out): what the
loop needs from a distributed engine, and the one-member collective of a single process.

Every replica contributes one float64 buffer per step (its local per-batch sums, its
partitions' next offsets and ownership slots, a few control flags) and receives the
element-wise sum over all replicas; every replica then applies the identical step, so the
replicas hold byte-identical models. No engine is imported here: the MPI adapter
(:mod:`streamsgd.distributed.mpi`) implements :class:`Collective` with mpi4py.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..core.types import FloatArray


class ReplicaFailure(RuntimeError):
    """A member of the collective died during a collective call. The call may have completed
    on some members and not on others; the caller must :meth:`Collective.recover` and then
    agree with the survivors on the last step applied everywhere."""


class CollectiveTimeout(RuntimeError):
    """A collective call did not complete within the timeout: a replica hangs (alive, but not
    taking part). The job cannot go on without it; the caller stops the run."""


class Unsupervised(RuntimeError):
    """The launcher that started the job (``mpiexec``) is gone: a replica stops rather than
    train unsupervised."""


class ReplicaStop(RuntimeError):
    """The job cannot go on safely (a minority after a partition, a step manifest with a
    gap): the replica stops, ``streamsgd train`` prints one line and exits 1."""


class NoQuorum(ReplicaStop):
    """After a failure this side holds no strict majority of the last agreed membership."""


def check_quorum(last_agreed: int, survivors: int, lease: Callable[[], bool]) -> None:
    """Let the survivors of a failure go on only with a strict majority of the last agreed
    membership, or exactly half of it and ``lease()`` (one side of a split in two halves);
    otherwise raise :class:`NoQuorum`. Called on every survivor, before any respawn."""
    if 2 * survivors > last_agreed:
        return
    tie = 2 * survivors == last_agreed
    if tie and lease():
        return
    reason = "half, and the checkpoint lock is not ours" if tie else "no majority"
    raise NoQuorum(
        f"{survivors} of the last {last_agreed} replicas are left on this side ({reason}): "
        "this side stops so that the other never has a rival (restart the job when the "
        "network heals)"
    )


class Collective(Protocol):
    """The members of one training job and the collective calls between them."""

    @property
    def rank(self) -> int:
        """This member's index, 0 ≤ rank < size (renumbered by :meth:`recover`)."""

    @property
    def size(self) -> int:
        """The number of members now."""

    @property
    def joined(self) -> bool:
        """True in a replacement spawned by :meth:`recover` (``--respawn``) until
        :meth:`broadcast` first delivered it the state: it has no state of its own."""

    def allreduce_sum(self, buffer: FloatArray) -> FloatArray:
        """The element-wise sum of every member's ``buffer`` (same shape on every member).

        Raises
        ------
        ReplicaFailure
            A member died.
        CollectiveTimeout
            A member did not take part within the timeout.
        """

    def broadcast(self, value: Any, root: int = 0) -> Any:
        """``value`` of member ``root``, on every member (picklable; the others pass None).
        Raises as :meth:`allreduce_sum`."""

    def recover(self) -> None:
        """After a :class:`ReplicaFailure`: exclude the failed members (every survivor calls
        this), and with respawn enabled start replacements up to the original size. Ranks
        and size are renumbered. May raise :class:`ReplicaFailure` again (call it again)."""

    @property
    def membership_changes(self) -> int:
        """How many times membership changed (failures handled, replacements joined)."""

    def close(self, *, failed: bool = False) -> None:
        """Leave the job. ``failed``: this member's run ended in an error (it never started
        serving, or stopped on one): it leaves without waiting for the others."""


class LocalCollective:
    """The one-member collective of a single process: every call returns its input."""

    rank = 0
    size = 1
    joined = False
    membership_changes = 0

    def allreduce_sum(self, buffer: FloatArray) -> FloatArray:
        return np.asarray(buffer, dtype=np.float64)

    def broadcast(self, value: Any, root: int = 0) -> Any:
        # A copy, as a real broadcast gives the receivers (the caller may mutate its value).
        return pickle.loads(pickle.dumps(value))

    def recover(self) -> None:
        raise ReplicaFailure("a single process has no replica to lose")

    def close(self, *, failed: bool = False) -> None:
        pass
