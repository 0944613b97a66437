"""Terminal progress line (samples/s and loss) for interactive runs."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .core.model import BatchStats, OnlineLogisticRegression
from .core.sequential import SequenceStats
from .ports import Sensor


class ProgressReporter(Sensor):
    """Rewrites one status line on ``stream`` at most every ``interval_seconds``."""

    def __init__(self, stream: TextIO = sys.stderr, interval_seconds: float = 1.0) -> None:
        self.stream = stream
        self.interval_seconds = interval_seconds
        self._start = time.monotonic()
        self._last = self._start
        self._samples = 0
        self._samples_at_last = 0
        self._loss_sum = 0.0
        self._rejected = 0
        self._wrote = False

    def batch_applied(
        self, stats: BatchStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None:
        self._samples += stats.n_samples
        self._loss_sum += stats.sums.loss_sum

    def sequence_applied(
        self, stats: SequenceStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None:
        self._samples += stats.n_samples
        self._loss_sum += stats.loss_sum

    def record_rejected(self, reason: str) -> None:
        self._rejected += 1

    def tick(self, model: OnlineLogisticRegression) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_seconds:
            return
        rate = (self._samples - self._samples_at_last) / (now - self._last)
        self._last, self._samples_at_last = now, self._samples
        loss = self._loss_sum / self._samples if self._samples else float("nan")
        self.stream.write(
            f"\r{self._samples:>12,} samples  {rate:>11,.0f} samples/s  "
            f"progressive log loss {loss:.4f}  updates {model.n_updates:,}  "
            f"rejected {self._rejected:,} "
        )
        self.stream.flush()
        self._wrote = True

    def close(self) -> None:
        if self._wrote:
            self.stream.write("\n")
            self.stream.flush()
