"""Consumer-group source on confluent-kafka (librdkafka), behind the same Source interface.

With :mod:`.confluent_admin` (topic ids) and :mod:`.confluent_metadata` (partitions and
offsets in assigned mode), the only modules that import confluent_kafka. It
exists for throughput (librdkafka unpacks records in C, kafka-python spends microseconds per
record in Python); the semantics are :class:`~streamsgd.kafka.group.ConsumerGroupSource`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from ..training.buffer import Position
from ..training.ports import SourceFailed, SourceRecord
from .bounded import bounded as _bounded
from .client_config import librdkafka_consumer_config
from .committed import ConfluentCommitted
from .confluent_admin import ConfluentLogDescriber
from .confluent_metadata import ConfluentMetadata
from .delivery import DeliveryCursor, source_record
from .group import (
    ConsumerGroupSource,
    PartitionsUnavailableError,
    partition_key,
)
from .held_records import HeldRecords
from .identity import LogIdentity
from .notices import (
    AUTHORIZATION_ERRORS,
    authentication_failed,
    authorization_failed,
    fatal_message,
)
from .settings import (
    COMMIT_TIMEOUT_SECONDS,
    MAX_POLL_RECORDS,
)
from .settings import LIST_OFFSETS_TIMEOUT_SECONDS as LIST_TIMEOUT

log = logging.getLogger("streamsgd.kafka")


class ConfluentKafkaSource(ConfluentMetadata, ConsumerGroupSource, ConfluentCommitted):
    """Records of one topic through a consumer group, read with confluent-kafka.

    Parameters are those of :class:`~streamsgd.kafka.group.ConsumerGroupSource`. In assigned
    mode the client never subscribes; it reads nothing until :meth:`assign`.
    """

    _topic_partition = TopicPartition  # for committed_offsets

    def _start(self) -> None:
        settings = self.settings
        self._assigned: list[TopicPartition] = []
        self._partition_keys: dict[tuple[str, int], str] = {}
        self._pending_commit: threading.Thread | None = None
        self._committed: dict[int, int] = {}  # the offsets the last synchronous commit stored
        self._cursor = DeliveryCursor()
        self._admin: ConfluentLogDescriber | None = None
        self._check_log_now = False
        self._in_revoke = False
        self._fatal: str | None = None  # a fatal client error: poll ends the run
        self._answered = False  # assigned mode: a metadata or offsets request succeeded
        self._next_identity = 0.0
        # Group mode: records wait for the broker to confirm their log (.held_records).
        self._held: HeldRecords | None = None
        self._paused = False  # fetching paused: too many records held
        if self._guard is not None:
            describer = self._describer
            self._held = HeldRecords(
                lambda: describer().ask(self.topic), self._guard.check_unchanged, self.clock
            )
        config = librdkafka_consumer_config(settings, self._on_error, self._on_commit)
        self._consumer = Consumer(config)
        if not settings.assigned:
            self._consumer.subscribe(
                [settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():  # e.g. a fenced static member: librdkafka reads nothing more
            self._fatal = error.str()
        elif error.code() == KafkaError._AUTHENTICATION and self._fatal is None:
            # librdkafka retries a refused login forever (not "fatal" to it): end the run.
            self._fatal = authentication_failed(error.str())
        elif error.code() in AUTHORIZATION_ERRORS and self._fatal is None:
            # Nor does it give up on a topic or group the broker's ACLs refuse it.
            self._fatal = authorization_failed(self.settings, error.code(), error.str())
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._broker_ok = False
            return  # librdkafka logs these itself, through the guarded logger
        log.warning("Kafka: %s", error)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's report of a commit: one the ACLs refused ends the run (next poll)."""
        found = [error, *(tp.error for tp in partitions or ())]
        refused = [e for e in found if e is not None and e.code() in AUTHORIZATION_ERRORS]
        if refused:
            self._on_error(refused[0])

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        positions = self._positions()
        for tp in partitions:
            position = positions.get(partition_key(tp.topic, tp.partition))
            if position is not None:
                tp.offset = position.offset
            elif self._start_rule.from_beginning:
                tp.offset = OFFSET_BEGINNING
        self._cursor.restart({tp.partition: tp.offset for tp in partitions})
        self._drop_held({partition_key(tp.topic, tp.partition) for tp in partitions})
        consumer.assign(partitions)
        self._assigned = list(partitions)
        self._assigned_now([partition_key(t.topic, t.partition) for t in partitions])
        # A recreated topic comes back through a rebalance: check the log before its records.
        self._check_log_now = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The checkpoint's commit runs inside this callback (see commit()).
        self._in_revoke = True
        keys = {partition_key(tp.topic, tp.partition) for tp in partitions}
        self._drop_held(keys)
        try:
            self._revoke(keys)
        finally:
            self._in_revoke = False
        consumer.unassign()
        self._assigned = []

    # ------------------------------------------------------------------ assigned mode
    def _assign_at(self, offsets: dict[int, int], restart: bool = True) -> None:
        if restart:  # a new assignment; a reposition moves its own partition only
            self._cursor.restart(offsets)
        partitions = [TopicPartition(self.topic, n, offsets[n]) for n in sorted(offsets)]
        # librdkafka discards what it fetched for dropped partitions; poll() filters on keys.
        self._consumer.assign(partitions)
        self._assigned = partitions
        self._partition_keys = {(self.topic, n): partition_key(self.topic, n) for n in offsets}

    def _seek_assigned(self, offsets: dict[int, int]) -> None:
        # One assign() with every offset: seek() needs a fetching partition, which it may not
        # be right after an assignment. Others keep their position (or start, if none read).
        current = {tp.partition: tp.offset for tp in self._assigned}
        for tp in self._consumer.position(self._assigned):
            if tp.offset >= 0:
                current[tp.partition] = tp.offset
        self._assign_at({**current, **offsets}, restart=False)
        for number, offset in offsets.items():
            self._cursor.moved(number, offset)

    # ------------------------------------------------------------------ log identity
    def _describer(self) -> ConfluentLogDescriber:
        if self._admin is None:
            settings = self.settings
            self._admin = ConfluentLogDescriber(
                {
                    "bootstrap.servers": settings.bootstrap_servers,
                    "client.id": settings.client_id,
                    **settings.security.librdkafka(),
                },
                self._on_error,
            )
        return self._admin

    def _describe_log(self) -> LogIdentity | None:
        return self._describer().describe(self.topic)

    def _verified(self, fetched: list[SourceRecord]) -> list[SourceRecord]:
        """Group mode: of the records fetched so far, those whose log the broker confirmed
        after their fetch (:mod:`.held_records`: librdkafka reads a topic recreated between
        two of its metadata refreshes without a word). A synchronous check confirms all, at
        least every lag interval and after any error (with the cluster id)."""
        assert self._held is not None and self._guard is not None
        self._held.hold(fetched)
        released: list[SourceRecord] | None = None
        if self._check_log_now or self._identity_due():
            self._check_log_now = False
            identity = self._describe_log()
            self._guard.check_unchanged(identity)
            if identity is not None and identity.topic_id is not None:
                released = self._held.confirmed()
        if released is None:
            released = self._held.release()
        # Bounded while answers fail to come (at every poll: an assign() resumes fetching).
        full, was_paused, self._paused = self._held.full, self._paused, self._held.full
        if full or was_paused:
            (self._consumer.pause if full else self._consumer.resume)(self._assigned)
        return released

    def _drop_held(self, keys: set[str]) -> None:
        """The partitions are read again from the service's positions: their held records
        would be handed out twice."""
        if self._held is not None:
            self._held.drop(keys)

    # ------------------------------------------------------------------ Source
    def poll(self, timeout_seconds: float) -> list[SourceRecord]:
        if self._fatal is not None:
            raise SourceFailed(fatal_message(self.settings, self._fatal))
        if not self._log_verified():
            if self._fatal is not None:  # e.g. the topic's description refused by the ACLs
                raise SourceFailed(fatal_message(self.settings, self._fatal))
            time.sleep(min(timeout_seconds, 0.2))  # pacing the broker's answers
            return []
        # consume(n, timeout) waits until n records or the timeout: with large (batched)
        # records that is the whole timeout on every call. Wait for the first record only,
        # then take what is already fetched without waiting.
        held = self._held  # while it holds records, come back when their answer may be in
        wait = timeout_seconds if held is None else held.wait_seconds(timeout_seconds)
        first = self._consumer.poll(wait)
        messages = [] if first is None else [first]
        if first is not None:
            messages.extend(self._consumer.consume(MAX_POLL_RECORDS - 1, 0))
        records: list[SourceRecord] = []
        keys = self._partition_keys
        assigned_mode = self.settings.assigned
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.fatal() or error.code() == KafkaError._FATAL:
                    raise SourceFailed(fatal_message(self.settings, error.str()))
                if error.code() in AUTHORIZATION_ERRORS:
                    self._on_error(error)
                    raise SourceFailed(fatal_message(self.settings, str(self._fatal)))
                if error.code() == KafkaError._AUTO_OFFSET_RESET:
                    if not self._cursor.reset_is_stale(int(msg.partition() or 0), msg.offset()):
                        moved = self._reposition(msg)
                        if self._held is not None:  # read again from the position decided
                            records = [r for r in records if r.partition != moved]
                elif error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", error)
                    self._check_log_now = True
                continue
            # A message without error always has topic, partition and offset.
            topic, partition = str(msg.topic()), int(msg.partition() or 0)
            key = keys.get((topic, partition))
            if key is None:
                if assigned_mode:
                    continue  # fetched before a re-assignment took the partition away
                key = keys[topic, partition] = partition_key(topic, partition)
            if not self._cursor.accept(partition, int(msg.offset() or 0)):
                continue  # handed out already: fetched again after a reposition
            records.append(source_record(msg, topic, partition, key))
        if self._held is not None:
            records = self._verified(records)
        if records:
            self._broker_ok = True
            for record in records:  # in offset order per partition: the last one stays
                self._fetched[record.partition] = record.offset + 1
        if not assigned_mode and not self._assigned:
            self._notice_waiting()
        if self._lag_due():
            self._refresh_lag()
        return records

    def _reposition(self, msg: Any) -> str:
        """A partition librdkafka could not read at its position (``auto.offset.reset`` is
        ``error``): out of range, as :meth:`_out_of_range` decides, or without any offset,
        as :meth:`_start_of` does. A shorter log may be a recreated topic: check it.
        Returns the partition's key."""
        self._check_log_now = True
        topic, number = str(msg.topic()), int(msg.partition() or 0)
        key = partition_key(topic, number)
        self._drop_held({key})
        position = self._positions().get(key)
        tried = position.offset if position is not None else msg.offset()
        try:
            if tried is not None and tried >= 0:
                offset = self._out_of_range(key, tried)
            else:
                latest = self._start_of(key) == "latest"
                offset = self._list_offsets([number], latest, LIST_TIMEOUT)[number]
            # seek() is refused on a partition in this error state: assign again (the
            # others at their current position).
            self._seek_assigned({number: offset})
        except (PartitionsUnavailableError, KafkaException) as exc:
            log.warning("cannot reposition %s: %s; retrying", key, exc)
            self._broker_ok = False
        return key

    def _identity_due(self) -> bool:
        now = self.clock()
        if now < self._next_identity:
            return False
        self._next_identity = now + self.settings.lag_interval_seconds
        return True

    def _refresh_lag(self) -> None:
        assigned = {partition_key(tp.topic, tp.partition): tp for tp in self._assigned}
        watermark = self._consumer.get_watermark_offsets
        try:
            if not assigned and self.settings.assigned:
                if (probe := self._idle_probe()) is not None:
                    # An idle replica: is the broker still there?
                    watermark(TopicPartition(self.topic, probe), timeout=2.0)
                    self._report_lag({}, lambda key: 0)
                return
            # Group mode: every partition of the topic, assigned yet or not (one just added).
            numbers = [] if self.settings.assigned else self._read_partitions(2.0)
            marks = {
                partition_key(self.topic, n): watermark(TopicPartition(self.topic, n), timeout=2.0)
                for n in numbers
            }
            marks.update({key: watermark(tp, timeout=2.0) for key, tp in assigned.items()})
        except (KafkaException, PartitionsUnavailableError) as exc:
            log.warning("cannot read end offsets: %s", exc)
            self._broker_ok = False
            return
        ends = {key: int(high) for key, (_, high) in marks.items()}

        def current(key: str) -> int:
            if key not in assigned:  # without a position it will be read from its start
                return int(marks[key][0])
            offset = self._consumer.position([assigned[key]])[0].offset
            return offset if offset >= 0 else ends[key]

        self._report_lag(ends, current, None if self.settings.assigned else len(assigned))

    @property
    def ready(self) -> bool:
        """Group mode: the broker answers and partitions are assigned. Assigned mode: the
        broker answers (an empty assignment is ready, and idle)."""
        if self._fatal is not None:
            return False
        return self._broker_ok and (self.settings.assigned or bool(self._assigned))

    def commit(self, positions: dict[str, Position]) -> None:
        """Commit synchronously, giving up after ``COMMIT_TIMEOUT_SECONDS``: the positions
        of the assigned partitions (group mode), or of every partition of the topic in
        ``positions`` (assigned mode).

        librdkafka's synchronous commit has no timeout: with the broker unreachable it
        waits for the coordinator (90 s measured), so it runs in a helper thread. While one
        is still waiting, later commits are refused rather than piled up."""
        if self.settings.assigned:  # every partition given, assigned here or not
            offsets = [
                TopicPartition(self.topic, number, offset)
                for number, offset in self._commit_offsets(positions).items()
            ]
        else:
            offsets = [
                TopicPartition(tp.topic, tp.partition, positions[key].offset)
                for tp in self._assigned
                if (key := partition_key(tp.topic, tp.partition)) in positions
            ]
        if not offsets:
            return
        committing = {tp.partition: tp.offset for tp in offsets}
        if self._in_revoke:
            if committing == self._committed:
                # Closing revokes right after the final checkpoint's commit: a second,
                # asynchronous one can still be in flight when librdkafka tears the group
                # down, which it asserts against (abort, exit 134: librdkafka #4792).
                return
            # A synchronous commit from a helper thread waits for an answer that this
            # thread, inside the rebalance callback, would serve: it gave up after 1.5 s at
            # every shutdown and rebalance. Asynchronous, it is sent before the partitions
            # are given up, and close() waits for it.
            self._consumer.commit(offsets=offsets, asynchronous=True)
            return
        if self._pending_commit is not None and self._pending_commit.is_alive():
            self._commit_failed = True
            raise TimeoutError("the previous offset commit is still waiting for the broker")
        consumer = self._consumer
        self._pending_commit = _bounded(
            lambda: consumer.commit(offsets=offsets, asynchronous=False),
            COMMIT_TIMEOUT_SECONDS,
            "offset commit",
        )
        self._commit_failed = self._pending_commit.is_alive()
        self._committed = {} if self._commit_failed else committing
        if self._commit_failed:
            raise TimeoutError(f"offset commit gave up after {COMMIT_TIMEOUT_SECONDS:.1f} s")

    def close(self) -> None:
        """Leave the group and close, giving up after the close timeout (librdkafka waits
        for outstanding commits, which never finish with the broker unreachable)."""
        timeout = self._close_timeout_seconds()
        if _bounded(self._consumer.close, timeout, "consumer close").is_alive():
            log.warning("closing the Kafka consumer gave up after %.1f s", timeout)
