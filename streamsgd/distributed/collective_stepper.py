"""The steps of N replicas holding one model: synchronous data-parallel steps through a
:class:`~streamsgd.distributed.collective.Collective` (docs/design.md#scaling-out).

Each replica reads the partitions :func:`~streamsgd.distributed.partitions.assign_partitions`
gives its rank (never group rebalancing), fills its share of the global minibatch of M
samples (or waits at most ``max_wait_seconds``), and contributes the sums of its share with
the next position of every partition it owns to ONE allreduce per step (:mod:`.exchange`).
Every replica then applies the identical step: the single-trainer step on the union batch,
so the replicas stay byte-identical, and every statistic, total and position is global.

Failures: when a replica dies inside the collective, the survivors recover
(:mod:`.membership`): they agree on the last step every one of them applied, re-assign the
partitions and seek them to the replicated positions; records fetched but not learned are
read again. A replacement (``--respawn``) receives the state in the same broadcast.

This stepper is also the checkpoint's :class:`~streamsgd.training.checkpointer.WriterPolicy`:
rank 0 alone writes, after appending the step manifest, and a stale lineage never writes.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ..core.reduction import local_sums, reduced_sums
from ..core.step import BatchStats
from ..training.buffer import Position
from ..training.checkpointer import WriterPolicy
from ..training.ports import Fence, ManifestLog
from ..training.stepper import Run
from .agreement import PARTITIONS_CHECK_SECONDS, ReplicaAgreement
from .collective import Collective, ReplicaFailure, Unsupervised
from .commit_guard import MonotoneCommits
from .exchange import Control, Exchange, ExchangeLayout, sample_share, waits
from .membership import Membership
from .replica_state import ReplicaState
from .step_manifest import start_entry, step_entry

log = logging.getLogger("streamsgd.replicated")


def refuse_single_sample_steps(batch_size: int | str) -> None:
    """The rule that m = 1 is not replicated, in one place (the CLI asks it before MPI starts,
    the stepper when it is built). Raises ``ValueError`` for ``batch_size`` 1: every sample
    would cost one collective round trip, so N replicas would be slower than one trainer."""
    if batch_size == 1:
        raise ValueError(
            "--batch-size 1 cannot be replicated: every sample would cost one collective "
            "round trip between replicas; use a batch size of at least 2"
        )


DEFAULT_MAX_WAIT_SECONDS = 0.5  # a replica with few records holds the others this long at most


class CollectiveStepper:
    """A replica's steps: its share of each global minibatch, one exchange, the same step.

    Parameters
    ----------
    run : Run
        The replica's run (its source is a :class:`~streamsgd.training.ports.PartitionedSource`).
    collective : Collective
    manifest : ManifestLog, optional
        Rank 0 appends the step manifest there before each checkpoint (every replica is
        given it: any may become rank 0). Without one no entries are recorded.
    check_every_steps : int
        The replicas compare digests of θ every this many steps and after every checkpoint.
    fence : Fence, optional
        The checkpoint directory's generations: checked before every checkpoint and commit.
    partitions_check_seconds : float
        Rank 0 asks the source for the topic's partitions this often
        (:meth:`~.agreement.ReplicaAgreement._new_partitions`).
    """

    local_rejections: bool = False  # they become global through the exchange

    def __init__(
        self,
        run: Run,
        collective: Collective,
        *,
        manifest: ManifestLog | None,
        check_every_steps: int,
        fence: Fence | None,
        partitions_check_seconds: float = PARTITIONS_CHECK_SECONDS,
    ) -> None:
        refuse_single_sample_steps(run.batch_size)
        self.run = run
        self.collective = collective
        self.manifest = manifest
        self.fence = fence
        self.replica = ReplicaState()
        self.agreement = ReplicaAgreement(
            run,
            self.replica,
            collective,
            check_every_steps,
            reassign=self._reassign,
            partitions_check_seconds=partitions_check_seconds,
        )
        self.membership = Membership(run, self.replica, collective, self.agreement, manifest, fence)
        self.writer_policy: WriterPolicy | None = self
        self._exchange_seconds = 0.0
        self._replicas_undelivered = False
        self.commit_guard = MonotoneCommits()

    def _reassign(self) -> None:
        self.membership.assign()

    @property
    def positions(self) -> dict[str, Position]:
        return self.replica.global_positions

    @property
    def global_step(self) -> int:
        return self.agreement.global_step

    def extra_state(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"global_step": self.global_step}
        if self.replica.log_identity:  # the source has no guard in assigned mode: the job's
            source = getattr(self.run, "source_description", {})
            extra["source"] = {**source, **self.replica.log_identity}
        if self.fence is not None and self.fence.mine is not None:
            extra["generation"] = self.fence.mine
        last = self.replica.pending.last
        if last is not None and last["step"] == self.global_step:
            extra["manifest_entry"] = last  # see PendingManifest.resuming
        return extra

    # ------------------------------------------------------------------ rounds
    def start(self) -> None:
        self.membership.join()

    def round(self) -> bool:
        """Fill this replica's share, take one step with the others; True when they agreed
        to stop. A replica failing on the way makes the survivors recover and go on."""
        try:
            supervised = getattr(self.collective, "supervised", None)
            if supervised is not None and not supervised():
                raise Unsupervised("mpiexec is gone: this replica stops (no unsupervised training)")
            target = self._local_target()
            self._fill(target)
            return self._step(target)
        except ReplicaFailure as exc:
            log.warning("a replica failed (%s): recovering", exc)
            self.membership.recover()
            return False

    def _local_target(self) -> int:
        """This replica's share of the global minibatch M (and of ``max_samples``)."""
        replica = self.replica
        if replica.sync_round or not replica.owned:
            return 0
        c = self.collective
        n_active = min(c.size, len(replica.partitions))
        target = math.ceil(self.run.batch_size / n_active)
        left = self.run.samples_left()
        if left is not None:
            target = min(target, sample_share(left, c.rank, n_active))
        return target

    def _fill(self, target: int) -> None:
        """Poll until ``target`` samples are buffered, ``max_wait_seconds`` passed, a stop is
        requested or the (bounded) source is exhausted. Buffering is not capped: the target
        caps what a step takes."""
        run, intake = self.run, self.run.intake
        wait = run.config.max_wait_seconds
        deadline = run.clock() + (DEFAULT_MAX_WAIT_SECONDS if wait is None else wait)
        while len(intake.buffer) < target and not run.stop_event.is_set():
            left = deadline - run.clock()
            if left <= 0 or intake.source.exhausted:
                return
            intake.poll(min(run.config.poll_timeout_seconds, left), room=lambda: None)
            run.tick()

    # ------------------------------------------------------------------ one step
    def _step(self, target: int) -> bool:
        """One exchange and the step it gives; True when the replicas agreed to stop."""
        run, intake, c = self.run, self.run.intake, self.collective
        buffer = intake.buffer
        n_take = min(len(buffer), target)
        batch = buffer.take(n_take) if n_take else None
        sums = (
            local_sums(run.model, batch.X, batch.y, batch.sample_weight)
            if batch is not None
            else local_sums(run.model, None, None)
        )
        if intake.dead_letters_unflushed and (failure := intake.flush_dead_letters()):
            log.error("%s (no checkpoint until it succeeds)", failure)
        starts = self.replica.starts
        owned = {p: buffer.positions.get(p, starts.get(p, Position(0))) for p in self.replica.owned}
        passed, buffer.passed_empty = buffer.passed_empty, 0
        control = Control(
            rejected=passed,
            stop=int(run.stop_event.is_set()),
            exhausted=int(intake.source.exhausted and not len(buffer)),
            checkpoint=int(c.rank == 0 and run.checkpointer.due(run.model.n_updates)),
            undelivered=int(intake.undelivered),
            durable=self.replica.pending.slot() if c.rank == 0 else 0,
            repartition=int(c.rank == 0 and self.agreement._new_partitions() is not None),
        )
        layout = self._exchange_layout(len(sums))
        digest = self.agreement._digest()
        vector = layout.pack(sums, control, c.rank, self._exchange_seconds, owned, digest)
        started = time.perf_counter()
        reduced = layout.unpack(c.allreduce_sum(vector))
        self._exchange_seconds = time.perf_counter() - started
        self._apply(reduced, time.perf_counter() - started)
        return self._after_step(reduced)

    def _exchange_layout(self, sums_size: int) -> ExchangeLayout:
        replica = self.replica
        if replica.layout is None or replica.layout.sums_size != sums_size:
            replica.layout = ExchangeLayout(sums_size, self.collective.size, replica.partitions)
        return replica.layout

    def _apply(self, exchange: Exchange, exchange_seconds: float) -> None:
        """The step every replica takes from the reduced sums, and the global accounting."""
        run, replica = self.run, self.replica
        before = dict(replica.global_positions)
        replica.global_positions = dict(exchange.positions)
        run.totals.records_rejected += exchange.control.rejected
        if exchange.control.rejected:
            run.checkpointer.dirty = True
        self.agreement._check_digests(exchange.digests)
        replica.pending.confirmed(exchange.control.durable - 1)
        if replica.needs_start:
            self._record(start_entry(replica.global_positions))
            replica.needs_start = False
        sums = reduced_sums(run.model, exchange.sums)
        replica.sync_round = False
        if sums is None:
            return
        start = time.perf_counter()
        eta, skipped = run.model.apply_step(sums)
        stats = BatchStats.of(sums, eta, skipped)
        duration = time.perf_counter() - start
        run.step_applied(sums.n_samples, stats, duration)
        self._record(step_entry(self.global_step, sums.n_samples, before, replica.global_positions))
        wait = waits(exchange.exchange_seconds)
        for s in run.sensors:
            s.collective_step(self.global_step, exchange_seconds, float(wait[self.collective.rank]))

    def _after_step(self, exchange: Exchange) -> bool:
        control, run = exchange.control, self.run
        stop = (
            control.stop > 0
            or run.samples_left() == 0
            or (control.exhausted == self.collective.size and int(exchange.sums[0]) == 0)
        )
        self._replicas_undelivered = control.undelivered > 0
        if self.collective.rank == 0 and control.checkpoint and not stop:
            run.checkpoint()
        # The others keep their entries until a later exchange confirms them durable.
        self.agreement.check_next = bool(control.checkpoint)
        if control.repartition:
            self.agreement._repartition()
        run.tick()
        return stop

    def _record(self, entry: dict[str, Any]) -> None:
        if self.manifest is not None:
            self.replica.pending.add(entry)

    # ------------------------------------------------------------------ writer policy
    def writes(self) -> bool:
        return self.collective.rank == 0

    def before_save(self) -> str | None:
        """Rank 0: every replica's dead letters delivered, the lineage current, the step
        manifest appended (fsync) through this step."""
        if self._replicas_undelivered:
            return "a replica's dead letters are not delivered yet"
        if self.fence is not None:
            self.fence.check()  # a newer lineage: StaleLineage ends this one
        if self.manifest is not None:
            try:
                self.replica.pending.write(self.manifest, self.global_step)
            except OSError as exc:
                for s in self.run.sensors:
                    s.manifest_write_failed()
                return f"step manifest not written: {exc}"
        return None

    def before_commit(self) -> None:
        if self.fence is not None:
            self.fence.check()  # never move committed offsets from a stale lineage

    def commit_positions(self, positions: dict[str, Position]) -> dict[str, Position]:
        """Never a committed offset moving backwards (:mod:`.commit_guard`)."""
        return self.commit_guard.positions(self.run.intake.source, positions)
