"""The run loop: poll → decode → buffer → learn → metrics → checkpoint → commit.

Written against the ports of :mod:`streamsgd.ports` (source, checkpoint store, sensor,
dead-letter sink) so that embedded sources, Kafka, Prometheus and the checkpoint directory
plug in without the loop knowing any library.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .buffer import MinibatchBuffer, Position, slice_rows
from .checkpoint import CheckpointError
from .codec import Decoder, RecordRejected
from .core.model import BatchStats, OnlineLogisticRegression
from .core.sequential import DEFAULT_BLOCK_SIZE as SEQUENCE_BLOCK_SIZE
from .core.sequential import SequenceStats, learn_sequence
from .ports import CheckpointStore, DeadLetterSink, Sensor, Source, SourceRecord

log = logging.getLogger("streamsgd.service")

__all__ = [
    "CheckpointStore",
    "DeadLetterSink",
    "Sensor",
    "ServiceConfig",
    "Source",
    "SourceRecord",
    "Totals",
    "TrainingService",
]

SKIP_REASONS = ("non_finite",)


@dataclass
class ServiceConfig:
    """How the loop batches and checkpoints.

    Attributes
    ----------
    batch_size : int
        m ≥ 1.
    max_samples : int or None
        Stop after this many samples in total (restored ones included); the last
        minibatch may be smaller than m.
    max_wait_seconds : float or None
        Apply a partial minibatch after this long without new records (None: never).
    checkpoint_interval_seconds : float
        Checkpoint at most this often (when something changed).
    checkpoint_every_updates : int
        Also checkpoint after this many updates (0: off).
    online_block_size : int
        With batch_size 1: apply the m = 1 steps K at a time through
        :func:`~streamsgd.core.sequential.learn_sequence` (same steps, several times
        faster; equal to the per-sample loop to rounding). Blocks are aligned on the
        number of samples consumed, so a restarted run cuts the same blocks and stays
        bit-for-bit reproducible; a sample may wait for up to K − 1 others (or for
        ``max_wait_seconds``). 0: one ``learn_batch`` per sample.
    poll_timeout_seconds : float
    """

    # Defaults equal streamsgd.config's (tests/test_config.py checks it).
    batch_size: int = 32
    max_samples: int | None = None
    max_wait_seconds: float | None = None
    checkpoint_interval_seconds: float = 10.0
    checkpoint_every_updates: int = 0
    online_block_size: int = 32
    poll_timeout_seconds: float = 0.2


@dataclass
class Totals:
    """Counters kept in the checkpoint, so they survive restarts exactly."""

    samples_consumed: int = 0
    progressive_loss_sum: float = 0.0
    progressive_misclassified: int = 0
    records_rejected: int = 0
    updates_skipped: int = 0


class TrainingService:
    """Owns the model and drives one source into it.

    Exactly-once model state: the checkpoint holds the model and, per partition, the
    position right after the last sample of the last applied minibatch. Upstream offsets
    are committed only after that checkpoint is on disk, and on start the source is sought
    to the checkpoint's positions, so samples still in the buffer at a crash are re-read.
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
        self._skip: dict[str, Position] = {}
        self._stop = threading.Event()
        self._dirty = False
        self._updates_at_checkpoint = 0
        self._last_checkpoint = clock()
        self._last_record = clock()

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
        self.model = restored
        self.totals = Totals(**state["totals"])
        positions = {p: Position(int(o), int(s)) for p, (o, s) in state["positions"].items()}
        self.buffer = MinibatchBuffer(positions)
        self._skip = {p: pos for p, pos in positions.items() if pos.skip_samples}
        self._updates_at_checkpoint = self.model.n_updates

    def state(self) -> dict[str, Any]:
        positions = self.buffer.positions
        return {
            "model": self.model.get_state(),
            "positions": {p: [pos.offset, pos.skip_samples] for p, pos in positions.items()},
            # The next record to read per partition; a partly applied record is re-read.
            "offsets": {p: pos.offset for p, pos in positions.items()},
            "totals": vars(self.totals).copy(),
            "source": self.source_description,
            "batch_size": self.config.batch_size,
        }

    @property
    def positions(self) -> dict[str, Position]:
        """Per partition, the position after the last applied sample."""
        return self.buffer.positions

    def partitions_revoked(self, partitions: set[str]) -> None:
        """Checkpoint and commit what was applied, then forget the buffered samples of the
        revoked partitions (they are re-read from the checkpointed position if they return)."""
        self.checkpoint()
        self.buffer.discard_partitions(partitions)
        for partition in partitions:
            position = self.buffer.positions.get(partition)
            if position is not None and position.skip_samples:
                self._skip[partition] = position

    def checkpoint(self) -> bool:
        """Save a checkpoint, then commit the offsets it covers. Returns False on failure.

        Dead letters are flushed first: an offset is never committed past a rejected record
        whose dead letter is not yet delivered.
        """
        self._last_checkpoint = self.clock()
        if self.dead_letter is not None:
            try:
                self.dead_letter.flush()
            except Exception as exc:
                log.error("dead-letter delivery failed, not checkpointing yet: %s", exc)
                for s in self.sensors:
                    s.checkpoint_failed()
                return False
        if self.checkpoint_store is None:
            self._dirty = False
            self._commit()
            return True
        start = time.perf_counter()
        try:
            self.checkpoint_store.save(self.state())
        except OSError as exc:
            log.error("checkpoint failed: %s", exc)
            for s in self.sensors:
                s.checkpoint_failed()
            return False
        for s in self.sensors:
            s.checkpoint_saved(time.perf_counter() - start)
        self._dirty = False
        self._updates_at_checkpoint = self.model.n_updates
        self._commit()
        return True

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

    # ------------------------------------------------------------------ loop
    def request_stop(self) -> None:
        """Finish the current step, checkpoint, commit and return from run()."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _remaining(self) -> int | None:
        if self.config.max_samples is None:
            return None
        return self.config.max_samples - self.totals.samples_consumed - len(self.buffer)

    def reject(self, record: SourceRecord, exc: RecordRejected) -> None:
        """Count, dead-letter and pass over a record that cannot be learned."""
        self.totals.records_rejected += 1
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

        Consecutive single-sample JSON records of one partition (the commonest stream,
        dense or named features) take a fast lane: a run of them is decoded at once
        (:meth:`Decoder.decode_run`) and appended as one buffer chunk. A run with any
        other record in it goes one record at a time (:meth:`handle_one_by_one`).
        """
        start, n_records = 0, len(records)
        while start < n_records:
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return
            first = records[start]
            end = start + 1
            if first.samples is None and first.partition not in self._skip:
                limit = n_records if remaining is None else min(n_records, start + remaining)
                # Records of one partition at consecutive offsets: one buffer chunk.
                while (
                    end < limit
                    and records[end].partition == first.partition
                    and records[end].offset == first.offset + (end - start)
                ):
                    end += 1
                decoded = self.decoder.decode_run([r.value for r in records[start:end]])
                if decoded is not None:
                    self.buffer.append_run(*decoded, None, first.partition, first.offset)
                    self._learn_ready()
                    start = end
                    continue
            self.handle_one_by_one(records[start:end])
            start = end

    def handle_one_by_one(self, records: Sequence[SourceRecord]) -> None:
        """Decode records one at a time into the buffer, learning every full minibatch.

        Single-sample dense records still share one buffer chunk per run
        (:meth:`Decoder.decode_dense_row`); everything else goes through :meth:`handle`,
        and a rejected record is dead-lettered with its reason.
        """
        run: list[tuple[SourceRecord, list[Any], float, float | None]] = []
        for record in records:
            remaining = self._remaining()
            if remaining is not None and remaining - len(run) <= 0:
                break
            row = None
            if record.samples is None and record.partition not in self._skip:
                try:
                    row = self.decoder.decode_dense_row(record.value)
                except RecordRejected as exc:
                    self._flush_run(run)
                    self.reject(record, exc)
                    continue
            if row is None:
                self._flush_run(run)
                self.handle(record)
                self._learn_ready()
                continue
            if run and (
                run[-1][0].partition != record.partition or run[-1][0].offset + 1 != record.offset
            ):
                self._flush_run(run)
            run.append((record, *row))
        self._flush_run(run)

    def _flush_run(self, run: list[tuple[SourceRecord, list[Any], float, float | None]]) -> None:
        if not run:
            return
        rows = [x for _, x, _, _ in run]
        try:
            X = np.array(rows, dtype=np.float64)
        except OverflowError:  # an integer literal beyond float range: decode one by one
            X = None
        finite = None if X is None else np.isfinite(X).all(axis=1)
        if finite is None or not finite.all():
            records = [record for record, _, _, _ in run]
            run.clear()
            for record in records:
                self.handle(record)  # the full decoder names each bad record's reason
            self._learn_ready()
            return
        assert X is not None
        y = np.array([label for _, _, label, _ in run])
        weights = [w for _, _, _, w in run]
        w = None
        if any(v is not None for v in weights):
            w = np.array([1.0 if v is None else v for v in weights])
        first = run[0][0]
        self.buffer.append_run(X, y, w, first.partition, first.offset)
        run.clear()
        self._learn_ready()

    def handle(self, record: SourceRecord) -> None:
        """Decode one record into the buffer, or reject (and dead-letter) it."""
        try:
            samples = (
                record.samples if record.samples is not None else self.decoder.decode(record.value)
            )
        except RecordRejected as exc:
            self.reject(record, exc)
            return
        first = 0
        skip = self._skip.get(record.partition)
        if skip is not None and skip.offset == record.offset:
            first = skip.skip_samples
            del self._skip[record.partition]
        stop = len(samples)
        remaining = self._remaining()
        if remaining is not None:
            stop = min(stop, first + remaining)
        X = samples.X if (first, stop) == (0, len(samples)) else slice_rows(samples.X, first, stop)
        y = samples.y[first:stop]
        w = None if samples.weight is None else samples.weight[first:stop]
        self.buffer.append(
            X, y, w, record.partition, record.offset, first_sample=first, record_size=len(samples)
        )

    def learn(self, n_samples: int) -> BatchStats:
        batch = self.buffer.take(n_samples)
        start = time.perf_counter()
        stats = self.model.learn_batch(batch.X, batch.y, batch.sample_weight)
        duration = time.perf_counter() - start
        self.totals.samples_consumed += batch.n_samples
        self._dirty = True
        if stats.skipped:
            self.totals.updates_skipped += 1
            for s in self.sensors:
                s.update_skipped("non_finite", stats)
        else:
            self.totals.progressive_loss_sum += stats.sums.loss_sum
            self.totals.progressive_misclassified += stats.n_misclassified
            for s in self.sensors:
                s.batch_applied(stats, self.model, duration)
        return stats

    def learn_block(self, n_samples: int) -> SequenceStats:
        """Apply the next ``n_samples`` buffered samples as consecutive m = 1 steps."""
        batch = self.buffer.take(n_samples)
        start = time.perf_counter()
        stats = learn_sequence(self.model, batch.X, batch.y, batch.sample_weight)
        duration = time.perf_counter() - start
        self.totals.samples_consumed += batch.n_samples
        self.totals.updates_skipped += stats.n_skipped
        self.totals.progressive_loss_sum += stats.loss_sum
        self.totals.progressive_misclassified += stats.n_misclassified
        self._dirty = True
        for s in self.sensors:
            s.sequence_applied(stats, self.model, duration)
        return stats

    def _learn_ready(self) -> None:
        """Apply every full minibatch (or full aligned m = 1 block) in the buffer."""
        m = self.config.batch_size
        block = self.config.online_block_size
        if m == 1 and block > 0:
            while len(self.buffer) >= (due := block - self.totals.samples_consumed % block):
                if due == block and block % SEQUENCE_BLOCK_SIZE == 0:
                    # Every full block buffered, in one call: learn_sequence cuts it into
                    # the same blocks of SEQUENCE_BLOCK_SIZE as one call per block would
                    # (so the same weights, bit for bit), with its per-call cost paid once.
                    due = len(self.buffer) // block * block
                self.learn_block(due)
            return
        while len(self.buffer) >= m:
            self.learn(m)

    def _learn_rest(self) -> None:
        """Apply whatever is buffered as one (partial) minibatch or block."""
        if self.config.batch_size == 1 and self.config.online_block_size > 0:
            self.learn_block(len(self.buffer))
        else:
            self.learn(len(self.buffer))

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

    def run(self) -> None:
        """Train until the source is exhausted, max_samples is reached or stop is requested."""
        if self.checkpoint_store is not None:
            state = self.checkpoint_store.load()
            if state is not None:
                self.restore(state)
                log.info(
                    "resumed from checkpoint: %d updates, %d samples",
                    self.model.n_updates,
                    self.model.n_samples_seen,
                )
        for s in self.sensors:
            s.model_loaded(self.model)
        self.source.seek(dict(self.buffer.positions))
        while not self._stop.is_set() and not self._done():
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
                break
            wait = self.config.max_wait_seconds
            if wait is not None and len(self.buffer) and now - self._last_record >= wait:
                self._learn_rest()
            for s in self.sensors:
                s.buffered_samples(len(self.buffer))
                s.tick(self.model)
            if self._checkpoint_due():
                self.checkpoint()
        # A bounded run ends with its last, possibly partial, minibatch applied.
        if not self._stop.is_set() and len(self.buffer):
            self._learn_rest()
        self.checkpoint()
        for s in self.sensors:
            s.buffered_samples(len(self.buffer))
            s.tick(self.model)


def progressive_log_loss(totals: Totals, model: OnlineLogisticRegression) -> float:
    """Mean pre-step log loss over every sample learned so far."""
    n = model.n_samples_seen
    return totals.progressive_loss_sum / n if n else math.nan
