"""Which replica writes the job's checkpoint, and for which lineage (docs/operations.md,
"Supported layouts, and why"): rank 0 holds the checkpoint directory's writer lock and a
generation of its fence, and its manifest reaches the step the replicas agreed on.

**A takeover waits for the lock.** After a failure the survivors went on only with a quorum
(:func:`~.collective.check_quorum`). With a strict majority, a lock held by someone else is
the old rank 0 on the minority side — declared failed, still alive until it notices it is
alone (a second detector timeout) and stops with ``NoQuorum``. The new rank 0 therefore waits
for the lock, at most ``takeover_wait_seconds`` (the collective's: the replica timeout plus
the recovery timeout, what the minority needs to notice and stop), asking again every
``LOCK_RETRY_SECONDS``; every member takes part in one broadcast per attempt, so nobody times
out meanwhile. At a start the lock is taken once (a second trainer on the directory is a
mistake, not a failure).

**Generations grow along the lineage.** Every member carries the writer's generation; a new
writer claims above it (:meth:`~streamsgd.checkpoint.generation.GenerationFence.claim`), so
with a directory on each host's own disk the host that holds the newest lineage holds the
highest generation. At a job's start every member reports the highest generation in its own
directory: when another host's is higher than rank 0's, rank 0's checkpoint is an older
lineage and every member stops (``BehindLineage``) before anything is read or committed.

**A takeover on a host without the lineage's manifest starts it over.** A new rank 0 whose
own directory had not seen the lineage's generation (each host its own disk: the lineage's
writers were elsewhere, so whatever manifest is there is not the lineage's) writes the agreed
state — identical on every survivor — as a checkpoint and as the base of a new manifest file
(:meth:`~streamsgd.checkpoint.manifest_file.ManifestFile.rebase`); a replay starts from that
base. In a directory that saw the lineage's writer (a shared one), a gap still stops the job
(:class:`~.held_manifest.ManifestGap`): the file was damaged or removed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..training.ports import Fence, ManifestLog
from ..training.stepper import Run
from .agreement import ReplicaAgreement
from .collective import Collective, ReplicaStop
from .replica_state import ReplicaState
from .step_manifest import base_entry

log = logging.getLogger("streamsgd.replicated")

LOCK_RETRY_SECONDS = 0.5
"""A new rank 0 asks for a held lock again after this long (one broadcast per attempt)."""
OPEN, WAIT, STOP = "open", "wait", "stop"


class WriterLocked(ReplicaStop):
    """After a takeover the checkpoint directory's lock stayed held past the wait."""


class BehindLineage(ReplicaStop):
    """At a start, another member's checkpoint directory holds a newer lineage than rank 0's."""


