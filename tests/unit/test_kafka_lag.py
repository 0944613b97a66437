"""The kafka-python source's lag refresh while a partition has no position yet.

Group mode creates the consumer with ``auto_offset_reset="none"`` (the source decides where
an unreadable partition goes, issue 21), so kafka-python's ``position()`` of a partition
assigned a moment ago, before the first fetch established its position, raises
``NoOffsetForPartitionError`` (seen in tests/faults/test_kafka_faults.py under load). A lag
refresh must not fail the poll for it. A stand-in consumer answers for this one module; the
broker's behaviour itself is exercised end to end in tests/faults.
"""

from __future__ import annotations

from typing import Any

from kafka import TopicPartition
from kafka.errors import NoOffsetForPartitionError

from streamsgd.kafka.lag import consumer_lag
from streamsgd.kafka.source import KafkaSource
from streamsgd.training.buffer import Position

TOPIC = "lag-topic"


class _NewlyAssignedConsumer:
    """Partitions 0 and 1 assigned; 0 has a position (7), 1 none yet; ends 10 and 4."""

    def __init__(self) -> None:
        self.tps = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]

    def assignment(self) -> set[TopicPartition]:
        return set(self.tps)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        ends = {0: 10, 1: 4}
        return {tp: ends[tp.partition] for tp in partitions}

    def beginning_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict:
        return {tp: 0 for tp in partitions}

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        if tp.partition == 1:
            raise NoOffsetForPartitionError(tp)  # what auto_offset_reset="none" does
        return 7


def test_lag_refresh_skips_a_partition_without_a_position() -> None:
    lags: list[int] = []
    # Group mode; the client is created lazily (by poll), so no broker is contacted here.
    source = KafkaSource("127.0.0.1:1", TOPIC, "lag-group", on_lag=lags.append)
    source._refresh_lag(_NewlyAssignedConsumer())  # type: ignore[arg-type]
    # Partition 0: end 10 - position 7; partition 1: no position anywhere yet, not counted.
    assert lags == [3]


def test_lag_without_a_client_position_counts_from_the_applied_position() -> None:
    ends = {"t:0": 10, "t:1": 4, "t:2": 9}
    applied = {"t:1": Position(1)}
    client = {"t:0": 7, "t:1": None, "t:2": None}
    # t:0 from the client (10 - 7), t:1 from the service's position (4 - 1), t:2 unknown.
    assert consumer_lag(ends, applied, {}, client.__getitem__) == 3 + 3
