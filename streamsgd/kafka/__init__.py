"""Kafka adapters: the consumer-group sources (kafka-python in :mod:`.source`, confluent-kafka
in :mod:`.confluent`; partitions from the group's rebalances, or, with ``assigned=True``,
given by the caller), the dead-letter sink (:mod:`.dead_letter`), their shared base
(:mod:`.group`), settings and constants (:mod:`.settings`) and the guard that keeps
credentials and record contents out of the clients' logs (:mod:`.logs`).

Importing this package imports no Kafka library; each client module imports one.
"""

from .client_logs import guard_client_logs
from .group import (
    ConsumerGroupSource,
    KafkaRecordMetadata,
    PartitionsUnavailableError,
    partition_key,
)
from .settings import ConsumerSettings, KafkaSecurity

__all__ = [
    "ConsumerGroupSource",
    "ConsumerSettings",
    "KafkaRecordMetadata",
    "KafkaSecurity",
    "PartitionsUnavailableError",
    "guard_client_logs",
    "partition_key",
]
