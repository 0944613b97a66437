"""The dead-letter sink on kafka-python: rejected records go to a topic of their own.

Besides the kafka-python source, the only module that imports kafka-python (its producer and
admin sides). The dead-letter topic is created (or found) when the sink is created, so that a
misconfigured topic shows at start and the client does not log ``Topic X not found`` at the
first rejected record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ..training.ports import SourceRecord
from .client_logs import guard_client_logs
from .group import KafkaRecordMetadata
from .read_before_eof import keep_bytes_read_before_eof
from .settings import (
    ADMIN_TIMEOUT_SECONDS,
    DEAD_LETTER_CLOSE_TIMEOUT_SECONDS,
    DEAD_LETTER_FLUSH_TIMEOUT_SECONDS,
    RECONNECT_BACKOFF_MAX_MS,
    KafkaSecurity,
)

log = logging.getLogger("streamsgd.kafka")


def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    security: KafkaSecurity,
    partitions: int = -1,
    timeout_seconds: float = ADMIN_TIMEOUT_SECONDS,
) -> bool:
    """Create ``topic`` unless it exists; True if this call created it.

    ``partitions`` −1 takes the broker's default (``num.partitions``), as does the
    replication factor. Raises ``KafkaError`` when the broker cannot be asked in time.
    """
    timeout_ms = int(timeout_seconds * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers.split(","),
        client_id="streamsgd-admin",
        request_timeout_ms=timeout_ms,
        **security.kafka_python(),
    )
    try:
        if topic in admin.list_topics():
            return False
        admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=-1)],
            timeout_ms=timeout_ms,
        )
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()


class KafkaDeadLetterSink:
    """Forwards rejected records, key and value unchanged, to a dead-letter topic with
    headers ``streamsgd.reason``, ``streamsgd.detail``, ``streamsgd.source.topic``,
    ``streamsgd.source.partition`` and ``streamsgd.source.offset`` (plus the original ones).
    A tombstone (no key, no value) is forwarded with an empty value, as Kafka needs one of
    the two.

    Sends that fail are kept and retried by :meth:`flush`, which raises while any is
    undelivered, so the service never commits an offset past an undelivered dead letter.

    Parameters
    ----------
    bootstrap_servers, topic : str
    security : KafkaSecurity or mapping in kafka-python's names, optional
    protocol_debug : bool
        Let kafka-python's protocol logs through at DEBUG (credentials still redacted).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        security: KafkaSecurity | Mapping[str, Any] | None = None,
        protocol_debug: bool = False,
    ) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.security = KafkaSecurity.of(security)
        guard_client_logs(protocol_debug, self.security.secrets())
        keep_bytes_read_before_eof()
        self._config = {
            "bootstrap_servers": bootstrap_servers.split(","),
            "acks": "all",
            "linger_ms": 20,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
            "client_id": "streamsgd-dead-letter",
            **self.security.kafka_python(),
        }
        self._producer: KafkaProducer | None = None
        self._unsent: list[_DeadLetter] = []
        self._in_flight: list[tuple[_DeadLetter, Any]] = []
        self._topic_checked = self._check_topic()

    def _check_topic(self) -> bool:
        """Create or find the topic; on failure say so and try again before the first send."""
        try:
            if ensure_topic(self.bootstrap_servers, self.topic, self.security):
                log.info("created dead-letter topic %s", self.topic)
            return True
        except KafkaError as exc:
            log.warning(
                "cannot check the dead-letter topic %s now (%s); trying again at the first "
                "rejected record",
                self.topic,
                exc,
            )
            return False

    def _ensure(self) -> KafkaProducer:
        if self._producer is None:
            if not self._topic_checked:
                self._topic_checked = self._check_topic()
            self._producer = KafkaProducer(**self._config)
        return self._producer

    def send(self, record: SourceRecord, reason: str, detail: str) -> None:
        origin = record.metadata if isinstance(record.metadata, KafkaRecordMetadata) else None
        headers = [
            ("streamsgd.reason", reason.encode()),
            ("streamsgd.detail", detail[:1000].encode()),
            ("streamsgd.source.topic", (origin.topic if origin else record.partition).encode()),
            ("streamsgd.source.partition", str(origin.partition if origin else None).encode()),
            ("streamsgd.source.offset", str(record.offset).encode()),
            *(origin.headers if origin else []),
        ]
        key = origin.key if origin else None
        value = record.value if record.value is not None or key is not None else b""
        self._unsent.append(_DeadLetter(key, value, headers))
        self._send_unsent()

    def _send_unsent(self) -> None:
        if not self._unsent:
            return  # creating the producer would wait for an unreachable broker for nothing
        try:
            producer = self._ensure()
            while self._unsent:
                letter = self._unsent[0]
                future = producer.send(
                    self.topic, key=letter.key, value=letter.value, headers=letter.headers
                )
                self._in_flight.append((letter, future))
                self._unsent.pop(0)
        except KafkaError as exc:
            log.warning("dead-letter send failed (will retry): %s", exc)

    def flush(self) -> None:
        """Deliver what was sent, waiting at most ``DEAD_LETTER_FLUSH_TIMEOUT_SECONDS``;
        raises ``KafkaError`` while any dead letter is undelivered."""
        self._send_unsent()
        if self._unsent:
            raise KafkaError(f"{len(self._unsent)} dead letters not sent yet")
        if self._producer is not None and self._in_flight:
            try:
                self._producer.flush(timeout=DEAD_LETTER_FLUSH_TIMEOUT_SECONDS)
            except KafkaError as exc:  # a timeout: the futures below say what is missing
                log.debug("dead-letter flush: %s", exc)
        # Failed sends are sent again; pending ones stay in flight (sending them again
        # would deliver them twice once the broker answers).
        pending = [(letter, future) for letter, future in self._in_flight if not future.is_done]
        failed = [letter for letter, future in self._in_flight if future.failed()]
        self._in_flight = pending
        self._unsent[:0] = failed
        if pending or failed:
            raise KafkaError(f"{len(pending) + len(failed)} dead letters not delivered yet")

    def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer.close(timeout=DEAD_LETTER_CLOSE_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class _DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
