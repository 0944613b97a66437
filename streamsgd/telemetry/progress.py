"""Progress of a run: the rewritten status line on a terminal, a log line without one.

Both count what the loop reports (samples learned, their pre-step log loss, rejected records)
and show the samples/s since their previous output. :class:`ProgressReporter` rewrites one
line on a terminal; :class:`ProgressLog` logs one INFO line every ``interval_seconds`` (for
``docker compose logs`` and Kubernetes), with the numbers also as structured fields.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..core.model import BatchStats, OnlineLogisticRegression
from ..core.multi_step import BatchesStats
from ..core.sequential import SequenceStats
from ..training.ports import Sensor


class _ProgressCounts(Sensor):
    """Counts samples, loss and rejections; ``_due`` paces the output."""

    def __init__(self, interval_seconds: float, clock: Callable[[], float]) -> None:
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._last = clock()
        self._samples = 0
        self._samples_at_last = 0
        self._loss_sum = 0.0
        self._rejected = 0

    def batch_applied(
        self, stats: BatchStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None:
        self._samples += stats.n_samples
        self._loss_sum += stats.sums.loss_sum

    def batches_applied(
        self, stats: BatchesStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None:
        applied = stats.n_steps - stats.n_steps_skipped
        self._samples += applied * stats.batch_size
        self._loss_sum = stats.add_losses(self._loss_sum)

    def sequence_applied(
        self, stats: SequenceStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None:
        self._samples += stats.n_samples
        self._loss_sum += stats.loss_sum

    def record_rejected(self, reason: str) -> None:
        self._rejected += 1

    def _due(self) -> float | None:
        """Samples/s since the last output if an output is due now, else None."""
        now = self.clock()
        if now - self._last < self.interval_seconds:
            return None
        rate = (self._samples - self._samples_at_last) / max(now - self._last, 1e-9)
        self._last, self._samples_at_last = now, self._samples
        return rate

    @property
    def loss(self) -> float:
        """Mean progressive log loss of the samples counted so far (nan before any)."""
        return self._loss_sum / self._samples if self._samples else math.nan


class ProgressReporter(_ProgressCounts):
    """Rewrites one status line on ``stream`` at most every ``interval_seconds``."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(interval_seconds, clock)
        self.stream = stream
        self._wrote = False

    def tick(self, model: OnlineLogisticRegression) -> None:
        rate = self._due()
        if rate is None:
            return
        self.stream.write(
            f"\r{self._samples:>12,} samples  {rate:>11,.0f} samples/s  "
            f"progressive log loss {self.loss:.4f}  updates {model.n_updates:,}  "
            f"rejected {self._rejected:,} "
        )
        self.stream.flush()
        self._wrote = True

    def close(self) -> None:
        if self._wrote:
            self.stream.write("\n")
            self.stream.flush()


class ProgressLog(_ProgressCounts):
    """Logs a progress line at INFO every ``interval_seconds`` on ``logger``.

    The record carries ``fields`` (samples, samples_per_second, updates,
    progressive_log_loss, rejected, and lag_records once the source reported it), which the
    JSON log format (:mod:`streamsgd.telemetry.logs`) writes as keys of the line's object.
    """

    def __init__(
        self,
        interval_seconds: float,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(interval_seconds, clock)
        self.logger = logger or logging.getLogger("streamsgd.progress")
        self._lag: int | None = None

    def set_consumer_lag(self, lag_records: int) -> None:
        """The source's consumer lag in records (Kafka), shown from now on."""
        self._lag = lag_records

    def tick(self, model: OnlineLogisticRegression) -> None:
        rate = self._due()
        if rate is None:
            return
        fields: dict[str, Any] = {
            "samples": self._samples,
            "samples_per_second": round(rate, 1),
            "updates": model.n_updates,
            "progressive_log_loss": None if math.isnan(self.loss) else self.loss,
            "rejected": self._rejected,
        }
        lag = ""
        if self._lag is not None:
            fields["lag_records"] = self._lag
            lag = f", lag {self._lag:,} records"
        self.logger.info(
            "progress: %s samples, %s samples/s, %s updates, progressive log loss %.4f, "
            "%s rejected%s",
            f"{self._samples:,}",
            f"{rate:,.0f}",
            f"{model.n_updates:,}",
            self.loss,
            f"{self._rejected:,}",
            lag,
            extra={"fields": fields},
        )
