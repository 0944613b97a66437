"""The steps of a single process: the model is called directly. Every full minibatch of a
fixed m that a poll buffers goes through one compiled call
(:func:`~streamsgd.core.multi_step.learn_batches`), and with m = 1 aligned blocks of steps go
through the compiled per-sample loop (:func:`~streamsgd.core.sequential.learn_sequence`):
the same steps as one ``learn_batch`` each, faster. With a controller (m and η chosen per
step) the minibatches are stepped one at a time."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..core.model import BatchStats
from ..core.multi_step import BatchesStats, learn_batches
from ..core.sequential import DEFAULT_BLOCK_SIZE as SEQUENCE_BLOCK_SIZE
from ..core.sequential import SequenceStats, learn_sequence
from .buffer import Position
from .checkpointer import WriterPolicy
from .stepper import Run

log = logging.getLogger("streamsgd.service")


class LocalStepper:
    """Learns every full minibatch as the intake fills it; resumes from the checkpoint.

    A skipped step (one that would make the weights non-finite) is accounted alike on both
    paths, per step and per sample (``Totals.updates_skipped`` / ``samples_skipped``): its
    samples are consumed, not learned.
    """

    writer_policy: WriterPolicy | None = None
    local_rejections: bool = True

    def __init__(self, run: Run) -> None:
        self.run = run
        self._last_record = run.clock()
        # When the oldest sample still buffered was (first seen) buffered; None: empty.
        self._oldest_buffered: float | None = None

    @property
    def positions(self) -> dict[str, Position]:
        return self.run.intake.buffer.positions

    def extra_state(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Resume from the checkpoint, if any, and seek the source to its positions."""
        run = self.run
        stored_source: dict[str, Any] = {}
        store = run.checkpointer.store
        state = None if store is None else store.load()
        if state is not None:
            run.restore(state)
            stored_source = state["source"]
            log.info(
                "resumed from checkpoint: %d updates, %d samples",
                run.model.n_updates,
                run.model.n_samples_seen,
            )
        for s in run.sensors:
            s.model_loaded(run.model)
        source = run.intake.source
        # A Kafka source checks that the positions belong to the broker's log.
        getattr(source, "expect_log", lambda stored: None)(stored_source)
        source.seek(dict(self.positions))

    # ------------------------------------------------------------------ rounds
    def round(self) -> bool:
        """One poll: learn what it fills, apply a partial minibatch after ``max_wait``
        without records, checkpoint when due. True when the run ends (a stop, the sample
        limit, a bounded source exhausted), with the last partial minibatch applied."""
        run, intake = self.run, self.run.intake
        left = run.samples_left()
        if run.stop_event.is_set() or (left is not None and left - len(intake.buffer) <= 0):
            return self._end()
        updates = run.model.n_updates
        n_records = intake.poll(run.config.poll_timeout_seconds, run.room, self.learn_ready)
        now = run.clock()
        if n_records:
            self._last_record = now
        elif intake.source.exhausted:
            return self._end()
        self._track_oldest(now, stepped=run.model.n_updates != updates)
        wait, age = run.config.max_wait_seconds, run.config.max_batch_age_seconds
        if len(intake.buffer) and (
            (wait is not None and now - self._last_record >= wait)
            or (age is not None and now - (self._oldest_buffered or now) >= age)
        ):
            self.learn_rest()
            self._oldest_buffered = None
        run.tick()
        if run.checkpointer.due(run.model.n_updates):
            run.checkpoint()  # a failure is counted and logged; the run goes on
        return False

    def _track_oldest(self, now: float, stepped: bool) -> None:
        """Samples left after a step arrived in this poll; otherwise the oldest stays."""
        if not len(self.run.intake.buffer):
            self._oldest_buffered = None
        elif stepped or self._oldest_buffered is None:
            self._oldest_buffered = now

    def _end(self) -> bool:
        # A bounded run ends with its last, possibly partial, minibatch applied.
        if not self.run.stop_event.is_set() and len(self.run.intake.buffer):
            self.learn_rest()
        return True

    # ------------------------------------------------------------------ steps
    def learn(self, n_samples: int) -> BatchStats:
        """One minibatch step on the next ``n_samples`` buffered samples."""
        run = self.run
        batch = run.intake.buffer.take(n_samples)
        start = time.perf_counter()
        stats = run.model.learn_batch(batch.X, batch.y, batch.sample_weight)
        run.step_applied(batch.n_samples, stats, time.perf_counter() - start)
        return stats

    def learn_batches(self, n_samples: int) -> BatchesStats:
        """Steps of m = ``run.batch_size`` on the next ``n_samples`` buffered samples (a
        multiple of m), in one call; accounted as the same steps taken one by one."""
        run, totals = self.run, self.run.totals
        batch = run.intake.buffer.take(n_samples)
        start = time.perf_counter()
        stats = learn_batches(run.model, batch.X, batch.y, batch.sample_weight, run.batch_size)
        duration = time.perf_counter() - start
        run.account(
            batch.n_samples, stats.n_steps_skipped, stats.n_samples_skipped, stats.n_clipped
        )
        # Step by step, as the per-step accounting adds them (the same bits).
        totals.progressive_loss_sum = stats.add_losses(totals.progressive_loss_sum)
        totals.progressive_misclassified += stats.n_misclassified
        for s in run.sensors:
            s.batches_applied(stats, run.model, duration)
        return stats

    def learn_block(self, n_samples: int) -> SequenceStats:
        """Apply the next ``n_samples`` buffered samples as consecutive m = 1 steps."""
        run = self.run
        batch = run.intake.buffer.take(n_samples)
        start = time.perf_counter()
        block = run.config.online_block_size or None  # the same bits however blocks group
        stats = learn_sequence(run.model, batch.X, batch.y, batch.sample_weight, block_size=block)
        duration = time.perf_counter() - start
        # m = 1: every skipped step is one skipped sample.
        run.account(batch.n_samples, stats.n_skipped, stats.n_skipped, stats.n_clipped)
        run.totals.progressive_loss_sum += stats.loss_sum
        run.totals.progressive_misclassified += stats.n_misclassified
        for s in run.sensors:
            s.sequence_applied(stats, run.model, duration)
        return stats

    def learn_ready(self) -> None:
        """Apply every full minibatch (or full aligned m = 1 block) in the buffer."""
        run, buffer = self.run, self.run.intake.buffer
        m, block = run.batch_size, run.config.online_block_size
        if m == 1 and block > 0:
            while len(buffer) >= (due := block - run.totals.samples_consumed % block):
                if due == block and block % SEQUENCE_BLOCK_SIZE == 0:
                    # Every full block buffered, in one call: learn_sequence cuts it into
                    # the same blocks of SEQUENCE_BLOCK_SIZE as one call per block would
                    # (so the same weights, bit for bit), with its per-call cost paid once.
                    due = len(buffer) // block * block
                self.learn_block(due)
            return
        if run.model.controller is None:  # a fixed m: many minibatches per call
            while len(buffer) >= m:
                # The first chunk's whole batches (its rows as they are: concatenating
                # chunks copied every row), or the one batch that spans two chunks.
                self.learn_batches(buffer.head_samples // m * m or m)
            return
        while len(buffer) >= (m := run.batch_size):  # m may change at every step
            self.learn(m)

    def learn_rest(self) -> None:
        """Apply whatever is buffered as one (partial) minibatch or block."""
        run = self.run
        if run.batch_size == 1 and run.config.online_block_size > 0:
            self.learn_block(len(run.intake.buffer))
        else:
            self.learn(len(run.intake.buffer))
