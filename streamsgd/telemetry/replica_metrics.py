"""The metrics of a replicated job (docs/design.md, Scaling out; docs/metrics.md): world size,
global step, membership changes, exchange and wait times, manifest write failures and
replica divergences. Part of :class:`~streamsgd.telemetry.metrics.PrometheusSensor`; a single
process exports world size 1 and zeros."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Makers of the Prometheus client's metrics, given by streamsgd.telemetry.metrics (the library's one
# adapter): counter(name, doc), gauge(name, doc, labels), histogram(name, doc).
Maker = Callable[..., Any]


class ReplicaMetrics:
    """The replica half of the Prometheus sensor."""

    def __init__(self, counter: Maker, gauge: Maker, histogram: Maker) -> None:
        self.world_size = gauge("streamsgd_world_size", "Replicas holding the model.")
        self.world_size.set(1)
        self._membership_changes = 0
        self.replica_info = gauge("streamsgd_replica_info", "This replica; value 1", ["rank"])
        self.replica_info.labels("0").set(1)
        self.global_step = gauge(
            "streamsgd_global_step", "Steps taken by the job (the same on every replica)."
        )
        self.membership_changes_total = counter(
            "streamsgd_membership_changes", "Replica failures handled and replacements joined."
        )
        self.manifest_write_failures_total = counter(
            "streamsgd_manifest_write_failures",
            "Step manifest appends (rank 0) that failed; the entries are kept and retried.",
        )
        self.replica_divergences_total = counter(
            "streamsgd_replica_divergences",
            "Checks in which the replicas' digests of the weights differed (rank 0's adopted).",
        )
        self.allreduce_duration_seconds = histogram(
            "streamsgd_allreduce_duration_seconds",
            "Time in the step's exchange between replicas (waiting included).",
        )
        self.step_wait_seconds = histogram(
            "streamsgd_step_wait_seconds",
            "Time this replica waited in the exchange for the slowest one.",
        )

    def collective_step(
        self, global_step: int, allreduce_seconds: float, wait_seconds: float
    ) -> None:
        self.global_step.set(global_step)
        self.allreduce_duration_seconds.observe(allreduce_seconds)
        self.step_wait_seconds.observe(wait_seconds)

    def membership(self, rank: int, world_size: int, changes: int) -> None:
        self.world_size.set(world_size)
        self.replica_info.clear()
        self.replica_info.labels(str(rank)).set(1)
        if changes > self._membership_changes:
            self.membership_changes_total.inc(changes - self._membership_changes)
            self._membership_changes = changes
