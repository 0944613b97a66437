"""What the two Kafka clients' sources share: the constructor and its settings, partition
names, the rebalance hand-off to the training service, resume positions, the lag timer, the
notice that says why a consumer waits for partitions, and the assigned mode (partitions
given by the caller, no group membership). No Kafka library is imported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..distributed.partitions import partition_number, sorted_partitions
from ..training.buffer import Position
from .client_logs import guard_client_logs
from .identity import LogGuard, LogIdentity, ReplicaLogCheck
from .jumps import StartRule, out_of_range
from .lag import consumer_lag
from .notices import SharedGroupNotice, log_waiting_notice
from .settings import (
    CLOSE_TIMEOUT_SECONDS,
    CLOSE_TIMEOUT_UNREACHABLE_SECONDS,
    LIST_OFFSETS_TIMEOUT_SECONDS,
    METADATA_RETRY_SECONDS,
    PARTITION_WAIT_NOTICE_SECONDS,
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


class PartitionsUnavailableError(RuntimeError):
    """The broker did not tell in time what an assigned-mode source asked: the topic's
    partitions (the topic does not exist, or the broker does not answer) or the beginning
    or end offsets of partitions to start at. One line, for the user."""


class RebalanceHandler(Protocol):
    """What a source needs from the training service around a rebalance."""

    @property
    def positions(self) -> dict[str, Position]: ...

    def partitions_revoked(self, partitions: set[str]) -> None: ...

    def position_moved(
        self, partition: str, offset: int | None, skipped: int = 0, reason: str = ""
    ) -> None: ...


class ConsumerGroupSource(ReplicaLogCheck):
    """Base of the consumer-group sources: one constructor for both clients.

    Offsets are never auto-committed: the service commits a partition's position only after
    the checkpoint covering it is on disk, and on every assignment the consumer is sought to
    the checkpoint's position, so the model state is exactly-once even though Kafka delivery
    is at-least-once. Subclasses build their client in :meth:`_start` from ``self.settings``.

    With ``assigned=True`` the consumer never joins the group: the caller lists the topic's
    partitions (:meth:`partitions`), picks its share and assigns it with the positions to
    start at (:meth:`assign`), again whenever the share changes. Committed offsets are
    written (:meth:`commit`) but never read; without a group generation, which the broker
    accepts only while the group has no member (else UNKNOWN_MEMBER_ID). ``ready`` means
    the broker answered; a source with no partition assigned is ready and idle.

    Parameters
    ----------
    bootstrap_servers, topic, group_id, auto_offset_reset, group_instance_id,
    lag_interval_seconds, protocol_debug, assigned, accept_new_log, metadata_max_age_seconds
        See :class:`~streamsgd.kafka.settings.ConsumerSettings`. A group instance id is
        refused with ``assigned`` (there is no membership).
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
        assigned: bool = False,
        accept_new_log: bool = False,
        metadata_max_age_seconds: float = 15.0,
    ) -> None:
        if assigned and group_instance_id:
            raise ValueError(
                "a group instance id (static membership) has no meaning when partitions are "
                "assigned by rank: the consumer never joins the group"
            )
        self.settings = ConsumerSettings(
            bootstrap_servers,
            topic,
            group_id,
            auto_offset_reset,
            KafkaSecurity.of(security),
            group_instance_id,
            lag_interval_seconds,
            protocol_debug,
            assigned,
            accept_new_log,
            metadata_max_age_seconds,
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
        # The group-mode notice "no partitions assigned": an assigned source never waits
        # for a group, so its clock never starts.
        self._waiting_since: float | None = None if assigned else clock()
        self._assignment: dict[str, int] = {}  # assigned mode: key -> partition number
        self._known_partitions: list[int] = []  # from the last partitions()
        self._said_idle = False
        # Per partition, the offset after the last record a poll returned (lag, above).
        self._fetched: dict[str, int] = {}
        # Group mode: the log the positions belong to (replicas: their engine's concern).
        self._guard = (
            None
            if assigned
            else LogGuard(
                topic, bootstrap_servers, accept_new_log, self._describe_log, self._forget, clock
            )
        )
        self._start_rule = StartRule(topic, auto_offset_reset)
        self._shared = SharedGroupNotice(self.settings, clock)
        self._start()

    def _start(self) -> None:
        """Create the client (or prepare to, lazily)."""

    def attach(self, handler: RebalanceHandler) -> None:
        """Let rebalances checkpoint through ``handler`` and seek to its positions."""
        self._handler = handler

    def seek(self, positions: dict[str, Position]) -> None:
        """Resume each partition at its position: at the next assignment (group mode), and
        at once for the partitions assigned now (assigned mode)."""
        self._start_positions = dict(positions)
        if self.settings.assigned:
            assigned = self._assignment.items()
            offsets = {n: positions[key].offset for key, n in assigned if key in positions}
            if offsets:
                self._seek_assigned(offsets)

    # ------------------------------------------------------------------ log identity
    def expect_log(self, stored_source: Mapping[str, Any]) -> None:
        """The checkpoint's ``source`` mapping: the log its positions belong to."""
        if self._guard is not None:
            self._guard.expect(LogIdentity.from_checkpoint(stored_source))

    def log_identity(self) -> dict[str, str]:
        """The verified topic id and cluster id, for the checkpoint ({} before)."""
        known = self._guard and self._guard.known
        return known.as_checkpoint() if known else {}

    def _log_verified(self) -> bool:  # group mode: nothing read before the log is checked
        return self._guard is None or self._guard.verified()

    def _describe_log(self) -> LogIdentity | None:
        """The broker's topic id and cluster id now; None if it cannot say (yet)."""
        raise NotImplementedError

    def _forget(self) -> None:
        """A new log accepted: drop the topic's positions, read it from its beginning."""
        self._start_rule.from_beginning = True
        self._start_positions = {}
        if self._handler is not None:
            for key in list(self._handler.positions):
                if partition_number(key)[0] == self.topic:
                    self._handler.position_moved(key, None)

    # ------------------------------------------------------------------ jumps
    def _out_of_range(self, key: str, tried: int) -> int:
        """Where partition ``key`` resumes when the client cannot read at ``tried``; the
        service moves its position and counts what can no longer be read. Raises
        :class:`PartitionsUnavailableError` if the broker does not tell the log's bounds."""
        number, timeout = self._number_of(key), LIST_OFFSETS_TIMEOUT_SECONDS
        low = self._list_offsets([number], False, timeout)[number]
        high = self._list_offsets([number], True, timeout)[number]
        jump = out_of_range(key, tried, low, high)
        if self._handler is not None:
            self._handler.position_moved(key, jump.offset, jump.skipped, jump.reason)
        return jump.offset

    def _start_of(self, key: str) -> str:
        """Where a partition with no position at all starts: "earliest" or "latest"."""
        return self._start_rule.start_of(key, self._positions())

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

    # ------------------------------------------------------------------ assigned mode
    def partitions(self, timeout_seconds: float) -> list[str]:
        """Every partition of the topic (``"topic:N"``, by partition number), from the
        broker's metadata; waits up to ``timeout_seconds`` for the broker to answer and the
        topic to exist. Raises :class:`PartitionsUnavailableError` when it cannot."""
        deadline = time.monotonic() + timeout_seconds
        reason = "the topic does not exist"
        while True:
            remaining = deadline - time.monotonic()
            try:
                numbers = self._read_partitions(max(remaining, 0.0))
            except PartitionsUnavailableError as exc:
                reason = str(exc)
                self._broker_ok = False
            else:
                self._broker_ok = True
                if numbers:
                    self._known_partitions = sorted(numbers)
                    return [partition_key(self.topic, n) for n in self._known_partitions]
                reason = "the topic does not exist"
            if time.monotonic() + METADATA_RETRY_SECONDS > deadline:
                raise PartitionsUnavailableError(
                    f"no partitions of topic {self.topic!r} at "
                    f"{self.settings.bootstrap_servers} after {timeout_seconds:g} s: {reason}"
                )
            time.sleep(METADATA_RETRY_SECONDS)  # pacing metadata requests

    def assign(
        self,
        keys: list[str],
        positions: Mapping[str, Position],
        timeout_seconds: float = LIST_OFFSETS_TIMEOUT_SECONDS,
    ) -> dict[str, Position]:
        """Read exactly the partitions ``keys`` from now on (replacing the previous
        assignment; records already fetched for other partitions are dropped).

        A partition with a position in ``positions`` (which may hold others) starts at its
        offset; one without, at its beginning, or at its end under ``auto_offset_reset``
        "latest" while ``positions`` holds no partition of the topic (:class:`~.jumps.
        StartRule`). The committed offset is never read. Returns the start positions.

        Raises :class:`PartitionsUnavailableError` when the offsets of partitions without a
        position cannot be read within ``timeout_seconds``, ``ValueError`` for a key that is
        not a partition of this topic, ``RuntimeError`` in group mode.
        """
        if not self.settings.assigned:
            raise RuntimeError("assign() needs a Kafka source built with assigned=True")
        numbers = {key: self._number_of(key) for key in sorted_partitions(keys)}
        missing = {key: n for key, n in numbers.items() if key not in positions}
        resolved: dict[int, int] = {}
        if missing:
            # One answer for all (it depends on ``positions`` only), logged for each.
            latest = "latest" in [self._start_rule.start_of(k, positions) for k in missing]
            resolved = self._list_offsets(list(missing.values()), latest, timeout_seconds)
            self._broker_ok = True
        starts = {
            key: positions[key] if key in positions else Position(resolved[n])
            for key, n in numbers.items()
        }
        self._assign_at({n: starts[key].offset for key, n in numbers.items()})
        self._assignment = numbers
        self._announce_assignment(list(numbers))
        return starts

    def _number_of(self, key: str) -> int:
        topic, number = partition_number(key)
        if topic != self.topic:
            raise ValueError(f"{key!r} is not a partition of topic {self.topic!r}")
        return number

    def _commit_offsets(self, positions: Mapping[str, Position]) -> dict[int, int]:
        """Assigned mode: the offset to commit of every partition of the topic in
        ``positions``, assigned here or not (one replica commits for all)."""
        offsets = {}
        for key, position in positions.items():
            topic, number = partition_number(key)
            if topic == self.topic:
                offsets[number] = position.offset
        return offsets

    def _announce_assignment(self, keys: list[str]) -> None:
        if keys:
            log.info("partitions assigned by rank: %s", keys)
            self._said_idle = False
        elif not self._said_idle:
            self._said_idle = True
            log.info(
                "no partition of %s is assigned to this consumer: it idles until a new "
                "assignment gives it some (more replicas than partitions)",
                self.topic,
            )

    def _idle_probe(self) -> int | None:
        """Assigned mode with no partition: one partition of the topic whose end offset the
        lag timer reads instead, to see that the broker still answers (``ready``)."""
        if self.settings.assigned and self._known_partitions:
            return self._known_partitions[0]
        return None

    def _read_partitions(self, timeout_seconds: float) -> list[int]:
        """The topic's partition numbers, [] if the topic does not exist; raises
        :class:`PartitionsUnavailableError` if the broker did not answer in time."""
        raise NotImplementedError

    def _list_offsets(
        self, numbers: list[int], latest: bool, timeout_seconds: float
    ) -> dict[int, int]:
        """Per partition number, its end offset (``latest``) or its beginning offset;
        raises :class:`PartitionsUnavailableError` if the broker did not answer in time."""
        raise NotImplementedError

    def _assign_at(self, offsets: dict[int, int]) -> None:
        """Make the client read exactly these partitions, each from its offset."""
        raise NotImplementedError

    def _seek_assigned(self, offsets: dict[int, int]) -> None:
        """Move these assigned partitions to the offsets; the others keep their place."""
        raise NotImplementedError

    # ------------------------------------------------------------------ waiting notice
    def _assigned_now(self, keys: list[str]) -> None:
        # An empty assignment is common and brief (a fresh member's first join, before the
        # topic's metadata arrived); one that lasts is explained by _notice_waiting.
        log.log(logging.INFO if keys else logging.DEBUG, "partitions assigned: %s", sorted(keys))
        self._start_rule.assigned(keys)
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
        log_waiting_notice(self.settings)

    # ------------------------------------------------------------------ lag
    def _lag_due(self) -> bool:
        if self.clock() < self._next_lag:
            return False
        self._next_lag = self.clock() + self.settings.lag_interval_seconds
        return True

    def _report_lag(
        self, ends: dict[str, int], current: Callable[[str], int | None], held: int | None = None
    ) -> None:
        """Report the lag (:func:`~.lag.consumer_lag`) and, group mode, how many of the
        partitions in ``ends`` this member does not hold; marks the broker reachable."""
        if held is not None:
            self._shared.observe(held, len(ends))
            getattr(self._handler, "partitions_unassigned", lambda n: None)(len(ends) - held)
        self._broker_ok = True
        # Assigned mode without a handler: the consumer's own position (the start positions
        # given to assign() are behind once records were read).
        use_given = self._handler is not None or not self.settings.assigned
        positions = self._positions() if use_given else {}
        self.on_lag(consumer_lag(ends, positions, self._fetched, current))

    @property
    def exhausted(self) -> bool:
        return False
