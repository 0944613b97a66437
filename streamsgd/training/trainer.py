"""The training loop: poll → decode → buffer → step → metrics → checkpoint → commit.

One :class:`Trainer` for a single process and for every replica of a job, composed of an
intake (:mod:`.intake`: poll, decode, buffer, dead letters), a stepper (:mod:`.stepper`:
the local one calls the model, the collective one steps with the other replicas) and a
checkpointer (:mod:`.checkpointer`: checkpoint, then commit). Written against the ports of
:mod:`streamsgd.training.ports`, so embedded sources, Kafka, Prometheus and the checkpoint
directory plug in without the loop knowing any library.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..codec import Decoder
from ..core.controller import NoiseController
from ..core.model import BatchStats, OnlineLogisticRegression
from ..core.state_format import upgrade_model_state
from .buffer import MinibatchBuffer, Position
from .checkpointer import Checkpointer
from .intake import Intake
from .local_stepper import LocalStepper
from .ports import CheckpointError, CheckpointStore, DeadLetterSink, Sensor, Source
from .settings import ServiceConfig
from .stepper import Run, Stepper
from .totals import Totals, progressive_log_loss

log = logging.getLogger("streamsgd.service")

__all__ = ["FinalCheckpointError", "ServiceConfig", "Trainer", "progressive_log_loss"]


class FinalCheckpointError(RuntimeError):
    """The checkpoint that ends a run could not be written: the run's model is not saved."""


