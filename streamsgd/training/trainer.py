"""The run loop: poll → decode → buffer → learn → metrics → checkpoint → commit.

Written against the ports of :mod:`streamsgd.training.ports`, so embedded sources, Kafka,
Prometheus and the checkpoint directory plug in without the loop knowing any library.
Decoding is one call per poll (:func:`~streamsgd.codec.decode_poll`): runs go to the buffer,
rejections to the dead-letter sink. A skipped step (one that would make the weights
non-finite) is accounted alike on both learning paths, per step and per sample
(``Totals.updates_skipped`` / ``samples_skipped``): its samples are consumed, not learned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..codec import Decoder, RecordRejected, Rejection, decode_poll
from ..core.controller import NoiseController
from ..core.model import BatchStats, OnlineLogisticRegression
from ..core.sequential import DEFAULT_BLOCK_SIZE as SEQUENCE_BLOCK_SIZE
from ..core.sequential import SequenceStats, learn_sequence
from .buffer import MinibatchBuffer, Position
from .ports import CheckpointError, CheckpointStore, DeadLetterSink, Sensor, Source, SourceRecord
from .settings import ServiceConfig
from .totals import Totals, progressive_log_loss

log = logging.getLogger("streamsgd.service")

__all__ = [
    "CheckpointStore",
    "DeadLetterSink",
    "FinalCheckpointError",
    "Sensor",
    "ServiceConfig",
    "Source",
    "SourceRecord",
    "Totals",
    "TrainingService",
    "progressive_log_loss",
]


class FinalCheckpointError(RuntimeError):
    """The checkpoint that ends a run could not be written: the run's model is not saved."""


