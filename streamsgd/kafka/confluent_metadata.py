"""What librdkafka's consumer says about the topic in assigned mode (the replicas): its
partitions and the beginning or end offsets to start at, and why it cannot say (a refused
login or topic). A mixin of :class:`~streamsgd.kafka.confluent.ConfluentKafkaSource`;
imports confluent_kafka, like that module."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from ..training.ports import SourceFailed
from .group import PartitionsUnavailableError, partition_key
from .identity import LogIdentity
from .notices import AUTHORIZATION_ERRORS, fatal_message
from .settings import CONNECT_TIMEOUT_SECONDS


class ConfluentMetadata:
    """``_read_partitions`` and ``_list_offsets`` of the confluent source."""

    topic: str
    settings: Any
    _consumer: Any
    _fatal: str | None
    _answered: bool  # a metadata or offsets request succeeded

    def _on_error(self, error: Any) -> None: ...

    def _describe_log(self) -> LogIdentity | None: ...

    def _read_partitions(self, timeout_seconds: float) -> list[int]:
        try:
            # Names the topic: librdkafka's consumer asks for it without creating it. One
            # attempt is short: a refused login shows only between attempts.
            timeout = min(max(timeout_seconds, 0.1), CONNECT_TIMEOUT_SECONDS)
            metadata = self._consumer.list_topics(self.topic, timeout=timeout)
        except KafkaException as exc:
            self._end_if_refused()
            raise PartitionsUnavailableError(f"metadata request failed ({exc})") from exc
        self._answered = True
        topic = metadata.topics.get(self.topic)
        if topic is not None and topic.error and topic.error.code() in AUTHORIZATION_ERRORS:
            self._on_error(topic.error)
            self._end_if_refused()
        if topic is None or topic.error is not None:
            return []
        return sorted(topic.partitions)

    def _end_if_refused(self) -> None:
        """Assigned mode, after a failed request, until one succeeded: SourceFailed if the
        login (or the topic) was refused. librdkafka says so only to callbacks, served
        without handing out records by the log describer's admin client, not the consumer."""
        if self._fatal is None and not self._answered:
            self._describe_log()
        if self._fatal is not None:
            raise SourceFailed(fatal_message(self.settings, self._fatal))

    def _list_offsets(
        self, numbers: list[int], latest: bool, timeout_seconds: float
    ) -> dict[int, int]:
        deadline = time.monotonic() + timeout_seconds
        found = {}
        for number in numbers:
            while True:
                remaining = max(deadline - time.monotonic(), 0.1)
                try:
                    watermarks = self._consumer.get_watermark_offsets(
                        TopicPartition(self.topic, number), timeout=remaining
                    )
                except KafkaException as exc:
                    watermarks, error = None, str(exc)
                else:
                    error = "no answer in time"
                # Added, not yet in this client's metadata: refresh it and ask again.
                if watermarks is not None or "_UNKNOWN_PARTITION" not in error:
                    break
                if time.monotonic() > deadline or not self._read_partitions(1.0):
                    break
            if watermarks is None:
                self._end_if_refused()
                raise PartitionsUnavailableError(
                    f"cannot read the {'end' if latest else 'beginning'} offset of "
                    f"{partition_key(self.topic, number)} ({error})"
                )
            low, high = watermarks
            found[number] = high if latest else low
        return found
