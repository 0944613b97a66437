"""What the two Kafka clients' sources share: partition names, the rebalance hand-off to the
training service, resume positions and the lag timer. No Kafka library is imported here."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..buffer import Position


@dataclass(frozen=True)
class KafkaRecordMetadata:
    """What a Kafka record carries besides its value: ``SourceRecord.metadata`` of the Kafka
    sources, read back by the dead-letter sink."""

    topic: str
    partition: int
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def partition_key(topic: str, partition: int) -> str:
    """The name of a topic-partition in checkpoints and buffers: ``"topic:3"``."""
    return f"{topic}:{partition}"


class RebalanceHandler(Protocol):
    """What a source needs from the training service around a rebalance."""

    @property
    def positions(self) -> dict[str, Position]: ...

    def partitions_revoked(self, partitions: set[str]) -> None: ...


class ConsumerGroupSource:
    """Base of the consumer-group sources.

    Parameters
    ----------
    topic : str
    lag_interval_seconds : float
        How often to refresh the consumer lag (end offsets minus applied positions).
    on_lag : callable
        Receives the summed lag in records.
    clock : callable
        Monotonic seconds.
    """

    def __init__(
        self,
        topic: str,
        lag_interval_seconds: float,
        on_lag: Callable[[int], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self.lag_interval_seconds = lag_interval_seconds
        self.on_lag = on_lag
        self.clock = clock
        self._handler: RebalanceHandler | None = None
        self._start_positions: dict[str, Position] = {}
        self._next_lag = 0.0
        self._broker_ok = False

    def attach(self, handler: RebalanceHandler) -> None:
        """Let rebalances checkpoint through ``handler`` and seek to its positions."""
        self._handler = handler

    def seek(self, positions: dict[str, Position]) -> None:
        self._start_positions = dict(positions)

    def _positions(self) -> dict[str, Position]:
        return self._handler.positions if self._handler is not None else self._start_positions

    def _revoke(self, keys: set[str]) -> None:
        if self._handler is not None and keys:
            self._handler.partitions_revoked(keys)

    def _lag_due(self) -> bool:
        if self.clock() < self._next_lag:
            return False
        self._next_lag = self.clock() + self.lag_interval_seconds
        return True

    def _report_lag(self, ends: dict[str, int], current: Callable[[str], int]) -> None:
        """Sum over partitions of end offset − applied position (``current`` for a partition
        without a position yet); marks the broker reachable."""
        self._broker_ok = True
        positions = self._positions()
        lag = 0
        for key, end in ends.items():
            position = positions.get(key)
            applied = position.offset if position is not None else current(key)
            lag += max(end - applied, 0)
        self.on_lag(lag)

    @property
    def exhausted(self) -> bool:
        return False
