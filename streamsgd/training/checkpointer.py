"""Checkpoint, then commit (docs/design.md#invariants): when a checkpoint is due, and the
order in which the dead letters, the checkpoint and the upstream offsets are made durable.

A replicated job adds its own rules through a :class:`WriterPolicy` (rank 0's: the step
manifest before the checkpoint, the fence before every write); a single trainer has none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.model import OnlineLogisticRegression
from .buffer import Position
from .intake import Intake
from .ports import CheckpointStore, Sensor
from .settings import ServiceConfig

log = logging.getLogger("streamsgd.service")


class WriterPolicy(Protocol):
    """What a replicated job adds to checkpoint-then-commit."""

    def writes(self) -> bool:
        """Whether this member writes the job's checkpoint (a replica other than rank 0
        does not: its checkpoint is rank 0's)."""

    def before_save(self) -> str | None:
        """Called before the save; a message fails the checkpoint (nothing is committed)."""

    def before_commit(self) -> None:
        """Called before the offsets are committed (raises to forbid the commit)."""

    def commit_positions(self, positions: dict[str, Position]) -> dict[str, Position]:
        """The positions to commit (a failure is a failed commit, retried at the next)."""


class Checkpointed(Protocol):
    """What the checkpointer reads of the run."""

    intake: Intake
    model: OnlineLogisticRegression

    def state(self) -> dict[str, Any]: ...

    @property
    def positions(self) -> dict[str, Position]: ...


@dataclass
class Checkpointer:
    """Saves the run's state, then commits the positions it covers.

    Parameters
    ----------
    store : CheckpointStore or None
        None: no checkpoint is written (offsets are still committed, after the dead letters).
    settings : ServiceConfig
        The interval and the update count that make a checkpoint due.
    open_store : callable, optional
        Opens the store on demand (:meth:`open`): a replica opens the checkpoint directory
        when it becomes rank 0, and closes it at the end of the run (:meth:`close_opened`).
    policy : WriterPolicy, optional
        A replicated job's rules.
    """

    store: CheckpointStore | None
    settings: ServiceConfig
    sensors: Sequence[Sensor]
    clock: Callable[[], float]
    open_store: Callable[[], CheckpointStore] | None = None
    policy: WriterPolicy | None = None
    dirty: bool = field(default=False, init=False)  # something changed since the last one
    updates_at_checkpoint: int = field(default=0, init=False)
    last_time: float = field(init=False)
    last_error: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.last_time = self.clock()

    def open(self) -> bool:
        """Open the store if it is not open and can be; True when this call opened it."""
        if self.store is not None or self.open_store is None:
            return False
        self.store = self.open_store()
        return True

    def close_opened(self) -> None:
        """Close a store that :meth:`open` opened (its writer lock)."""
        if self.store is not None and self.open_store is not None:
            self.store.close()  # type: ignore[attr-defined]

    def due(self, n_updates: int) -> bool:
        """A checkpoint is due: something changed, and the interval passed or enough
        updates accumulated."""
        if not self.dirty:
            return False
        every = self.settings.checkpoint_every_updates
        if every and n_updates - self.updates_at_checkpoint >= every:
            return True
        return self.clock() - self.last_time >= self.settings.checkpoint_interval_seconds

    def checkpoint(self, run: Checkpointed) -> bool:
        """Save a checkpoint, then commit the offsets it covers. Returns False on failure
        (counted by the sensors, logged, and kept in ``last_error``).

        Dead letters are flushed first: an offset is never committed past a rejected record
        whose dead letter is not yet delivered.
        """
        if self.policy is not None:
            if not self.policy.writes():
                return True
            if (refused := self.policy.before_save()) is not None:
                return self._failed(refused)
        self.last_time = self.clock()
        if (undelivered := run.intake.flush_dead_letters()) is not None:
            return self._failed(undelivered)
        if self.store is not None:
            start = time.perf_counter()
            try:
                self.store.save(run.state())
            except OSError as exc:
                return self._failed(f"checkpoint failed: {exc}")
            for s in self.sensors:
                s.checkpoint_saved(time.perf_counter() - start)
            self.updates_at_checkpoint = run.model.n_updates
        self.dirty = False
        self.last_error = None
        self._commit(run)
        return True

    def _failed(self, message: str) -> bool:
        log.error("%s (not committing offsets)", message)
        self.last_error = message
        for s in self.sensors:
            s.checkpoint_failed()
        return False

    def _commit(self, run: Checkpointed) -> None:
        if self.policy is not None:
            self.policy.before_commit()
        try:
            positions = dict(run.positions)
            if self.policy is not None:
                positions = self.policy.commit_positions(positions)
            run.intake.source.commit(positions)
        except Exception as exc:  # a failed commit is retried at the next checkpoint
            log.warning("offset commit failed: %s", exc)
            for s in self.sensors:
                s.offset_commit_failed()
            return
        for s in self.sensors:
            s.offsets_committed()
