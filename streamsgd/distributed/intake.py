"""What each replica of a replicated job does alone (:mod:`streamsgd.distributed.replicated`): read
its partitions, decode, dead-letter, and buffer its share of the next global minibatch.

A replica never learns on its own: :meth:`ReplicaIntake._learn_ready` does nothing, and the
replicated loop takes the share for the step's exchange. Rejections are counted locally
until the exchange makes the count global.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..codec import RecordRejected
from ..training.ports import PartitionedSource, SourceRecord
from ..training.trainer import TrainingService
from .collective import Collective
from .exchange import sample_share

DEFAULT_MAX_WAIT_SECONDS = 0.5  # a replica with few records holds the others this long at most

log = logging.getLogger("streamsgd.replicated")


class ReplicaIntake(TrainingService):
    """The local half of a replica: its partitions, its buffer, its share of a step.

    Parameters (besides those of :class:`TrainingService`)
    ----------
    collective : Collective
        Gives the rank and size the share depends on.
    """

    def __init__(self, *args: Any, collective: Collective, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.batch_size == 1:
            raise ValueError(
                "--batch-size 1 cannot be replicated: every sample would cost one collective "
                "round trip between replicas; use a batch size of at least 2"
            )
        self.source: PartitionedSource = self.source
        self.collective = collective
        self.partitions: tuple[str, ...] = ()
        self.owned: list[str] = []
        self._dead_letters_unflushed = 0
        self._undelivered = False
        self._sync_round = True  # the first exchange after a (re)start takes no sample

    # ------------------------------------------------------------------ records
    def reject(self, record: SourceRecord, exc: RecordRejected) -> None:
        super().reject(record, exc)
        if self.dead_letter is not None:
            self._dead_letters_unflushed += 1

    def _learn_ready(self) -> None:
        """Nothing: a replica learns only in the exchange (:meth:`_step`)."""

    def _local_target(self) -> int:
        """This replica's share of the global minibatch M (and of ``max_samples``)."""
        if self._sync_round or not self.owned:
            return 0
        c = self.collective
        n_active = min(c.size, len(self.partitions))
        target = math.ceil(self.batch_size / n_active)
        if self.config.max_samples is not None:
            remaining = max(self.config.max_samples - self.totals.samples_consumed, 0)
            target = min(target, sample_share(remaining, c.rank, n_active))
        return target

    def _fill(self, target: int) -> None:
        """Poll until ``target`` samples are buffered, ``max_wait_seconds`` passed, a stop is
        requested or the (bounded) source is exhausted."""
        wait = self.config.max_wait_seconds
        deadline = self.clock() + (DEFAULT_MAX_WAIT_SECONDS if wait is None else wait)
        while len(self.buffer) < target and not self._stop.is_set():
            left = deadline - self.clock()
            if left <= 0 or self.source.exhausted:
                return
            records = self.source.poll(min(self.config.poll_timeout_seconds, left))
            if records:
                newest = records[-1].timestamp_ms
                for s in self.sensors:
                    s.records_consumed(len(records))
                    if newest is not None:
                        s.record_timestamp(newest / 1000.0)
                self.handle_all(records)
            self._tick()

    def _remaining(self) -> int | None:
        return None  # buffering is not capped; _local_target caps what a step takes

    def _flush_dead_letters(self) -> None:
        """Deliver this replica's dead letters before its positions pass them: a checkpoint
        (rank 0) must not cover a rejected record whose dead letter is lost."""
        if not self._dead_letters_unflushed or self.dead_letter is None:
            return
        try:
            self.dead_letter.flush()
        except Exception as exc:
            log.error("dead-letter delivery failed: %s (no checkpoint until it succeeds)", exc)
            self._undelivered = True
            return
        self._dead_letters_unflushed = 0
        self._undelivered = False