class Trainer:
    """Owns the model and drives one source into it.

    Exactly-once model state: the checkpoint holds the model and, per partition, the
    position after the last applied sample; offsets are committed only after it is on disk,
    and a start seeks to its positions, so samples buffered at a crash are re-read.

    Parameters
    ----------
    model, source, decoder, config
        The model, where records come from, how they become samples, how the loop batches
        and checkpoints.
    checkpoint_store : CheckpointStore, optional
        Where checkpoints go (None: no checkpoint; offsets are still committed).
    dead_letter : DeadLetterSink, optional
        Where rejected records go.
    sensors : sequence of Sensor
        Told everything the loop does (metrics, progress).
    clock : callable
        Monotonic seconds (the checkpoint interval, the wait for a partial minibatch).
    source_description : dict, optional
        What the checkpoint records of the source.
    stepper : callable, optional
        Builds the stepper from the trainer (default :class:`LocalStepper`; a replicated
        job's is built by :func:`streamsgd.distributed.replicated.replicated_trainer`).
    open_checkpoint_store : callable, optional
        Opens the checkpoint store when this process becomes its writer (a replica).
    """

    def __init__(
        self,
        model: OnlineLogisticRegression,
        source: Source,
        decoder: Decoder,
        config: ServiceConfig,
        *,
        checkpoint_store: CheckpointStore | None = None,
        dead_letter: DeadLetterSink | None = None,
        sensors: Sequence[Sensor] = (),
        clock: Callable[[], float] = time.monotonic,
        source_description: dict[str, Any] | None = None,
        stepper: Callable[[Run], Stepper] = LocalStepper,
        open_checkpoint_store: Callable[[], CheckpointStore] | None = None,
    ) -> None:
        if config.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = model
        self.config = config
        self.sensors = list(sensors)
        self.clock = clock
        self.source_description = source_description or {}
        self.totals = Totals()
        self.stop_event = threading.Event()
        self.intake = Intake(
            source, decoder, dead_letter=dead_letter, sensors=self.sensors, changed=self._changed
        )
        self.checkpointer = Checkpointer(
            checkpoint_store,
            config,
            sensors=self.sensors,
            clock=clock,
            open_store=open_checkpoint_store,
        )
        self.stepper = stepper(self)
        self.checkpointer.policy = self.stepper.writer_policy

    # ------------------------------------------------------------------ views
    @property
    def source(self) -> Source:
        return self.intake.source

    @property
    def buffer(self) -> MinibatchBuffer:
        return self.intake.buffer

    @property
    def positions(self) -> dict[str, Position]:
        """Per partition, the position after the last applied sample."""
        return self.stepper.positions

    @property
    def batch_size(self) -> int:
        """m of the next minibatch (the model's controller's, if any): read at every step."""
        controller = self.model.controller
        return controller.batch_size if controller else self.config.batch_size

    @property
    def last_checkpoint_error(self) -> str | None:
        return self.checkpointer.last_error

    # ------------------------------------------------------------------ state
    def restore(self, state: dict[str, Any]) -> None:
        """Adopt a checkpoint: model, totals and positions (the source is sought at start)."""
        params = self.model.get_params()
        stored = upgrade_model_state(state["model"])["params"]  # (older: their defaults)
        if stored["n_features"] != params["n_features"]:
            raise CheckpointError(
                f"the checkpoint holds a model with {stored['n_features']} features, "
                f"not {params['n_features']}: use another --checkpoint-dir"
            )
        changed = {k: (stored.get(k), v) for k, v in params.items() if stored.get(k) != v}
        if changed:
            log.warning("hyper-parameters changed since the checkpoint (old, new): %s", changed)
        restored = OnlineLogisticRegression.from_state({**state["model"], "params": params})
        restored.controller = NoiseController.resume(self.model.controller, restored.controller)
        self.model = restored
        self.totals = Totals.from_state(state["totals"])
        positions = {p: Position(int(o), int(s)) for p, (o, s) in state["positions"].items()}
        self.intake.buffer = MinibatchBuffer(positions)
        self.checkpointer.updates_at_checkpoint = self.model.n_updates

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds."""
        self._count_passed()
        positions = self.positions
        return {
            "model": self.model.get_state(),
            "positions": {p: [pos.offset, pos.skip_samples] for p, pos in positions.items()},
            # The next record to read per partition; a partly applied record is re-read.
            "offsets": {p: pos.offset for p, pos in positions.items()},
            "totals": vars(self.totals).copy(),
            # A Kafka source adds the topic id and cluster id its positions belong to.
            "source": {**self.source_description, **getattr(self.source, "log_identity", dict)()},
            "batch_size": self.batch_size,
            **self.stepper.extra_state(),
        }

    def _count_passed(self) -> None:
        """Rejected records the positions pass enter the totals (never one re-read later)."""
        if self.stepper.local_rejections:
            self.totals.records_rejected += self.buffer.passed_empty
            self.buffer.passed_empty = 0

    def _changed(self) -> None:
        self.checkpointer.dirty = True

    # ------------------------------------------------------------------ the rules
    def samples_left(self) -> int | None:
        """Samples still to learn under ``max_samples`` (None: no limit): the one place the
        limit is read."""
        if self.config.max_samples is None:
            return None
        return max(self.config.max_samples - self.totals.samples_consumed, 0)

    def room(self) -> int | None:
        """How many more samples the buffer may take under ``max_samples``."""
        left = self.samples_left()
        return None if left is None else left - len(self.buffer)

    def account(
        self, n_samples: int, skipped_steps: int, skipped_samples: int, clipped: int
    ) -> None:
        """What every step (or block of steps) adds to the totals and the sensors."""
        self.totals.samples_consumed += n_samples
        self.checkpointer.dirty = True
        if skipped_steps:
            self.totals.updates_skipped += skipped_steps
            self.totals.samples_skipped += skipped_samples
            for s in self.sensors:
                s.steps_skipped("non_finite", skipped_steps, skipped_samples)
        if clipped:
            for s in self.sensors:
                s.samples_clipped("row_norm", clipped)

    def step_applied(self, n_samples: int, stats: BatchStats, duration_seconds: float) -> None:
        """One minibatch step taken (or skipped) on ``n_samples`` samples: the totals, the
        progressive loss (pre-step scores) and the sensors."""
        skipped = n_samples if stats.skipped else 0
        self.account(n_samples, int(stats.skipped), skipped, stats.n_clipped)
        if not stats.skipped:
            self.totals.progressive_loss_sum += stats.sums.loss_sum
            self.totals.progressive_misclassified += stats.n_misclassified
            for s in self.sensors:
                s.batch_applied(stats, self.model, duration_seconds)

    def tick(self) -> None:
        self._count_passed()
        for s in self.sensors:
            s.buffered_samples(len(self.buffer))
            s.tick(self.model)

    def checkpoint(self) -> bool:
        """Save a checkpoint, then commit the offsets it covers (False on failure)."""
        return self.checkpointer.checkpoint(self)

    # ------------------------------------------------------------------ the source's calls
    def partitions_revoked(self, partitions: set[str]) -> None:
        """Checkpoint and commit what was applied, then forget the buffered samples of the
        revoked partitions (they are re-read from the checkpointed position if they return)."""
        self.checkpoint()
        self.buffer.discard_partitions(partitions)

    def position_moved(
        self, partition: str, offset: int | None, skipped: int = 0, reason: str = ""
    ) -> None:
        """The source moved a partition's position (None: dropped it), past ``skipped``
        records it can no longer read (counted by ``reason``); checkpointed."""
        self.buffer.move_position(partition, offset)
        self.checkpointer.dirty = True
        for s in self.sensors if skipped else ():
            s.records_skipped(reason, skipped)

    def partitions_unassigned(self, n_partitions: int) -> None:
        """The source holds all but ``n_partitions`` of its topic's partitions."""
        for s in self.sensors:
            s.partitions_unassigned(n_partitions)

    # ------------------------------------------------------------------ the loop
    def request_stop(self) -> None:
        """Finish the current step, checkpoint, commit and return from run()."""
        self.stop_event.set()

    def run(self) -> None:
        """Train until the source is exhausted, max_samples is reached or stop is requested
        (a replica: until the replicas agree to stop).

        Raises
        ------
        FinalCheckpointError
            When the checkpoint that ends the run cannot be written (or the dead letters
            before it delivered): the caller must not report success.
        """
        try:
            self.stepper.start()
            while not self.stepper.round():
                pass
            saved = self.checkpoint()
            self.tick()
            if not saved:
                raise FinalCheckpointError(
                    f"the final checkpoint of the run was not written: {self.last_checkpoint_error}"
                )
        finally:
            self.checkpointer.close_opened()
