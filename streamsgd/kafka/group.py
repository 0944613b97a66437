"""What the two Kafka clients' sources share: the constructor and its settings, partition
names, the rebalance hand-off to the training service, resume positions, the lag timer and
the notice that says why a consumer waits for partitions. No Kafka library is imported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..buffer import Position
from .logs import guard_client_logs
from .settings import (
    CLOSE_TIMEOUT_SECONDS,
    CLOSE_TIMEOUT_UNREACHABLE_SECONDS,
    PARTITION_WAIT_NOTICE_SECONDS,
    SESSION_TIMEOUT_MS,
    ConsumerSettings,
    KafkaSecurity,
)

log = logging.getLogger("streamsgd.kafka")


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
    """Base of the consumer-group sources: one constructor for both clients.

    Offsets are never auto-committed: the service commits a partition's position only after
    the checkpoint covering it is on disk, and on every assignment the consumer is sought to
    the checkpoint's position, so the model state is exactly-once even though Kafka delivery
    is at-least-once. Subclasses build their client in :meth:`_start` from ``self.settings``.

    Parameters
    ----------
    bootstrap_servers, topic, group_id, auto_offset_reset, group_instance_id,
    lag_interval_seconds, protocol_debug
        See :class:`~streamsgd.kafka.settings.ConsumerSettings`.
    security : KafkaSecurity or mapping in kafka-python's names, optional
    on_lag : callable
        Receives the summed lag in records.
    clock : callable
        Monotonic seconds.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        auto_offset_reset: str = "earliest",
        security: KafkaSecurity | Mapping[str, Any] | None = None,
        lag_interval_seconds: float = 5.0,
        on_lag: Callable[[int], None] = lambda lag: None,
        clock: Callable[[], float] = time.monotonic,
        group_instance_id: str | None = None,
        protocol_debug: bool = False,
    ) -> None:
        self.settings = ConsumerSettings(
            bootstrap_servers,
            topic,
            group_id,
            auto_offset_reset,
            KafkaSecurity.of(security),
            group_instance_id,
            lag_interval_seconds,
            protocol_debug,
        )
        guard_client_logs(protocol_debug, self.settings.security.secrets())
        self.topic = topic
        self.on_lag = on_lag
        self.clock = clock
        self._handler: RebalanceHandler | None = None
        self._start_positions: dict[str, Position] = {}
        self._next_lag = 0.0
        self._broker_ok = False
        self._commit_failed = False
        self._waiting_since: float | None = clock()
        self._start()

    def _start(self) -> None:
        """Create the client (or prepare to, lazily)."""

    def attach(self, handler: RebalanceHandler) -> None:
        """Let rebalances checkpoint through ``handler`` and seek to its positions."""
        self._handler = handler

    def seek(self, positions: dict[str, Position]) -> None:
        self._start_positions = dict(positions)

    def _positions(self) -> dict[str, Position]:
        return self._handler.positions if self._handler is not None else self._start_positions

    def _revoke(self, keys: set[str]) -> None:
        if not keys:
            return  # kafka-python calls this before every join, also the first one
        log.info("partitions revoked: %s", sorted(keys))
        if self._handler is not None:
            self._handler.partitions_revoked(keys)

    def _close_timeout_seconds(self) -> float:
        """How long closing may wait: short when the last commit failed (the broker is
        unreachable and there is no group to leave)."""
        return CLOSE_TIMEOUT_UNREACHABLE_SECONDS if self._commit_failed else CLOSE_TIMEOUT_SECONDS

    # ------------------------------------------------------------------ waiting notice
    def _assigned_now(self, keys: list[str]) -> None:
        # An empty assignment is common and brief (a fresh member's first join, before the
        # topic's metadata arrived); one that lasts is explained by _notice_waiting.
        log.log(logging.INFO if keys else logging.DEBUG, "partitions assigned: %s", sorted(keys))
        if keys:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = self.clock()

    def _notice_waiting(self) -> None:
        """Say once per wait, after a few seconds without partitions, why the trainer
        waits and how static membership avoids the commonest wait."""
        since = self._waiting_since
        if since is None or self.clock() - since < PARTITION_WAIT_NOTICE_SECONDS:
            return
        self._waiting_since = None
        settings = self.settings
        if settings.group_instance_id:
            log.warning(
                "no partitions of %s assigned after %.0f s (group %s, static member %s): "
                "another member of the group holds them (more members than partitions), "
                "or the group is still rebalancing",
                settings.topic,
                PARTITION_WAIT_NOTICE_SECONDS,
                settings.group_id,
                settings.group_instance_id,
            )
            return
        log.warning(
            "no partitions of %s assigned after %.0f s (group %s): waiting for the group to "
            "rebalance. A member that stopped without leaving the group (a crash, SIGKILL) "
            "keeps its partitions until its session timeout (%.0f s) expires; a trainer "
            "started with --group-instance-id NAME (static membership) takes them back at "
            "once when it restarts under the same NAME. Other members may also hold all "
            "the partitions (more members than partitions).",
            settings.topic,
            PARTITION_WAIT_NOTICE_SECONDS,
            settings.group_id,
            SESSION_TIMEOUT_MS / 1000,
        )

    # ------------------------------------------------------------------ lag
    def _lag_due(self) -> bool:
        if self.clock() < self._next_lag:
            return False
        self._next_lag = self.clock() + self.settings.lag_interval_seconds
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
