"""Prometheus metrics: the only module that imports prometheus_client.

Names are a contract with the Grafana dashboard and the alert rules (README, "Metrics").
Every metric lives on an injected :class:`CollectorRegistry`; labelled series are created
at start-up so they read 0 rather than being absent. No gauge exports ±Inf: a value that is
not finite (an overflowed norm or loss, an undefined ratio) is exported as NaN, which
Prometheus and Grafana show as a gap.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from .. import __version__
from ..codec import REJECT_REASONS
from ..core.controller import norm_test_batch_size
from ..core.model import BatchStats, OnlineLogisticRegression
from ..core.multi_step import BatchesStats
from ..core.sequential import SequenceStats
from ..training.ports import Sensor
from ..training.totals import CLIP_REASONS, SKIP_REASONS
from .model_gauges import ModelGauges
from .replica_metrics import ReplicaMetrics

UPDATE_DURATION_BUCKETS: tuple[float, ...] = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3)
UPDATE_DURATION_BUCKETS += (2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0)


def _finite(value: float) -> float:
    """``value``, or NaN when it is ±Inf (so that no gauge ever reads ±Inf)."""
    return value if math.isfinite(value) else math.nan


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """``registry`` in the Prometheus text format, and its content type (for ``/metrics``)."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


class PrometheusSensor(Sensor):
    """Exports what the training loop observes as ``streamsgd_*`` metrics."""

    def __init__(self, registry: CollectorRegistry, *, process_collectors: bool = True) -> None:
        self.registry = registry
        if process_collectors:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        build = self._gauge(
            "streamsgd_build_info", "streamsgd build; value 1", ["version", "python_version"]
        )
        build.labels(__version__, platform.python_version()).set(1)
        self._init_records()
        self._init_steps()
        self._init_gradients()
        self._init_checkpoints()
        self._init_replicas()
        self._pending_samples = 0
        self._pending_updates = 0
        self._pending_misclassified = 0
        self._pending_loss = 0.0
        self._last_stats: BatchStats | None = None
        self._last_sequence: SequenceStats | None = None

    def _counter(
        self, name: str, doc: str, labels: Sequence[str] = (), values: Sequence[str] = ()
    ) -> Counter:
        """A counter; with a label, its series for every value in ``values`` exist at once
        (so they read 0 rather than being absent)."""
        counter = Counter(name, doc, list(labels), registry=self.registry)
        for value in values:
            counter.labels(value)
        return counter

    def _gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, list(labels), registry=self.registry)

    def _init_records(self) -> None:
        self.records_consumed_total = self._counter(
            "streamsgd_records_consumed", "Records read from the source."
        )
        self.records_rejected_total = self._counter(
            "streamsgd_records_rejected",
            "Records that could not be decoded or validated, by reason.",
            ["reason"],
            REJECT_REASONS,
        )
        self.dead_letter_records_total = self._counter(
            "streamsgd_dead_letter_records", "Rejected records sent to the dead-letter topic."
        )
        self.minibatch_buffered_samples = self._gauge(
            "streamsgd_minibatch_buffered_samples", "Samples waiting in the minibatch buffer."
        )
        self.last_record_timestamp_seconds = self._gauge(
            "streamsgd_last_record_timestamp_seconds",
            "Source timestamp of the newest record read (Kafka record time).",
        )
        self.consumer_lag_records = self._gauge(
            "streamsgd_consumer_lag_records",
            "Records behind the end of the assigned partitions (sum over partitions).",
        )
        self.ready = self._gauge("streamsgd_ready", "1 when the source can deliver records.")

    def _init_steps(self) -> None:
        c = self._counter
        self.samples_learned_total = c("streamsgd_samples_learned", "Samples in applied SGD steps.")
        self.updates_total = c("streamsgd_updates", "SGD steps applied.")
        self.updates_skipped_total = c(
            "streamsgd_updates_skipped",
            "Steps (minibatches, or m = 1 steps) not applied, by reason.",
            ["reason"],
            SKIP_REASONS,
        )
        self.samples_skipped_total = c(
            "streamsgd_samples_skipped",
            "Samples in steps that were not applied (consumed, not learned), by reason.",
            ["reason"],
            SKIP_REASONS,
        )
        self.samples_clipped_total = c(
            "streamsgd_samples_clipped",
            "Samples scaled down before learning (feature norm far above the typical), by reason.",
            ["reason"],
            CLIP_REASONS,
        )
        self.progressive_log_loss_total = c(
            "streamsgd_progressive_log_loss",
            "Sum of per-sample log losses under the pre-step weights (progressive validation).",
        )
        self.progressive_misclassified_total = c(
            "streamsgd_progressive_misclassified", "Samples misclassified by the pre-step weights."
        )
        g = self._gauge
        self.batch_loss = g("streamsgd_batch_loss", "Mean pre-step log loss of the last minibatch.")
        self.batch_size = g("streamsgd_batch_size", "Samples in the last minibatch (m).")
        self.learning_rate = g("streamsgd_learning_rate", "Learning rate of the last step.")
        self.effective_learning_rate = g(
            "streamsgd_effective_learning_rate",
            "Rate of the last step on the mean gradient: median over coordinates of "
            "eta m / sqrt(A_j) (AdaGrad on the sum), eta without AdaGrad on the mean.",
        )
        self.last_update_timestamp_seconds = g(
            "streamsgd_last_update_timestamp_seconds", "Unix time of the last applied step."
        )
        self.update_duration_seconds = Histogram(
            "streamsgd_update_duration_seconds",
            "Time of one learn_batch call.",
            buckets=UPDATE_DURATION_BUCKETS,
            registry=self.registry,
        )

    def _init_gradients(self) -> None:
        g = self._gauge
        self.gradient_norm = g(
            "streamsgd_gradient_norm",
            "Norm of the last minibatch's mean loss gradient over (w, b): the loss part only "
            "(no L2 term).",
        )
        self.gradient_variance = g(
            "streamsgd_gradient_variance",
            "Smoothed trace of the per-sample gradient covariance, tr Sigma.",
        )
        self.gradient_estimator_variance = g(
            "streamsgd_gradient_estimator_variance",
            "Smoothed variance of the averaged minibatch gradient, tr Sigma / m.",
        )
        self.gradient_noise_scale = g(
            "streamsgd_gradient_noise_scale",
            "Gradient noise scale B_noise = tr Sigma / |G|^2 of the objective (ratio of "
            "smoothed estimates); NaN unless streamsgd_gradient_statistics_trusted is 1.",
        )
        self.gradient_noise_scale_lower_bound = g(
            "streamsgd_gradient_noise_scale_lower_bound",
            "Lower confidence bound tr Sigma / (|G|^2 + 2 SE) of the noise scale, also while "
            "B is not trusted (m then grows on it); NaN before 10 effective steps.",
        )
        self.gradient_statistics_trusted = g(
            "streamsgd_gradient_statistics_trusted",
            "1 when |G|^2 is more than 2 standard errors above 0 and the averaging window "
            "covers the noise scale, else 0.",
        )
        self.suggested_batch_size = g(
            "streamsgd_suggested_batch_size",
            "Norm-test batch size B (1 - theta^2) / theta^2 (clipped to the controller's "
            "bounds); NaN unless the statistics are trusted.",
        )
        self.learning_rate_gain = g(
            "streamsgd_learning_rate_gain",
            "AdaScale gain r of the last step (1 without a controller).",
        )
        self.gradient_true_norm_squared = g(
            "streamsgd_gradient_true_norm_squared",
            "Smoothed unbiased estimate of the objective's squared gradient norm |G|^2 "
            "(loss + L2 term).",
        )
        self.gradient_norm_test_ratio = g(
            "streamsgd_gradient_norm_test_ratio",
            "Smoothed (tr Sigma / m) / |g_bar + l2 w|^2; the norm test passes when <= theta^2.",
        )
        self.model_weight_norm = g("streamsgd_model_weight_norm", "Euclidean norm of w.")
        self.model_features = g("streamsgd_model_features", "Number of model inputs d.")
        self.model_healthy = g(
            "streamsgd_model_healthy",
            "1 while the model is healthy (finite, weight norm within its limit), else 0.",
        )
        # O(d) to compute: read at scrape time, not once per poll (see model_gauges).
        self._model_gauges = ModelGauges()
        self.model_weight_norm.set_function(self._model_gauges.weight_norm)
        self.model_healthy.set_function(self._model_gauges.healthy)
        self.effective_learning_rate.set_function(self._model_gauges.effective_learning_rate)

    def _init_checkpoints(self) -> None:
        c = self._counter
        self.checkpoint_saves_total = c("streamsgd_checkpoint_saves", "Checkpoints written.")
        self.checkpoint_save_failures_total = c(
            "streamsgd_checkpoint_save_failures", "Checkpoints that failed to write."
        )
        self.checkpoint_save_duration_seconds = Histogram(
            "streamsgd_checkpoint_save_duration_seconds",
            "Time to write one checkpoint.",
            registry=self.registry,
        )
        self.last_checkpoint_timestamp_seconds = self._gauge(
            "streamsgd_last_checkpoint_timestamp_seconds", "Unix time of the last checkpoint."
        )
        self.offset_commits_total = c(
            "streamsgd_offset_commits", "Offset commits after a checkpoint."
        )
        self.offset_commit_failures_total = c(
            "streamsgd_offset_commit_failures", "Offset commits that failed."
        )

    # ------------------------------------------------------------------ Sensor
    def _init_replicas(self) -> None:
        """Scale-out (one process: world size 1, rank 0, no exchange)."""

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, buckets=UPDATE_DURATION_BUCKETS, registry=self.registry)

        self.replicas = ReplicaMetrics(self._counter, self._gauge, histogram)

    def collective_step(
        self, global_step: int, allreduce_seconds: float, wait_seconds: float
    ) -> None:
        self.replicas.collective_step(global_step, allreduce_seconds, wait_seconds)

    def membership(self, rank: int, world_size: int, changes: int) -> None:
        self.replicas.membership(rank, world_size, changes)

    def manifest_write_failed(self) -> None:
        self.replicas.manifest_write_failures_total.inc()

    def replicas_diverged(self) -> None:
        self.replicas.replica_divergences_total.inc()

    def observe_model(self, model: OnlineLogisticRegression) -> None:
        """Model-level gauges; also called once at start-up (after a restore)."""
        self._model_gauges.follow(model)  # ‖w‖ and health: computed when scraped
        self.model_features.set(model.n_features)
        stats = model.gradient_stats
        self.gradient_variance.set(_finite(stats.per_sample_variance))
        self.gradient_estimator_variance.set(_finite(stats.estimator_variance))
        self.gradient_true_norm_squared.set(_finite(stats.true_gradient_squared_norm))
        self.gradient_noise_scale.set(_finite(stats.noise_scale))
        self.gradient_noise_scale_lower_bound.set(_finite(stats.noise_scale_lower_bound))
        self.gradient_norm_test_ratio.set(_finite(stats.norm_test_ratio))
        self.gradient_statistics_trusted.set(1.0 if stats.trusted else 0.0)
        controller = model.controller
        if controller is None:
            self.suggested_batch_size.set(_finite(norm_test_batch_size(stats.noise_scale)))
            self.learning_rate_gain.set(1.0)
        else:
            self.suggested_batch_size.set(_finite(controller.suggested_batch_size))
            self.learning_rate_gain.set(_finite(controller.gain))

    def records_consumed(self, n_records: int) -> None:
        self.records_consumed_total.inc(n_records)

    def record_rejected(self, reason: str) -> None:
        self.records_rejected_total.labels(reason).inc()

    def record_dead_lettered(self) -> None:
        self.dead_letter_records_total.inc()

    def batch_applied(
        self, stats: BatchStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None:
        # Per-step work stays O(1) and lock-free; tick() publishes it (once per poll).
        self._pending_samples += stats.n_samples
        self._pending_updates += 1
        self._pending_loss += stats.sums.loss_sum
        self._pending_misclassified += stats.n_misclassified
        self._last_stats = stats
        self.update_duration_seconds.observe(duration_seconds)

    def batches_applied(
        self, stats: BatchesStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None:
        # As batch_applied for every applied step at once; one observation of the mean time.
        applied = stats.n_steps - stats.n_steps_skipped
        self._pending_samples += applied * stats.batch_size
        self._pending_updates += applied
        self._pending_loss = stats.add_losses(self._pending_loss)
        self._pending_misclassified += stats.n_misclassified
        self._last_stats = stats.last_applied() or self._last_stats
        self.update_duration_seconds.observe(duration_seconds / max(stats.n_steps, 1))

    def sequence_applied(
        self, stats: SequenceStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None:
        # Skipped steps reach steps_skipped (as on the minibatch path), not these counters.
        applied = stats.n_samples - stats.n_skipped
        self._pending_samples += applied
        self._pending_updates += applied
        self._pending_loss += stats.loss_sum
        self._pending_misclassified += stats.n_misclassified
        if stats.n_samples:
            # One observation per block, of the mean time of its steps.
            self.update_duration_seconds.observe(duration_seconds / stats.n_samples)
            self._last_sequence = stats

    def tick(self, model: OnlineLogisticRegression) -> None:
        if not self._pending_updates:
            # Health follows the model even when nothing was learned (read when scraped).
            self._model_gauges.follow(model)
            return
        self.samples_learned_total.inc(self._pending_samples)
        self.updates_total.inc(self._pending_updates)
        self.progressive_log_loss_total.inc(self._pending_loss)
        self.progressive_misclassified_total.inc(self._pending_misclassified)
        self._pending_samples = self._pending_updates = self._pending_misclassified = 0
        self._pending_loss = 0.0
        stats = self._last_stats
        if stats is not None:
            self.batch_loss.set(_finite(stats.loss))
            self.batch_size.set(stats.n_samples)
            self.learning_rate.set(_finite(stats.learning_rate))
            self._model_gauges.step(stats.n_samples, stats.learning_rate)
            self.gradient_norm.set(_finite(stats.gradient_norm))
        sequence = self._last_sequence
        if sequence is not None:
            self.batch_loss.set(_finite(float(sequence.losses[-1])))
            self.batch_size.set(1)
            self.learning_rate.set(_finite(sequence.learning_rate))
            self._model_gauges.step(1, sequence.learning_rate)
            # No per-step gradient is kept on this path: the smoothed ‖g‖ stands in.
            self.gradient_norm.set(_finite(math.sqrt(model.gradient_stats.mean_squared_norm)))
        self._last_stats = None
        self._last_sequence = None
        self.last_update_timestamp_seconds.set(time.time())
        self.observe_model(model)

    def steps_skipped(self, reason: str, n_steps: int, n_samples: int) -> None:
        self.updates_skipped_total.labels(reason).inc(n_steps)
        self.samples_skipped_total.labels(reason).inc(n_samples)

    def samples_clipped(self, reason: str, n_samples: int) -> None:
        self.samples_clipped_total.labels(reason).inc(n_samples)

    def buffered_samples(self, n_samples: int) -> None:
        self.minibatch_buffered_samples.set(n_samples)

    def record_timestamp(self, timestamp_seconds: float) -> None:
        self.last_record_timestamp_seconds.set(timestamp_seconds)

    def checkpoint_saved(self, duration_seconds: float) -> None:
        self.checkpoint_saves_total.inc()
        self.checkpoint_save_duration_seconds.observe(duration_seconds)
        self.last_checkpoint_timestamp_seconds.set(time.time())

    def checkpoint_failed(self) -> None:
        self.checkpoint_save_failures_total.inc()

    def offsets_committed(self) -> None:
        self.offset_commits_total.inc()

    def offset_commit_failed(self) -> None:
        self.offset_commit_failures_total.inc()

    def set_consumer_lag(self, lag_records: int) -> None:
        self.consumer_lag_records.set(lag_records)

    def bind_readiness(self, is_ready: Callable[[], bool]) -> None:
        """``streamsgd_ready`` reads ``is_ready()`` at every scrape (as /readyz does)."""
        self.ready.set_function(lambda: 1.0 if is_ready() else 0.0)

    def model_loaded(self, model: OnlineLogisticRegression) -> None:
        self.observe_model(model)
