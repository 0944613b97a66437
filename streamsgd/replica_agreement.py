"""What the replicas of a job agree on besides each step (:mod:`streamsgd.replicated`):
that they hold the same θ, and the job's partition list.

**Digests.** Every ``check_every_steps`` steps and in the exchange after every checkpoint,
each replica puts a digest of its θ in its own slot of the step's exchange
(:func:`~streamsgd.exchange.theta_digest`); every replica then sees all of them. Replicas
stay byte-identical only if every host computes a step bit for bit alike (numpy's SIMD paths
differ between CPUs); when the digests differ, every replica adopts rank 0's model by one
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
from typing import Any

from .core.model import OnlineLogisticRegression
from .exchange import theta_digest
from .partitions import sorted_partitions
from .replica_intake import ReplicaIntake

log = logging.getLogger("streamsgd.replicated")

DEFAULT_CHECK_EVERY_STEPS = 100


class ReplicaAgreement(ReplicaIntake):
    """The digest checks and partition changes of :class:`~streamsgd.replicated.
    ReplicatedService` (which sets ``check_every_steps``, ``_checked_step`` and
    ``_check_next`` and implements :meth:`_assign`)."""

    check_every_steps: int
    _checked_step: int
    _check_next: bool

    @property
    def global_step(self) -> int:
        """Steps taken by the job (applied or skipped), the same on every replica."""
        return self.model.n_updates + self.totals.updates_skipped

    def _assign(self) -> None:
        raise NotImplementedError

    def _digest(self) -> int:
        """The digest of θ for this exchange, or 0: every ``check_every_steps`` steps and
        after a checkpoint (the same decision on every replica: it depends on the job's
        step and the previous exchange only)."""
        step = self.global_step
        due = self._check_next or (
            step % self.check_every_steps == 0 and step != self._checked_step
        )
        if not due:
            return 0
        self._checked_step, self._check_next = step, False
        return theta_digest(self.model.parameters)

    def _check_digests(self, digests: Any) -> None:
        """On different digests every replica adopts rank 0's model (one broadcast)."""
        given = {int(d) for d in digests if d}
        if len(given) <= 1:
            return
        c = self.collective
        differ = [r for r, d in enumerate(digests) if d and d != digests[0]]
        log.warning(
            "replicas diverged before step %d (digest of θ differs on rank(s) %s from rank "
            "0's): adopting rank 0's model", self.global_step + 1,
            ", ".join(map(str, differ)),
        )  # fmt: skip
        state = c.broadcast(self.model.get_state() if c.rank == 0 else None, root=0)
        if c.rank != 0:
            self.model = OnlineLogisticRegression.from_state(state)
        for s in self.sensors:
            s.replicas_diverged()
            s.model_loaded(self.model)

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
        self.partitions = tuple(sorted_partitions(list(found)))
        log.info("the job's partitions changed: %d now", len(self.partitions))
        self._assign()
