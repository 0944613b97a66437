"""What the replicas of a job agree on besides each step (:mod:`.collective_stepper`): that
they hold the same θ, and the job's partition list (who writes the checkpoint is
:mod:`.membership`'s).

**Digests.** Every ``check_every_steps`` steps and in the exchange after every checkpoint,
each replica puts a digest of its θ in its own slot of the step's exchange
(:func:`~streamsgd.distributed.exchange.theta_digest`); every replica then sees all of them.
Replicas stay byte-identical only if every host computes a step bit for bit alike (numpy's SIMD
paths differ between CPUs); when the digests differ, every replica adopts rank 0's model by one
broadcast, counts it (``streamsgd_replica_divergences_total``) and logs it. The step of that
exchange was computed from slightly different θ on some replicas; it is applied as reduced,
on rank 0's model, so every replica holds the same bits afterwards.

**Partitions.** Rank 0 raises the exchange's ``repartition`` slot when
:meth:`ReplicaAgreement._new_partitions` gives a changed list; after that step every replica
receives the list by broadcast and reassigns (``assign_partitions`` for the new list, the
known partitions at their replicated positions, new ones at the source's start).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.model import OnlineLogisticRegression
from ..training.stepper import Run
from .collective import Collective
from .exchange import theta_digest
from .partitions import sorted_partitions
from .replica_state import ReplicaState

log = logging.getLogger("streamsgd.replicated")

DEFAULT_CHECK_EVERY_STEPS = 100


@dataclass
class ReplicaAgreement:
    """The digest checks and partition changes of one replica.

    Parameters
    ----------
    run : Run
        The replica's run (its model is compared, and replaced by rank 0's on a difference).
    replica : ReplicaState
        The partitions it changes.
    collective : Collective
    check_every_steps : int
        Compare digests of θ every this many steps (and after every checkpoint).
    reassign : callable
        Reads this rank's partitions again after the list changed (:meth:`.Membership.assign`).
    """

    run: Run
    replica: ReplicaState
    collective: Collective
    check_every_steps: int
    reassign: Callable[[], None]
    checked_step: int = field(default=-1, init=False)  # the last step whose θ was compared
    check_next: bool = field(default=False, init=False)  # compare at the next exchange

    @property
    def global_step(self) -> int:
        """Steps taken by the job (applied or skipped), the same on every replica."""
        return self.run.model.n_updates + self.run.totals.updates_skipped

    # ------------------------------------------------------------------ digests
    def _digest(self) -> int:
        """The digest of θ for this exchange, or 0: every ``check_every_steps`` steps and
        after a checkpoint (the same decision on every replica: it depends on the job's
        step and the previous exchange only)."""
        step = self.global_step
        due = self.check_next or (step % self.check_every_steps == 0 and step != self.checked_step)
        if not due:
            return 0
        self.checked_step, self.check_next = step, False
        return theta_digest(self.run.model.parameters)

    def _check_digests(self, digests: Any) -> None:
        """On different digests every replica adopts rank 0's model (one broadcast)."""
        given = {int(d) for d in digests if d}
        if len(given) <= 1:
            return
        c, run = self.collective, self.run
        differ = [r for r, d in enumerate(digests) if d and d != digests[0]]
        log.warning(
            "replicas diverged before step %d (digest of θ differs on rank(s) %s from rank "
            "0's): adopting rank 0's model",
            self.global_step + 1,
            ", ".join(map(str, differ)),
        )
        state = c.broadcast(run.model.get_state() if c.rank == 0 else None, root=0)
        if c.rank != 0:
            run.model = OnlineLogisticRegression.from_state(state)
        for s in run.sensors:
            s.replicas_diverged()
            s.model_loaded(run.model)

    # ------------------------------------------------------------------ partitions
    def _new_partitions(self) -> tuple[str, ...] | None:
        """Rank 0: a changed partition list to carry to every replica, else None. The
        Kafka source's discovery (another issue) overrides this; none by default."""
        return None

    def _repartition(self) -> None:
        """After a step raising ``repartition``: rank 0's new partition list, by broadcast;
        every replica reassigns (new partitions start at the source's start positions)."""
        c = self.collective
        found = c.broadcast(self._new_partitions() if c.rank == 0 else None, root=0)
        self.replica.partitions = tuple(sorted_partitions(list(found)))
        log.info("the job's partitions changed: %d now", len(self.replica.partitions))
        self.reassign()