@dataclass
class CheckpointWriter:
    """Rank 0's part as the checkpoint's writer, and every member's part in agreeing on it.

    Parameters
    ----------
    run, replica, collective, agreement
        As for :class:`~.membership.Membership`.
    manifest : ManifestLog, optional
        The step manifest the writer keeps.
    fence : Fence, optional
        The generations of this host's checkpoint directory.
    """

    run: Run
    replica: ReplicaState
    collective: Collective
    agreement: ReplicaAgreement
    manifest: ManifestLog | None
    fence: Fence | None
    # This directory had not seen the lineage's generation when this writer claimed one: its
    # manifest is not the lineage's (another host's disk), whatever it holds.
    lineage_elsewhere: bool = field(default=False, init=False)

    # ------------------------------------------------------------------ lock and generation
    def open_store(self) -> None:
        """Become the checkpoint's writer: its lock, and a generation above the lineage's
        (claimed again at the next call if the claim failed: never a writer without one)."""
        checkpointer, fence = self.run.checkpointer, self.fence
        opened = checkpointer.open()
        if fence is not None and checkpointer.store is not None and (opened or fence.mine is None):
            seen = fence.latest()
            generation = fence.claim(self.replica.generation)
            self.lineage_elsewhere = seen < self.replica.generation
            log.info("checkpoint writer of generation %d", generation)

    def hold_lease(self) -> bool:
        """The quorum's tie-breaker on the new rank 0 (half of the last membership left):
        hold the checkpoint directory's writer lock, or take it now. Without a checkpoint
        directory there is nothing durable to protect: granted."""
        if self.run.checkpointer.open_store is None:
            return True
        try:
            self.open_store()
        except Exception as exc:  # the lock held by the other side (or the directory gone)
            log.warning("the checkpoint lock is not ours (%s)", exc)
            return False
        return True

    def check_directories(self) -> None:
        """At a job's start, every member: stop when another member's directory holds a
        higher generation than rank 0's (module doc); else carry the highest."""
        c = self.collective
        mine = np.zeros(c.size)
        mine[c.rank] = 0 if self.fence is None else self.fence.latest()
        seen = c.allreduce_sum(mine)
        newest = int(seen.max())
        if int(seen[0]) < newest:
            host = int(np.flatnonzero(seen == newest)[0])
            raise BehindLineage(
                f"the checkpoint directory of rank {host} holds generation {newest}, rank 0's "
                f"only {int(seen[0])}: a later lineage wrote on rank {host}'s host (its own "
                "disk); start the job with rank 0 on that host"
            )
        self.replica.generation = newest

    def establish(self, takeover: bool) -> None:
        """Every member: rank 0 becomes the writer (after a ``takeover`` waiting for a lock
        the old rank 0 still holds, module doc); every member learns its generation."""
        c = self.collective
        wait_seconds = float(getattr(c, "takeover_wait_seconds", 0.0)) if takeover else 0.0
        deadline = time.monotonic() + wait_seconds
        waited = False
        while True:
            verdict = self._try_open(deadline, waited) if c.rank == 0 else None
            status, detail = c.broadcast(verdict, root=0)
            if status == OPEN:
                self.replica.generation = int(detail)
                return
            if status == STOP:
                raise WriterLocked(detail)
            waited = True

    def _try_open(self, deadline: float, waited: bool) -> tuple[str, Any]:
        """Rank 0's verdict on one attempt: (OPEN, generation), (WAIT, None) after a pause,
        or (STOP, the one-line reason)."""
        try:
            self.open_store()
        # Locked (the CLI's opener reports it as a usage error), or the directory away for a
        # moment: asked again until the deadline.
        except Exception as exc:
            if time.monotonic() >= deadline:
                after = " (after waiting for the former rank 0 to stop)" if waited else ""
                return STOP, f"{exc}{after}"
            if not waited:
                log.warning("%s: waiting for the former rank 0 to stop", exc)
            time.sleep(LOCK_RETRY_SECONDS)  # the others wait in the broadcast meanwhile
            return WAIT, None
        mine = None if self.fence is None else self.fence.mine
        return OPEN, self.replica.generation if mine is None else mine

    # ------------------------------------------------------------------ manifest
    def verify_manifest(self, takeover: bool) -> str | None:
        """Rank 0: the file's gap, if any (None: go on). A job started from a checkpoint
        that has no manifest beside it (a single trainer's) goes on with a warning: its
        manifest starts without a start entry (not replayable). After a ``takeover`` in a
        directory that never saw the lineage's writer, the file starts over (module doc)."""
        replica = self.replica
        loaded, replica.loaded_checkpoint = replica.loaded_checkpoint, False
        if self.manifest is None:
            return None
        where = str(getattr(self.manifest, "path", ""))
        if loaded and not self.manifest.read():
            log.warning(
                "no step manifest at %s beside the checkpoint (step %d): its steps from "
                "here on are recorded, but it cannot be replayed",
                where,
                self.agreement.global_step,
            )
            return replica.pending.verify(self.manifest, where, allow_missing=True)
        if takeover and self.lineage_elsewhere:
            self.lineage_elsewhere = False
            return self._start_over(where)
        return replica.pending.verify(self.manifest, where)

    def _start_over(self, where: str) -> str | None:
        """The agreed state as a checkpoint and as the base of a new manifest file; the
        reason when that is not possible (no store, or a write failed)."""
        rebase = getattr(self.manifest, "rebase", None)
        store = self.run.checkpointer.store
        gap = (
            f"the step manifest {where} is not the lineage's (its directory never saw the "
            "lineage's checkpoint writer: another host's disk?)"
        )
        if rebase is None or store is None:
            return f"{gap}, and it cannot be started over here"
        step = self.agreement.global_step
        self.replica.pending.rebased(step)  # before state(): it carries no manifest entry
        state = self.run.state()
        try:
            if self.fence is not None:
                self.fence.check()
            rebase(step, base_entry(step, self.replica.global_positions), state)
            store.save(state)  # no commit: the next checkpoint commits, as ever
        except OSError as exc:
            for s in self.run.sensors:
                s.manifest_write_failed()
            return f"{gap}; starting it over at step {step} failed: {exc}"
        log.warning(
            "the step manifest %s is not the lineage's (its directory never saw the "
            "lineage's checkpoint writer: another host's disk?): it starts over at step %d "
            "from the agreed state, saved beside it; the steps before are in the former rank "
            "0's directory",
            where,
            step,
        )
        return None
