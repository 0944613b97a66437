"""What the replicas of a job agree on besides each step (:mod:`streamsgd.distributed.replicated`):
that they hold the same θ, the job's partition list, and who writes the checkpoint (the
writer lock, which is also the quorum's lease, and the fence's generation).

**Digests.** Every ``check_every_steps`` steps and in the exchange after every checkpoint,
each replica puts a digest of its θ in its own slot of the step's exchange
(:func:`~streamsgd.distributed.exchange.theta_digest`); every replica then sees all of them.
Replicas
stay byte-identical only if every host computes a step bit for bit alike (numpy's SIMD paths
differ between CPUs); when the digests differ, every replica adopts rank 0's model by one
broadcast, counts it (``streamsgd_replica_divergences_total``) and logs it. The step of that
exchange was computed from slightly different θ on some replicas; it is applied as reduced,
on rank 0's model, so every replica holds the same bits afterwards.

**Partitions.** Rank 0 asks the source for the topic's partitions every
``partitions_check_seconds`` and raises the exchange's ``repartition`` slot when the list
grew (:meth:`ReplicaAgreement._new_partitions`); after that step every replica receives the
list by broadcast and reassigns by the same rule (``assign_partitions``): the known
partitions at their replicated positions, a new one at its beginning (the source's rule for
a partition without a position once the job holds positions of the topic).
"""

from __future__ import annotations

import logging
from typing import Any

from ..core.model import OnlineLogisticRegression
from ..training.ports import Fence
from .exchange import theta_digest
from .intake import ReplicaIntake
from .partitions import sorted_partitions

log = logging.getLogger("streamsgd.replicated")

DEFAULT_CHECK_EVERY_STEPS = 100
PARTITIONS_CHECK_SECONDS = 5.0
"""Rank 0 asks the source for the partition list at most this often (kafka-python answers
from its metadata cache, confluent asks the broker): ``min(--metadata-max-age-seconds,
this)`` in the product, so a partition added is read within about that plus the age."""


class ReplicaAgreement(ReplicaIntake):
    """The digest checks, partition changes and checkpoint writer of :class:`~streamsgd.
    replicated.ReplicatedService` (which sets the attributes declared here and implements
    :meth:`_assign`)."""

    check_every_steps: int
    _checked_step: int
    _check_next: bool
    open_checkpoint_store: Any
    fence: Fence | None

    def __init__(
        self, *args: Any, partitions_check_seconds: float = PARTITIONS_CHECK_SECONDS, **kwargs: Any
    ) -> None:
        """``partitions_check_seconds``: rank 0 asks the source for the topic's partitions
        this often; a grown list is carried to every replica by the exchange."""
        super().__init__(*args, **kwargs)
        self.partitions_check_seconds = partitions_check_seconds
        self._next_partitions_check = 0.0
        self._found_partitions: tuple[str, ...] | None = None  # rank 0: grown, not carried

    @property
    def global_step(self) -> int:
        """Steps taken by the job (applied or skipped), the same on every replica."""
        return self.model.n_updates + self.totals.updates_skipped

    def _assign(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ writer and lease
    def _open_store(self) -> None:
        """Become the checkpoint's writer: its lock, and a new generation of the fence."""
        if self.checkpoint_store is None and self.open_checkpoint_store is not None:
            self.checkpoint_store = self.open_checkpoint_store()
            if self.fence is not None:
                log.info("checkpoint writer of generation %d", self.fence.claim())

    def _hold_lease(self) -> bool:
        """The quorum's tie-breaker on the new rank 0 (half of the last membership left):
        hold the checkpoint directory's writer lock, or take it now. Without a checkpoint
        directory there is nothing durable to protect: granted."""
        if self.open_checkpoint_store is None:
            return True
        try:
            self._open_store()
        except Exception as exc:  # the lock held by the other side (or the directory gone)
            log.warning("the checkpoint lock is not ours (%s)", exc)
            return False
        return True

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
    # (partitions that appear, issue 21 item 4: from here to the end of the module)
    def _new_partitions(self) -> tuple[str, ...] | None:
        """Rank 0: the topic's partition list when it grew, else None. Asks the source at
        most every ``partitions_check_seconds``; the list found is held (the same answer at
        the exchange that raises ``repartition`` and at the broadcast after it) until
        :meth:`_repartition` carries it."""
        if self._found_partitions is not None or self.collective.rank != 0:
            return self._found_partitions
        now = self.clock()
        if now < self._next_partitions_check:
            return None
        self._next_partitions_check = now + self.partitions_check_seconds
        try:
            found = set(self.source.partitions(0.0))
        except Exception as exc:  # no answer now (broker away): asked again at the next check
            log.debug("partition list not read: %s", exc)
            return None
        # Partitions are only ever added to a topic; a shorter list is a partial answer (a
        # recreated topic is the identity check's business), never a reason to drop one.
        if found > set(self.partitions):
            self._found_partitions = tuple(sorted_partitions(list(found)))
            added = sorted_partitions(list(found - set(self.partitions)))
            log.info("partitions added to the topic: %s", ", ".join(added))
        return self._found_partitions

    def _repartition(self) -> None:
        """After a step raising ``repartition``: rank 0's new partition list, by broadcast;
        every replica reassigns (new partitions start at the source's start positions)."""
        c = self.collective
        found = c.broadcast(self._new_partitions() if c.rank == 0 else None, root=0)
        self._found_partitions = None
        self.partitions = tuple(sorted_partitions(list(found)))
        log.info("the job's partitions changed: %d now", len(self.partitions))
        self._assign()