class TrainingService:
    """Owns the model and drives one source into it.

    Exactly-once model state: the checkpoint holds the model and, per partition, the
    position after the last applied sample; offsets are committed only after it is on disk,
    and a start seeks to its positions, so samples buffered at a crash are re-read.
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
    ) -> None:
        if config.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = model
        self.source = source
        self.decoder = decoder
        self.config = config
        self.checkpoint_store = checkpoint_store
        self.dead_letter = dead_letter
        self.sensors = list(sensors)
        self.clock = clock
        self.source_description = source_description or {}
        self.totals = Totals()
        self.buffer = MinibatchBuffer()
        self._stop = threading.Event()
        self._dirty = False
        self._updates_at_checkpoint = 0
        self._last_checkpoint = clock()
        self._last_record = clock()
        self.last_checkpoint_error: str | None = None

    # ------------------------------------------------------------------ state
    def restore(self, state: dict[str, Any]) -> None:
        """Adopt a checkpoint: model, totals and positions (the source is sought in run())."""
        params = self.model.get_params()
        stored = state["model"]["params"]
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
        self.buffer = MinibatchBuffer(positions)
        self._updates_at_checkpoint = self.model.n_updates

    def _count_passed(self) -> None:
        """Rejected records the positions pass enter the totals (never one re-read later)."""
        self.totals.records_rejected += self.buffer.passed_empty
        self.buffer.passed_empty = 0

    def state(self) -> dict[str, Any]:
        self._count_passed()
        positions = self.buffer.positions
        return {
            "model": self.model.get_state(),
            "positions": {p: [pos.offset, pos.skip_samples] for p, pos in positions.items()},
            # The next record to read per partition; a partly applied record is re-read.
            "offsets": {p: pos.offset for p, pos in positions.items()},
            "totals": vars(self.totals).copy(),
            # A Kafka source adds the topic id and cluster id its positions belong to.
            "source": {**self.source_description, **getattr(self.source, "log_identity", dict)()},
            "batch_size": self.batch_size,
        }

    @property
    def batch_size(self) -> int:
        """m of the next minibatch (the model's controller's, if any): read at every step."""
        controller = self.model.controller
        return controller.batch_size if controller else self.config.batch_size

    @property
    def positions(self) -> dict[str, Position]:
        """Per partition, the position after the last applied sample."""
        return self.buffer.positions

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
        self._dirty = True
        for s in self.sensors if skipped else ():
            s.records_skipped(reason, skipped)

    def partitions_unassigned(self, n_partitions: int) -> None:
        """The source holds all but ``n_partitions`` of its topic's partitions."""
        for s in self.sensors:
            s.partitions_unassigned(n_partitions)

    def checkpoint(self) -> bool:
        """Save a checkpoint, then commit the offsets it covers. Returns False on failure
        (counted by the sensors, logged, and kept in ``last_checkpoint_error``).

        Dead letters are flushed first: an offset is never committed past a rejected record
        whose dead letter is not yet delivered.
        """
        self._last_checkpoint = self.clock()
        try:
            if self.dead_letter is not None:
                self.dead_letter.flush()
        except Exception as exc:
            return self._checkpoint_failed(f"dead-letter delivery failed: {exc}")
        if self.checkpoint_store is not None:
            start = time.perf_counter()
            try:
                self.checkpoint_store.save(self.state())
            except OSError as exc:
                return self._checkpoint_failed(f"checkpoint failed: {exc}")
            for s in self.sensors:
                s.checkpoint_saved(time.perf_counter() - start)
            self._updates_at_checkpoint = self.model.n_updates
        self._dirty = False
        self.last_checkpoint_error = None
        self._commit()
        return True

    def _checkpoint_failed(self, message: str) -> bool:
        log.error("%s (not committing offsets)", message)
        self.last_checkpoint_error = message
        for s in self.sensors:
            s.checkpoint_failed()
        return False

    def _commit(self) -> None:
        try:
            self.source.commit(dict(self.buffer.positions))
        except Exception as exc:  # a failed commit is retried at the next checkpoint
            log.warning("offset commit failed: %s", exc)
            for s in self.sensors:
                s.offset_commit_failed()
            return
        for s in self.sensors:
            s.offsets_committed()

    # ------------------------------------------------------------------ records
    def request_stop(self) -> None:
        """Finish the current step, checkpoint, commit and return from run()."""
        self._stop.set()

    def _remaining(self) -> int | None:
        if self.config.max_samples is None:
            return None
        return self.config.max_samples - self.totals.samples_consumed - len(self.buffer)

    def reject(self, record: SourceRecord, exc: RecordRejected) -> None:
        """Dead-letter and pass over a record that cannot be learned; it enters the totals
        when its position is passed (:meth:`_count_passed`), with the samples before it."""
        for s in self.sensors:
            s.record_rejected(exc.reason)
        if self.dead_letter is not None:
            self.dead_letter.send(record, exc.reason, exc.detail)
            for s in self.sensors:
                s.record_dead_lettered()
        self.buffer.append_empty(record.partition, record.offset)
        self._dirty = True

    def handle_all(self, records: Sequence[SourceRecord]) -> None:
        """Decode a poll's records into the buffer, learning every full minibatch.

        Records past ``max_samples`` are left unread (their positions do not advance).
        """
        for item in decode_poll(self.decoder, records):
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return
            if isinstance(item, Rejection):
                self.reject(item.record, item.error)
            else:
                self.buffer.append_decoded(item, remaining)
            self._learn_ready()

    # ------------------------------------------------------------------ learning
    def learn(self, n_samples: int) -> BatchStats:
        """One minibatch step on the next ``n_samples`` buffered samples."""
        batch = self.buffer.take(n_samples)
        start = time.perf_counter()
        stats = self.model.learn_batch(batch.X, batch.y, batch.sample_weight)
        duration = time.perf_counter() - start
        skipped = batch.n_samples if stats.skipped else 0
        self._account(batch.n_samples, int(stats.skipped), skipped, stats.n_clipped)
        if not stats.skipped:
            self.totals.progressive_loss_sum += stats.sums.loss_sum
            self.totals.progressive_misclassified += stats.n_misclassified
            for s in self.sensors:
                s.batch_applied(stats, self.model, duration)
        return stats

    def learn_block(self, n_samples: int) -> SequenceStats:
        """Apply the next ``n_samples`` buffered samples as consecutive m = 1 steps."""
        batch = self.buffer.take(n_samples)
        start = time.perf_counter()
        block = self.config.online_block_size or None  # the same bits however blocks group
        stats = learn_sequence(self.model, batch.X, batch.y, batch.sample_weight, block_size=block)
        duration = time.perf_counter() - start
        # m = 1: every skipped step is one skipped sample.
        self._account(batch.n_samples, stats.n_skipped, stats.n_skipped, stats.n_clipped)
        self.totals.progressive_loss_sum += stats.loss_sum
        self.totals.progressive_misclassified += stats.n_misclassified
        for s in self.sensors:
            s.sequence_applied(stats, self.model, duration)
        return stats

    def _account(
        self, n_samples: int, skipped_steps: int, skipped_samples: int, clipped: int
    ) -> None:
        """What every step (or block of steps) adds to the totals and the sensors."""
        self.totals.samples_consumed += n_samples
        self._dirty = True
        if skipped_steps:
            self.totals.updates_skipped += skipped_steps
            self.totals.samples_skipped += skipped_samples
            for s in self.sensors:
                s.steps_skipped("non_finite", skipped_steps, skipped_samples)
        if clipped:
            for s in self.sensors:
                s.samples_clipped("row_norm", clipped)

    def _learn_ready(self) -> None:
        """Apply every full minibatch (or full aligned m = 1 block) in the buffer."""
        m, block = self.batch_size, self.config.online_block_size
        if m == 1 and block > 0:
            while len(self.buffer) >= (due := block - self.totals.samples_consumed % block):
                if due == block and block % SEQUENCE_BLOCK_SIZE == 0:
                    # Every full block buffered, in one call: learn_sequence cuts it into
                    # the same blocks of SEQUENCE_BLOCK_SIZE as one call per block would
                    # (so the same weights, bit for bit), with its per-call cost paid once.
                    due = len(self.buffer) // block * block
                self.learn_block(due)
            return
        while len(self.buffer) >= (m := self.batch_size):
            self.learn(m)

    def _learn_rest(self) -> None:
        """Apply whatever is buffered as one (partial) minibatch or block."""
        if self.batch_size == 1 and self.config.online_block_size > 0:
            self.learn_block(len(self.buffer))
        else:
            self.learn(len(self.buffer))

    # ------------------------------------------------------------------ loop
    def _checkpoint_due(self) -> bool:
        if not self._dirty:
            return False
        every = self.config.checkpoint_every_updates
        if every and self.model.n_updates - self._updates_at_checkpoint >= every:
            return True
        return self.clock() - self._last_checkpoint >= self.config.checkpoint_interval_seconds

    def _done(self) -> bool:
        remaining = self._remaining()
        return remaining is not None and remaining <= 0

    def _resume(self) -> None:
        stored_source: dict[str, Any] = {}
        if self.checkpoint_store is not None:
            state = self.checkpoint_store.load()
            if state is not None:
                self.restore(state)
                stored_source = state["source"]
                log.info(
                    "resumed from checkpoint: %d updates, %d samples",
                    self.model.n_updates,
                    self.model.n_samples_seen,
                )
        for s in self.sensors:
            s.model_loaded(self.model)
        # A Kafka source checks that the positions belong to the broker's log.
        getattr(self.source, "expect_log", lambda stored: None)(stored_source)
        self.source.seek(dict(self.buffer.positions))

    def _poll_once(self) -> bool:
        """One loop iteration; False once a bounded source is exhausted."""
        records = self.source.poll(self.config.poll_timeout_seconds)
        now = self.clock()
        if records:
            self._last_record = now
            for s in self.sensors:
                s.records_consumed(len(records))
            newest = records[-1].timestamp_ms
            if newest is not None:
                for s in self.sensors:
                    s.record_timestamp(newest / 1000.0)
            self.handle_all(records)
        elif self.source.exhausted:
            return False
        wait = self.config.max_wait_seconds
        if wait is not None and len(self.buffer) and now - self._last_record >= wait:
            self._learn_rest()
        self._tick()
        if self._checkpoint_due():
            self.checkpoint()  # a failure is counted and logged; the run goes on
        return True

    def _tick(self) -> None:
        self._count_passed()
        for s in self.sensors:
            s.buffered_samples(len(self.buffer))
            s.tick(self.model)

    def run(self) -> None:
        """Train until the source is exhausted, max_samples is reached or stop is requested.

        Raises
        ------
        FinalCheckpointError
            When the checkpoint that ends the run cannot be written (or the dead letters
            before it delivered): the caller must not report success.
        """
        self._resume()
        while not self._stop.is_set() and not self._done():
            if not self._poll_once():
                break
        # A bounded run ends with its last, possibly partial, minibatch applied.
        if not self._stop.is_set() and len(self.buffer):
            self._learn_rest()
        saved = self.checkpoint()
        self._tick()
        if not saved:
            raise FinalCheckpointError(
                f"the final checkpoint of the run was not written: {self.last_checkpoint_error}"
            )
