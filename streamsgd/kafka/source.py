"""Consumer-group source on kafka-python (the default client).

With :mod:`.python_metadata` (partitions, topic id), the only modules besides the
dead-letter sink that import kafka-python. The semantics (manual commits after
checkpoints, seeks on assignment) are those of
:class:`~streamsgd.kafka.group.ConsumerGroupSource`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import (
    AuthorizationError,
    FencedInstanceIdError,
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    SaslAuthenticationFailedError,
)
from kafka.structs import OffsetAndMetadata

from ..distributed.partitions import partition_number
from ..training.buffer import Position
from ..training.ports import SourceFailed, SourceRecord
from .client_config import kafka_python_consumer_config
from .client_logs import watch_client_errors
from .committed import KafkaPythonCommitted
from .group import (
    ConsumerGroupSource,
    KafkaRecordMetadata,
    PartitionsUnavailableError,
    partition_key,
)
from .notices import authentication_failed, authorization_failed, fatal_message
from .python_metadata import KafkaPythonMetadata, forbid_auto_create
from .read_before_eof import keep_bytes_read_before_eof
from .rebalance import resume_interrupted_rebalance
from .settings import (
    COMMIT_TIMEOUT_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
)

log = logging.getLogger("streamsgd.kafka")

LAG_TIMEOUT_MS = 2000
"""The bound of each broker request of a lag refresh (end offsets, a position)."""


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.source._revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.source._assigned(assigned)


class KafkaSource(KafkaPythonMetadata, ConsumerGroupSource, KafkaPythonCommitted):
    """Records of one topic through a consumer group, read with kafka-python.

    Parameters are those of :class:`~streamsgd.kafka.group.ConsumerGroupSource`. In assigned
    mode the client is created without a subscription, by the first of
    :meth:`partitions`, :meth:`assign`, :meth:`poll` and :meth:`commit`.
    """

    _topic_partition = TopicPartition  # for committed_offsets

    def _start(self) -> None:
        settings = self.settings
        keep_bytes_read_before_eof()  # or a refused login reads as "socket disconnected"
        self._config = kafka_python_consumer_config(settings)
        self._consumer: KafkaConsumer | None = None
        self._next_connect = 0.0
        self._in_rebalance = False
        self._fatal: str | None = None  # a fatal error (a commit's, a login's): poll ends the run
        self._unwatch = watch_client_errors(self._client_error)

    def _client_error(self, exc: BaseException) -> None:
        """A failed login is never retried into success: end the run (issue 21, item 5).
        kafka-python says so only in its log."""
        if isinstance(exc, SaslAuthenticationFailedError) and self._fatal is None:
            self._fatal = authentication_failed(str(exc))
        elif isinstance(exc, AuthorizationError):  # e.g. a heartbeat the ACLs refuse
            self._not_authorized(exc)

    def _not_authorized(self, exc: AuthorizationError) -> None:
        """The broker's ACLs refuse the principal (issue 21, item 5): no retry helps."""
        if self._fatal is None:
            self._fatal = authorization_failed(self.settings, exc.errno or 0, str(exc))

    def _connect(self) -> KafkaConsumer | None:
        if self._consumer is not None:
            return self._consumer
        now = self.clock()
        if now < self._next_connect:
            return None
        try:
            consumer = self._new_consumer(CONNECT_TIMEOUT_SECONDS)
        except KafkaError as exc:
            self._next_connect = now + 1.0
            self._broker_ok = False
            log.warning("Kafka not reachable yet (%s); retrying", exc)
            return None
        self._consumer = consumer
        return consumer

    def _new_consumer(self, connect_timeout_seconds: float) -> KafkaConsumer:
        """A subscribed consumer (group mode), or one without any assignment (assigned
        mode); creating it waits at most ``connect_timeout_seconds`` for the broker."""
        config = dict(self._config)
        # kafka-python 3 waits for the broker in the constructor, 30 s by default: a SIGTERM
        # while Kafka is away at the start would wait that long (past Docker's 10 s grace).
        # 2.x has no such setting and gives up by itself.
        if "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG:
            config["bootstrap_timeout_ms"] = max(int(connect_timeout_seconds * 1000), 1)
        consumer = KafkaConsumer(**config)
        forbid_auto_create(consumer)  # before the subscription's first metadata request
        if not self.settings.assigned:
            consumer.subscribe([self.topic], listener=_Listener(self))
        return consumer

    def _assigned_consumer(self, timeout_seconds: float) -> KafkaConsumer:
        """The client, created now if need be; raises PartitionsUnavailableError if the
        broker cannot be reached."""
        if self._fatal is not None:
            raise SourceFailed(fatal_message(self.settings, self._fatal))
        if self._consumer is None:
            try:
                self._consumer = self._new_consumer(min(timeout_seconds, CONNECT_TIMEOUT_SECONDS))
            except KafkaError as exc:
                raise PartitionsUnavailableError(f"Kafka not reachable ({exc})") from exc
        return self._consumer

    # ------------------------------------------------------------------ assigned mode
    def _list_offsets(
        self, numbers: list[int], latest: bool, timeout_seconds: float
    ) -> dict[int, int]:
        consumer = self._assigned_consumer(timeout_seconds)
        tps = [TopicPartition(self.topic, n) for n in numbers]
        timeout_ms = int(timeout_seconds * 1000)
        try:
            if latest:
                found = consumer.end_offsets(tps, timeout_ms=timeout_ms)
            else:
                found = consumer.beginning_offsets(tps, timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise PartitionsUnavailableError(
                f"cannot read the {'end' if latest else 'beginning'} offsets of "
                f"{self.topic} partitions {numbers} ({exc})"
            ) from exc
        return {tp.partition: int(offset) for tp, offset in found.items()}

    def _assign_at(self, offsets: dict[int, int]) -> None:
        consumer = self._assigned_consumer(CONNECT_TIMEOUT_SECONDS)
        tps = [TopicPartition(self.topic, n) for n in sorted(offsets)]
        # assign([]) unsubscribes: no partition, nothing fetched, still no group.
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, offsets[tp.partition])

    def _seek_assigned(self, offsets: dict[int, int]) -> None:
        consumer = self._assigned_consumer(CONNECT_TIMEOUT_SECONDS)
        for number, offset in offsets.items():
            consumer.seek(TopicPartition(self.topic, number), offset)

    # ------------------------------------------------------------------ rebalance
    def _revoked(self, revoked: Any) -> None:
        # kafka-python runs listeners on its IO thread, where a blocking commit is refused:
        # the checkpoint is written here and its offsets committed async.
        self._in_rebalance = True
        try:
            self._revoke({partition_key(tp.topic, tp.partition) for tp in revoked})
        finally:
            self._in_rebalance = False

    def _assigned(self, assigned: Any) -> None:
        assert self._consumer is not None
        positions = self._positions()
        for tp in assigned:
            position = positions.get(partition_key(tp.topic, tp.partition))
            if position is not None:
                self._consumer.seek(tp, position.offset)
            elif self._start_rule.from_beginning:
                self._consumer.seek_to_beginning(tp)
        self._assigned_now([partition_key(tp.topic, tp.partition) for tp in assigned])

    # ------------------------------------------------------------------ Source
    def poll(self, timeout_seconds: float) -> list[SourceRecord]:
        if self._fatal is not None:
            raise SourceFailed(fatal_message(self.settings, self._fatal))
        consumer = self._connect()
        if consumer is None or not self._log_verified():
            if self._fatal is not None:  # e.g. metadata refused by the ACLs
                raise SourceFailed(fatal_message(self.settings, self._fatal))
            time.sleep(min(timeout_seconds, 0.2))  # pace reconnection attempts
            return []
        try:
            batches = consumer.poll(timeout_ms=int(timeout_seconds * 1000))
        except (OffsetOutOfRangeError, NoOffsetForPartitionError) as exc:
            self._reposition(consumer, exc)
            return []
        except FencedInstanceIdError as exc:  # never recovers: end the run
            raise SourceFailed(fatal_message(self.settings, f"fenced ({exc})")) from None
        except AuthorizationError as exc:  # nor does a refusal of the ACLs
            self._not_authorized(exc)
            raise SourceFailed(fatal_message(self.settings, str(self._fatal))) from None
        except KafkaError as exc:
            log.warning("poll failed: %s", exc)
            self._broker_ok = False
            return []
        if self._guard is not None:
            # Before a record is returned: none of a replaced log is ever learned.
            self._guard.check_unchanged(self._cached_identity(consumer))
        assigned_mode = self.settings.assigned
        if not assigned_mode:
            resume_interrupted_rebalance(consumer)
        records = []
        for tp, messages in batches.items():
            key = partition_key(tp.topic, tp.partition)
            if assigned_mode and key not in self._assignment:
                continue  # fetched before a re-assignment took the partition away
            for msg in messages:
                records.append(
                    SourceRecord(
                        key,
                        msg.offset,
                        value=msg.value,
                        timestamp_ms=msg.timestamp,
                        metadata=KafkaRecordMetadata(
                            tp.topic, tp.partition, msg.key, list(msg.headers or [])
                        ),
                    )
                )
            if messages:
                self._fetched[key] = messages[-1].offset + 1  # for the lag
        if records:
            self._broker_ok = True
        if not assigned_mode and not consumer.assignment():
            self._notice_waiting()
        if self._lag_due():
            self._refresh_lag(consumer)
        return records

    def _reposition(
        self, consumer: KafkaConsumer, exc: OffsetOutOfRangeError | NoOffsetForPartitionError
    ) -> None:
        """Seek the partitions the client could not read (``exc``): out of range, as
        :meth:`_out_of_range` decides; without any offset, as :meth:`_start_of` does."""
        found = exc.args[0] if exc.args else ()
        try:
            if isinstance(exc, OffsetOutOfRangeError):
                for tp, tried in dict(found).items():
                    key = partition_key(tp.topic, tp.partition)
                    consumer.seek(tp, self._out_of_range(key, int(tried)))
                return
            for tp in found:
                key = partition_key(tp.topic, tp.partition)
                if self._start_of(key) == "latest":
                    consumer.seek_to_end(tp)
                else:
                    consumer.seek_to_beginning(tp)
        except (PartitionsUnavailableError, KafkaError) as exc2:
            log.warning("cannot reposition %s: %s; retrying", sorted(map(str, found)), exc2)
            self._broker_ok = False

    def _refresh_lag(self, consumer: KafkaConsumer) -> None:
        assigned = {partition_key(tp.topic, tp.partition): tp for tp in consumer.assignment()}
        asked = list(assigned.values())
        if not asked and (probe := self._idle_probe()) is not None:
            asked = [TopicPartition(self.topic, probe)]  # an idle replica: is the broker there?
        # Group mode: every partition of the topic, assigned yet or not (one just added).
        known = () if self.settings.assigned else consumer.partitions_for_topic(self.topic)
        others = [TopicPartition(self.topic, n) for n in sorted(known or ())]
        others = [tp for tp in others if tp not in asked]
        if not asked and not others:
            return
        try:
            ends = consumer.end_offsets(asked + others, timeout_ms=LAG_TIMEOUT_MS)
            # An unassigned partition without a position will be read from its beginning.
            starts = consumer.beginning_offsets(others, timeout_ms=LAG_TIMEOUT_MS) if others else {}
        except KafkaError as exc:
            log.warning("cannot read end offsets: %s", exc)
            self._broker_ok = False
            return

        def current(key: str) -> int | None:
            if key not in assigned:
                return int(starts[TopicPartition(*partition_number(key))])
            # auto_offset_reset "none" (group mode): a partition just assigned has no position
            # until the first fetch; position() then raises instead of resetting it (the
            # source decides, in _reposition). The lag must not fail the poll for it.
            try:
                offset = consumer.position(assigned[key], timeout_ms=LAG_TIMEOUT_MS)
            except NoOffsetForPartitionError:
                return None
            return None if offset is None else int(offset)

        lagging = {
            key: int(end)
            for tp, end in ends.items()
            if (key := partition_key(tp.topic, tp.partition)) in assigned or tp in others
        }
        self._report_lag(lagging, current, None if self.settings.assigned else len(assigned))

    @property
    def ready(self) -> bool:
        """Group mode: the broker answers and partitions are assigned. Assigned mode: the
        broker answers (an empty assignment is ready, and idle)."""
        if self._consumer is None or not self._broker_ok or self._fatal is not None:
            return False
        return self.settings.assigned or bool(self._consumer.assignment())

    def commit(self, positions: dict[str, Position]) -> None:
        """Commit the positions of the assigned partitions (group mode), or of every
        partition of the topic in ``positions`` (assigned mode), with the group id."""
        if self.settings.assigned:
            consumer = self._assigned_consumer(COMMIT_TIMEOUT_SECONDS)
            offsets = {
                TopicPartition(self.topic, number): OffsetAndMetadata(offset, "", -1)
                for number, offset in self._commit_offsets(positions).items()
            }
        else:
            if (consumer := self._consumer) is None:
                return
            offsets = {}
            for tp in consumer.assignment():
                position = positions.get(partition_key(tp.topic, tp.partition))
                if position is not None:
                    offsets[tp] = OffsetAndMetadata(position.offset, "", -1)
        if not offsets:
            return
        if self._in_rebalance:
            consumer.commit_async(offsets)
            return
        try:
            consumer.commit(offsets, timeout_ms=int(COMMIT_TIMEOUT_SECONDS * 1000))
        except Exception as exc:
            self._commit_failed = True
            if isinstance(exc, FencedInstanceIdError):
                self._fatal = f"fenced ({exc})"
            elif isinstance(exc, AuthorizationError):
                self._not_authorized(exc)
            raise
        self._commit_failed = False

    def close(self) -> None:
        self._unwatch()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            timeout_ms = int(self._close_timeout_seconds() * 1000)
            consumer.close(autocommit=False, timeout_ms=timeout_ms)
