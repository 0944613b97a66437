"""The group's committed offsets, read back from the broker (each client's way), for the
replicas' monotone commit guard (:mod:`streamsgd.distributed.commit_guard`).

Mixins of the two sources. Each source hands its client's ``TopicPartition`` type in as
``_topic_partition``: a library is imported by its one adapter module only.
"""

from __future__ import annotations

from typing import Any

from ..distributed.partitions import partition_number
from .group import partition_key
from .settings import COMMIT_TIMEOUT_SECONDS


class KafkaPythonCommitted:
    """``committed_offsets`` of :class:`~streamsgd.kafka.source.KafkaSource`."""

    settings: Any
    _consumer: Any
    _topic_partition: Any  # kafka.TopicPartition

    def _assigned_consumer(self, timeout_seconds: float) -> Any: ...

    def committed_offsets(self, keys: list[str]) -> dict[str, int]:
        """The group's committed offset of each partition in ``keys`` that has one."""
        if self.settings.assigned:
            consumer = self._assigned_consumer(COMMIT_TIMEOUT_SECONDS)
        elif (consumer := self._consumer) is None:
            return {}
        found = {}
        for key in keys:
            tp = self._topic_partition(*partition_number(key))
            offset = consumer.committed(tp, timeout_ms=int(COMMIT_TIMEOUT_SECONDS * 1000))
            if offset is not None:
                found[key] = int(offset)
        return found


class ConfluentCommitted:
    """``committed_offsets`` of :class:`~streamsgd.kafka.confluent.ConfluentKafkaSource`."""

    _consumer: Any
    _topic_partition: Any  # confluent_kafka.TopicPartition

    def committed_offsets(self, keys: list[str]) -> dict[str, int]:
        """The group's committed offset of each partition in ``keys`` that has one."""
        tps = [self._topic_partition(*partition_number(key)) for key in keys]
        if not tps:
            return {}
        found = self._consumer.committed(tps, timeout=COMMIT_TIMEOUT_SECONDS)
        # librdkafka marks a partition without a committed offset with a negative offset.
        return {partition_key(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}
