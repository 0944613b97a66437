"""N replicas of one trainer holding one model: synchronous data-parallel steps through a
:class:`~streamsgd.distributed.collective.Collective` (docs/design.md, Scaling out).

Each replica reads the partitions :func:`~streamsgd.distributed.partitions.assign_partitions` gives
its rank (never group rebalancing), fills its share of the global minibatch of M samples (or
waits at most ``max_wait_seconds``), and contributes the sums of its share with the next
position of every partition it owns to ONE allreduce per step (:mod:`.exchange`). Every
replica then applies the identical step: the single-trainer step on the union batch, so the
replicas stay byte-identical, and every statistic, total and position is global.

Failures: when a replica dies inside the collective, the survivors :meth:`~Collective.
recover`, agree on the last step every one of them applied (an allreduce may have completed
on some only: the state is taken from a survivor that did not apply it, which rolls the
step back), re-assign the partitions and seek them to the replicated positions; records
fetched but not learned are read again. A replacement (``--respawn``) receives the state
in the same broadcast.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from ..core.reduction import local_sums, reduced_sums
from ..core.step import BatchStats
from ..training.buffer import MinibatchBuffer, Position
from ..training.ports import Fence, ManifestLog
from ..training.trainer import FinalCheckpointError
from .agreement import DEFAULT_CHECK_EVERY_STEPS, ReplicaAgreement
from .collective import Collective, ReplicaFailure, Unsupervised
from .exchange import Control, Exchange, ExchangeLayout, waits
from .held_manifest import ManifestGap, PendingManifest
from .partitions import assign_partitions, sorted_partitions
from .step_manifest import start_entry, step_entry

log = logging.getLogger("streamsgd.replicated")

PARTITIONS_TIMEOUT_SECONDS = 60.0


class ReplicatedService(ReplicaAgreement):
    """A :class:`TrainingService` whose steps are taken by all members of ``collective``.

    Parameters (besides those of :class:`TrainingService`)
    ----------
    source : PartitionedSource
    collective : Collective
        (:class:`~streamsgd.distributed.intake.ReplicaIntake`: each replica's own records.)
    open_checkpoint_store : callable, optional
        Opens the checkpoint store; called by whichever replica is rank 0 (at the start, or
        after rank 0 failed). The checkpoint holds the state of all replicas.
    manifest : ManifestLog, optional
        Rank 0 appends the step manifest there before each checkpoint (every replica is
        given it: any may become rank 0). Without one no entries are recorded.
    check_every_steps : int
        The replicas compare digests of θ in the exchange every this many steps and after
        every checkpoint; on a difference they adopt rank 0's model.
    fence : Fence, optional
        The checkpoint directory's generations: rank 0 claims one when it becomes the
        writer and checks it before every checkpoint and offset commit.
    partitions_check_seconds : float
        See :class:`~streamsgd.distributed.agreement.ReplicaAgreement`.
    """

    def __init__(
        self,
        *args: Any,
        collective: Collective,
        open_checkpoint_store: Any = None,
        manifest: ManifestLog | None = None,
        check_every_steps: int = DEFAULT_CHECK_EVERY_STEPS,
        fence: Fence | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, collective=collective, **kwargs)
        self.open_checkpoint_store = open_checkpoint_store
        self.manifest = manifest
        self.check_every_steps = check_every_steps
        self.fence = fence
        if hasattr(collective, "lease"):
            collective.lease = self._hold_lease  # the tie-breaker of the quorum (mpi.py)
        self.global_positions: dict[str, Position] = {}
        self._starts: dict[str, Position] = {}
        self.pending = PendingManifest()
        self._checked_step = -1  # the last global step whose θ the replicas compared
        self._check_next = False  # compare at the next exchange (a checkpoint was taken)
        self._exchange_seconds = 0.0
        self._needs_start = False
        self._replicas_undelivered = False
        self._has_state = False  # a state adopted (rank 0's start, or a broadcast)
        self._loaded_checkpoint = False  # this rank read the checkpoint at this start
        self._layout: ExchangeLayout | None = None

    # ------------------------------------------------------------------ state
    @property
    def positions(self) -> dict[str, Position]:
        return self.global_positions

    def state(self) -> dict[str, Any]:
        state = super().state()
        positions = self.global_positions
        state["positions"] = {p: [pos.offset, pos.skip_samples] for p, pos in positions.items()}
        state["offsets"] = {p: pos.offset for p, pos in positions.items()}
        state["global_step"] = self.global_step
        if self.fence is not None and self.fence.mine is not None:
            state["generation"] = self.fence.mine
        return state

    def _replica_state(self) -> dict[str, Any]:
        """What a survivor sends the others (and a replacement) after a membership change."""
        return {
            "state": self.state(),
            "pending": self.pending.snapshot(),
            "needs_start": self._needs_start,
            "partitions": self.partitions,
        }

    def _adopt(self, replica_state: dict[str, Any]) -> None:
        if replica_state["state"] is not None:
            self.restore(replica_state["state"])
            self.global_positions = dict(self.buffer.positions)
        self._needs_start = bool(replica_state["needs_start"])
        self.pending.adopt(replica_state["pending"], -1 if self._needs_start else self.global_step)
        self.partitions = tuple(replica_state["partitions"])
        self._sync_round = True
        self._check_next = True  # the first exchange after it compares θ (on every member)
        for s in self.sensors:
            s.model_loaded(self.model)

    # ------------------------------------------------------------------ membership
    def _load_start(self) -> None:
        """Rank 0 without a state: the checkpoint's (or a fresh one). Its view of the
        partitions becomes everyone's (the exchange's layout must agree)."""
        found = self.source.partitions(PARTITIONS_TIMEOUT_SECONDS)
        self._open_store()
        state = None if self.checkpoint_store is None else self.checkpoint_store.load()
        pending = PendingManifest().snapshot()
        self._adopt({"state": state, "pending": pending, "needs_start": state is None,
                     "partitions": tuple(sorted_partitions(found))})  # fmt: skip
        self._has_state = True
        self._loaded_checkpoint = state is not None

    def _assign(self) -> None:
        """Read this rank's partitions from the replicated positions."""
        c = self.collective
        self.owned = assign_partitions(c.rank, c.size, self.partitions)
        # Every replicated position: a partition without one starts at its beginning once
        # the job holds any (added since the first start), not after auto_offset_reset.
        self._starts = self.source.assign(self.owned, dict(self.global_positions))
        self.buffer = MinibatchBuffer({**self.global_positions, **self._starts})
        self._layout = None
        log.info(
            "replica rank %d of %d (pid %d) reads %s", c.rank, c.size, os.getpid(),
            ", ".join(self.owned) or "no partition",
        )  # fmt: skip
        if not self.owned:
            log.warning(
                "replica %d of %d has no partition (%d partitions): it idles and takes part "
                "in every step with an empty batch", c.rank, c.size, len(self.partitions),
            )  # fmt: skip
        for s in self.sensors:
            s.membership(c.rank, c.size, c.membership_changes)

    def _recover(self) -> None:
        """Exclude the failed replicas and agree on the state, until that succeeds."""
        while True:
            try:
                self.collective.recover()
                self._resynchronise()
                return
            except ReplicaFailure as exc:
                log.warning("another replica failed during recovery (%s): recovering again", exc)

    def _resynchronise(self) -> None:
        """Agree on one state: at a start, rank 0's (its checkpoint); after a membership
        change, the lowest-ranked survivor's at the lowest step any survivor holds (a step
        that completed on some only is rolled back); a replacement holds none."""
        c = self.collective
        if c.rank == 0 and not self._has_state:
            self._load_start()
        steps = np.zeros(c.size)
        if self._has_state:
            steps[c.rank] = self.global_step + 1  # 0: no state
        held = c.allreduce_sum(steps)
        lowest = float(held[held > 0].min())
        root = int(np.flatnonzero(held == lowest)[0])
        replica = c.broadcast(self._replica_state() if c.rank == root else None, root=root)
        self._adopt(replica)
        self._has_state = True
        if c.rank == 0:
            self._open_store()
        gap = self._verify_manifest() if c.rank == 0 else None
        gap = c.broadcast(gap, root=0)  # every replica stops on a gap, not rank 0 alone
        if gap:
            raise ManifestGap(gap)
        log.info(
            "%d replicas agree on step %d; this one is rank %d",
            c.size, self.global_step, c.rank,
        )  # fmt: skip
        self._assign()

    def _verify_manifest(self) -> str | None:
        """Rank 0: the file's gap, if any. A job started from a checkpoint that has no
        manifest beside it (a single trainer's) goes on with a warning: its manifest starts
        without a start entry (not replayable); a takeover never accepts a missing file."""
        loaded, self._loaded_checkpoint = self._loaded_checkpoint, False
        if self.manifest is None:
            return None
        where = str(getattr(self.manifest, "path", ""))
        if loaded and not self.manifest.read():
            log.warning(
                "no step manifest at %s beside the checkpoint (step %d): its steps from "
                "here on are recorded, but it cannot be replayed", where, self.global_step,
            )  # fmt: skip
            return self.pending.verify(self.manifest, where, allow_missing=True)
        return self.pending.verify(self.manifest, where)

    # ------------------------------------------------------------------ steps
    def _count_passed(self) -> None:
        """Nothing: a replica's passed rejections become global through the exchange."""

    def _take_passed(self) -> int:
        passed, self.buffer.passed_empty = self.buffer.passed_empty, 0
        return passed

    def _exchange_layout(self, sums_size: int) -> ExchangeLayout:
        if self._layout is None or self._layout.sums_size != sums_size:
            self._layout = ExchangeLayout(sums_size, self.collective.size, self.partitions)
        return self._layout

    def _step(self, target: int) -> bool:
        """One exchange and the step it gives; True when the replicas agreed to stop."""
        n_take = min(len(self.buffer), target)
        batch = self.buffer.take(n_take) if n_take else None
        sums = (
            local_sums(self.model, batch.X, batch.y, batch.sample_weight)
            if batch is not None
            else local_sums(self.model, None, None)
        )
        self._flush_dead_letters()
        owned = {
            p: self.buffer.positions.get(p, self._starts.get(p, Position(0))) for p in self.owned
        }
        control = Control(
            rejected=self._take_passed(),
            stop=int(self._stop.is_set()),
            exhausted=int(self.source.exhausted and not len(self.buffer)),
            checkpoint=int(self.collective.rank == 0 and self._checkpoint_due()),
            undelivered=int(self._undelivered),
            durable=self.pending.slot() if self.collective.rank == 0 else 0,
            repartition=int(self.collective.rank == 0 and self._new_partitions() is not None),
        )
        c = self.collective
        layout = self._exchange_layout(len(sums))
        digest = self._digest()
        vector = layout.pack(sums, control, c.rank, self._exchange_seconds, owned, digest)
        started = time.perf_counter()
        reduced = layout.unpack(c.allreduce_sum(vector))
        self._exchange_seconds = time.perf_counter() - started
        self._apply(reduced, time.perf_counter() - started)
        return self._after_step(reduced)

    def _apply(self, exchange: Exchange, exchange_seconds: float) -> None:
        """The step every replica takes from the reduced sums, and the global accounting."""
        before = dict(self.global_positions)
        self.global_positions = dict(exchange.positions)
        self.totals.records_rejected += exchange.control.rejected
        if exchange.control.rejected:
            self._dirty = True
        self._check_digests(exchange.digests)
        self.pending.confirmed(exchange.control.durable - 1)
        if self._needs_start:
            self._record(start_entry(self.global_positions))
            self._needs_start = False
        sums = reduced_sums(self.model, exchange.sums)
        self._sync_round = False
        if sums is None:
            return
        start = time.perf_counter()
        eta, skipped = self.model.apply_step(sums)
        stats = BatchStats.of(sums, eta, skipped)
        duration = time.perf_counter() - start
        self._account(
            sums.n_samples, int(skipped), sums.n_samples if skipped else 0, sums.n_clipped
        )
        self._record(step_entry(self.global_step, sums.n_samples, before, self.global_positions))
        if not skipped:
            self.totals.progressive_loss_sum += sums.loss_sum
            self.totals.progressive_misclassified += sums.n_misclassified
            for s in self.sensors:
                s.batch_applied(stats, self.model, duration)
        wait = waits(exchange.exchange_seconds)
        for s in self.sensors:
            s.collective_step(self.global_step, exchange_seconds, float(wait[self.collective.rank]))

    def _after_step(self, exchange: Exchange) -> bool:
        control = exchange.control
        limit = self.config.max_samples
        stop = (
            control.stop > 0
            or (limit is not None and self.totals.samples_consumed >= limit)
            or (control.exhausted == self.collective.size and int(exchange.sums[0]) == 0)
        )
        self._replicas_undelivered = control.undelivered > 0
        if self.collective.rank == 0 and control.checkpoint and not stop:
            self.checkpoint()
        # The others keep their entries until a later exchange confirms them durable.
        self._check_next = bool(control.checkpoint)
        if control.repartition:
            self._repartition()
        self._tick()
        return stop

    def _record(self, entry: dict[str, Any]) -> None:
        if self.manifest is not None:
            self.pending.add(entry)

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self) -> bool:
        """Rank 0: append the manifest, save the state of the job, commit every partition."""
        if self.collective.rank != 0:
            return True
        if self._replicas_undelivered:
            return self._checkpoint_failed("a replica's dead letters are not delivered yet")
        if self.fence is not None:
            self.fence.check()  # a newer lineage: StaleLineage ends this one
        if self.manifest is not None:
            try:
                self.pending.write(self.manifest, self.global_step)
            except OSError as exc:
                for s in self.sensors:
                    s.manifest_write_failed()
                return self._checkpoint_failed(f"step manifest not written: {exc}")
        return super().checkpoint()

    def _commit(self) -> None:
        if self.fence is not None:
            self.fence.check()  # never move committed offsets from a stale lineage
        saved, self.buffer.positions = self.buffer.positions, self.global_positions
        try:
            super()._commit()
        finally:
            self.buffer.positions = saved

    def partitions_revoked(self, partitions: set[str]) -> None:
        raise AssertionError("replicas are assigned their partitions; nothing revokes them")

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        """Step with the other replicas until they agree to stop; rank 0 then writes the
        final checkpoint (raises :class:`~streamsgd.training.trainer.FinalCheckpointError` there
        when it cannot)."""
        try:
            self._join()
            while True:
                try:
                    if self._step_once():
                        break
                except ReplicaFailure as exc:
                    log.warning("a replica failed (%s): recovering", exc)
                    self._recover()
            self._finish()
        finally:
            store = self.checkpoint_store
            if store is not None and self.open_checkpoint_store is not None:
                store.close()  # type: ignore[attr-defined]  # the writer lock this replica took

    def _join(self) -> None:
        try:
            self._resynchronise()
        except ReplicaFailure as exc:
            log.warning("a replica failed while the job started (%s): recovering", exc)
            self._recover()

    def _step_once(self) -> bool:
        supervised = getattr(self.collective, "supervised", None)
        if supervised is not None and not supervised():
            raise Unsupervised("mpiexec is gone: this replica stops (no unsupervised training)")
        target = self._local_target()
        self._fill(target)
        return self._step(target)

    def _finish(self) -> None:
        if self.collective.rank != 0:
            self._tick()
            return
        saved = self.checkpoint()
        self._tick()
        if not saved:
            raise FinalCheckpointError(
                f"the final checkpoint of the run was not written: {self.last_checkpoint_error}"
            )
