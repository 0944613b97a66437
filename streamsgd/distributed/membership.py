"""Who the replicas of a job are and which state they hold (docs/design.md#scaling-out,
Failures): the start (rank 0's checkpoint, broadcast), a recovery after a replica failed
(the lowest step any survivor holds, the lowest-ranked survivor's state at that step), the
partitions each rank reads; the checkpoint's writer is :mod:`.writer`'s."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..training.buffer import MinibatchBuffer
from ..training.ports import Fence, ManifestLog, PartitionedSource
from ..training.stepper import Run
from .agreement import ReplicaAgreement
from .collective import Collective, ReplicaFailure, ReplicaStop
from .held_manifest import ManifestGap, PendingManifest
from .log_check import adopt_verdict, check_log
from .partitions import assign_partitions, sorted_partitions
from .replica_state import ReplicaState
from .writer import CheckpointWriter

log = logging.getLogger("streamsgd.replicated")

PARTITIONS_TIMEOUT_SECONDS = 60.0


@dataclass
class Membership:
    """One replica's part in agreeing on the members and their state.

    Parameters
    ----------
    run : Run
    replica : ReplicaState
    collective : Collective
    agreement : ReplicaAgreement
        Told to compare θ at the first exchange after a state was adopted.
    manifest : ManifestLog, optional
        Checked by the new rank 0 (it must reach the held entries).
    fence : Fence, optional
        The checkpoint directory's generations: a new writer claims one.
    """

    run: Run
    replica: ReplicaState
    collective: Collective
    agreement: ReplicaAgreement
    manifest: ManifestLog | None
    fence: Fence | None

    def __post_init__(self) -> None:
        self.writer = CheckpointWriter(
            self.run, self.replica, self.collective, self.agreement, self.manifest, self.fence
        )
        if hasattr(self.collective, "lease"):
            self.collective.lease = self.writer.hold_lease  # the quorum's tie-breaker (mpi.py)

    @property
    def source(self) -> PartitionedSource:
        return self.run.intake.source  # type: ignore[return-value]  # assigned mode

    # ------------------------------------------------------------------ state
    def replica_state(self) -> dict[str, Any]:
        """What a survivor sends the others (and a replacement) after a membership change."""
        return {
            "state": self.run.state(),
            "pending": self.replica.pending.snapshot(),
            "needs_start": self.replica.needs_start,
            "partitions": self.replica.partitions,
            "log": {"identity": self.replica.log_identity},
        }

    def _replica_state_with_verdict(self) -> dict[str, Any]:
        """At the start, rank 0's verdict on the log (:mod:`.log_check`) goes to everyone:
        all refuse together (nothing read, nothing committed), or all read a new log
        accepted from its beginning."""
        out = self.replica_state()
        out["log"].update(self.replica.log_verdict)
        self.replica.log_verdict = {}
        return out

    def adopt(self, replica_state: dict[str, Any]) -> None:
        replica, run = self.replica, self.run
        if replica_state["state"] is not None:
            run.restore(replica_state["state"])
            replica.global_positions = dict(run.intake.buffer.positions)
        replica.needs_start = bool(replica_state["needs_start"])
        since = -1 if replica.needs_start else self.agreement.global_step
        replica.pending.adopt(replica_state["pending"], since)
        replica.partitions = tuple(replica_state["partitions"])
        replica.log_identity = adopt_verdict(self.source, replica_state.get("log", {}))
        replica.sync_round = True
        self.agreement.check_next = True  # the first exchange after it compares θ (everywhere)
        for s in run.sensors:
            s.model_loaded(run.model)

    def _load_start(self) -> None:
        """Rank 0 without a state: the checkpoint's (or a fresh one). Its view of the
        partitions becomes everyone's (the exchange's layout must agree)."""
        found = self.source.partitions(PARTITIONS_TIMEOUT_SECONDS)
        self.writer.open_store()
        store = self.run.checkpointer.store
        state = None if store is None else store.load()
        verdict = check_log(self.source, state)  # before a replica reads a record
        self.adopt(
            {
                "state": state,
                "pending": PendingManifest.resuming(state).snapshot(),
                "needs_start": state is None,
                "partitions": tuple(sorted_partitions(found)),
                "log": {k: v for k, v in verdict.items() if k != "refusal"},
            }
        )
        self.replica.log_verdict = {k: v for k, v in verdict.items() if k != "identity"}
        self.replica.has_state = True
        self.replica.loaded_checkpoint = state is not None

    # ------------------------------------------------------------------ membership
    def join(self) -> None:
        """Agree on the starting state with the others (recovering if one fails meanwhile)."""
        try:
            self.resynchronise()
        except ReplicaFailure as exc:
            log.warning("a replica failed while the job started (%s): recovering", exc)
            self.recover()

    def recover(self) -> None:
        """Exclude the failed replicas and agree on the state, until that succeeds. A side
        that must stop (no quorum) gives up the checkpoint lock at once, not only when its
        process has closed everything and ended: the majority's new rank 0 waits for it."""
        while True:
            try:
                self.collective.recover()
                self.resynchronise(takeover=True)
                return
            except ReplicaFailure as exc:
                log.warning("another replica failed during recovery (%s): recovering again", exc)
            except ReplicaStop:
                self.run.checkpointer.close_opened()
                raise

    def resynchronise(self, takeover: bool = False) -> None:
        """Agree on one state: at a start, rank 0's (its checkpoint); after a membership
        change (``takeover``), the lowest-ranked survivor's at the lowest step any survivor
        holds (a step that completed on some only is rolled back); a replacement holds
        none. Then rank 0 is the checkpoint's writer and its manifest reaches that step
        (:mod:`.writer`)."""
        c, replica = self.collective, self.replica
        if not takeover and not c.joined:  # the job's start (a replacement joins a takeover)
            self.writer.check_directories()
        if c.rank == 0 and not replica.has_state:
            self._load_start()
        steps = np.zeros(c.size)
        if replica.has_state:
            steps[c.rank] = self.agreement.global_step + 1  # 0: no state
        held = c.allreduce_sum(steps)
        lowest = float(held[held > 0].min())
        root = int(np.flatnonzero(held == lowest)[0])
        self.adopt(
            c.broadcast(self._replica_state_with_verdict() if c.rank == root else None, root=root)
        )
        replica.has_state = True
        self.writer.establish(takeover)
        gap = self.writer.verify_manifest(takeover) if c.rank == 0 else None
        gap = c.broadcast(gap, root=0)  # every replica stops on a gap, not rank 0 alone
        if gap:
            raise ManifestGap(gap)
        log.info(
            "%d replicas agree on step %d; this one is rank %d",
            c.size,
            self.agreement.global_step,
            c.rank,
        )
        self.assign()

    def assign(self) -> None:
        """Read this rank's partitions from the replicated positions."""
        c, replica = self.collective, self.replica
        replica.owned = assign_partitions(c.rank, c.size, replica.partitions)
        # Every replicated position: a partition without one starts at its beginning once
        # the job holds any (added since the first start), not after auto_offset_reset.
        replica.starts = self.source.assign(replica.owned, dict(replica.global_positions))
        self.run.intake.buffer = MinibatchBuffer({**replica.global_positions, **replica.starts})
        replica.layout = None
        log.info(
            "replica rank %d of %d (pid %d) reads %s",
            c.rank,
            c.size,
            os.getpid(),
            ", ".join(replica.owned) or "no partition",
        )
        if not replica.owned:
            log.warning(
                "replica %d of %d has no partition (%d partitions): it idles and takes part "
                "in every step with an empty batch",
                c.rank,
                c.size,
                len(replica.partitions),
            )
        for s in self.run.sensors:
            s.membership(c.rank, c.size, c.membership_changes)
