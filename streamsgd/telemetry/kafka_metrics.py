"""Prometheus metrics of what Kafka operations do to the trainer
(docs/operations.md#what-the-trainer-does-for-each-kafka-operation): records that no longer exist
when the trainer reaches them, partitions another group member holds. Beside
:mod:`streamsgd.telemetry.metrics`, on the same registry; the alert rules in deploy/prometheus watch
them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..training.ports import Sensor

# Why records were passed over unread: deleted by retention (or delete_records) before the
# trainer read them.
SKIP_RECORD_REASONS = ("retention",)


class KafkaOperationsSensor(Sensor):
    """Exports ``streamsgd_records_skipped_total{reason}`` and
    ``streamsgd_partitions_unassigned``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records_skipped_total = Counter(
            "streamsgd_records_skipped",
            "Records passed over unread because they no longer exist, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in SKIP_RECORD_REASONS:
            self.records_skipped_total.labels(reason)  # reads 0, not absent
        self.partitions_unassigned_gauge = Gauge(
            "streamsgd_partitions_unassigned",
            "Partitions of the topic this trainer does not hold (another member of its "
            "consumer group does; 0 for a single trainer).",
            registry=registry,
        )

    def records_skipped(self, reason: str, n_records: int) -> None:
        self.records_skipped_total.labels(reason).inc(n_records)

    def partitions_unassigned(self, n_partitions: int) -> None:
        self.partitions_unassigned_gauge.set(n_partitions)
