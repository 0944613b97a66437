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

**Partitions.** Rank 0 asks the source for the topic's partitions every
``partitions_check_seconds`` and raises the exchange's ``repartition`` slot when the list
grew (:meth:`ReplicaAgreement._new_partitions`); after that step every replica receives the
list by broadcast and reassigns by the same rule (``assign_partitions``): the known
partitions at their replicated positions, a new one at its beginning (the source's rule for
a partition without a position once the job holds positions of the topic).
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
PARTITIONS_CHECK_SECONDS = 5.0
"""Rank 0 asks the source for the partition list at most this often (kafka-python answers
from its metadata cache, confluent asks the broker): ``min(--metadata-max-age-seconds,
this)`` in the product, so a partition added is read within about that plus the age."""
PARTITIONS_ANSWER_SECONDS = 1.0
"""How long rank 0 gives the broker to answer that request. The answer usually takes
milliseconds; a loaded broker took more than 0.1 s every time for minutes, and a check that
does not wait never sees a new partition. Rank 0 waits only while the broker is slow (every
replica then waits in the next exchange), and at most this long per check."""


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
    partitions_check_seconds : float
        Rank 0 asks the source for the topic's partitions this often; a grown list is carried
        to every replica by the exchange.
    """

    run: Run
    replica: ReplicaState
    collective: Collective
    check_every_steps: int
    reassign: Callable[[], None]
    checked_step: int = field(default=-1, init=False)  # the last step whose θ was compared
    check_next: bool = field(default=False, init=False)  # compare at the next exchange
    partitions_check_seconds: float = PARTITIONS_CHECK_SECONDS
    _next_partitions_check: float = field(default=0.0, init=False)
    _found_partitions: tuple[str, ...] | None = field(default=None, init=False)  # not carried

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
        """Rank 0: the topic's partition list when it grew, else None. Asks the source at
        most every ``partitions_check_seconds``; the list found is held (the same answer at
        the exchange that raises ``repartition`` and at the broadcast after it) until
        :meth:`_repartition` carries it."""
        if self._found_partitions is not None or self.collective.rank != 0:
            return self._found_partitions
        now = self.run.clock()
        if now < self._next_partitions_check:
            return None
        self._next_partitions_check = now + self.partitions_check_seconds
        known = set(self.replica.partitions)
        try:
            source = self.run.intake.source
            found = set(source.partitions(PARTITIONS_ANSWER_SECONDS))  # type: ignore[attr-defined]
        except Exception as exc:  # no answer now (broker away): asked again at the next check
            log.debug("partition list not read: %s", exc)
            return None
        # Partitions are only ever added to a topic; a shorter list is a partial answer (a
        # recreated topic is the identity check's business), never a reason to drop one.
        if found > known:
            self._found_partitions = tuple(sorted_partitions(list(found)))
            added = sorted_partitions(list(found - known))
            log.info("partitions added to the topic: %s", ", ".join(added))
        return self._found_partitions

    def _repartition(self) -> None:
        """After a step raising ``repartition``: rank 0's new partition list, by broadcast;
        every replica reassigns (new partitions start at the source's start positions)."""
        c = self.collective
        found = c.broadcast(self._new_partitions() if c.rank == 0 else None, root=0)
        self._found_partitions = None
        self.replica.partitions = tuple(sorted_partitions(list(found)))
        log.info("the job's partitions changed: %d now", len(self.replica.partitions))
        self.reassign()
