"""The topic id and cluster id of a topic, read with confluent-kafka's admin API (the
consumer's metadata carries no topic id). Imports confluent_kafka, like :mod:`.confluent`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, TopicCollection
from confluent_kafka.admin import AdminClient

from .client_logs import LIBRDKAFKA_LOGGER
from .identity import LogIdentity, topic_id_text
from .notices import AUTHORIZATION_ERRORS
from .settings import ADMIN_TIMEOUT_SECONDS

log = logging.getLogger("streamsgd.kafka")


class ConfluentLogDescriber:
    """Describes topics through one admin client, created at the first call.

    Parameters
    ----------
    config : dict
        librdkafka settings (bootstrap servers, client id, security).
    on_error : callable, optional
        librdkafka's ``error_cb`` (a refused login shows only there), served after a failed
        call.
    """

    def __init__(
        self, config: dict[str, Any], on_error: Callable[[KafkaError], None] | None = None
    ) -> None:
        # librdkafka's own log lines go through the guarded Python logger.
        self.config = {**config, "logger": logging.getLogger(LIBRDKAFKA_LOGGER)}
        if on_error is not None:
            self.config["error_cb"] = on_error
        self._admin: AdminClient | None = None

    def describe(self, topic: str) -> LogIdentity | None:
        """``topic``'s identity now; None if the broker did not answer in time or the
        topic does not exist."""
        if self._admin is None:
            self._admin = AdminClient(self.config)
        timeout = ADMIN_TIMEOUT_SECONDS
        try:
            described = self._admin.describe_topics(
                TopicCollection([topic]), request_timeout=timeout
            )
            found = described[topic].result(timeout=timeout + 1)
            cluster = self._admin.describe_cluster(request_timeout=timeout).result(timeout + 1)
        except Exception as exc:  # KafkaException, or the futures' timeout
            self._refused(exc)  # serve error_cb: say why, e.g. a refused login
            return None
        return LogIdentity(_topic_id(found.topic_id), cluster.cluster_id)

    def ask(self, topic: str) -> TopicIdQuestion:
        """A question about ``topic``'s id, answered while the caller goes on (the
        :class:`~.held_records.Question` of :class:`~.held_records.HeldRecords`)."""
        if self._admin is None:
            self._admin = AdminClient(self.config)
        try:
            described = self._admin.describe_topics(
                TopicCollection([topic]), request_timeout=ADMIN_TIMEOUT_SECONDS
            )
            return TopicIdQuestion(described[topic], self._refused)
        except Exception as exc:  # KafkaException: e.g. the client's queue is full
            future: Future[Any] = Future()
            future.set_exception(exc)
            return TopicIdQuestion(future, self._refused)

    def _refused(self, exc: BaseException) -> None:
        """A failed description: hand a refusal of the ACLs to ``error_cb`` (it comes only
        here, not through error_cb), and serve error_cb for the rest (a refused login)."""
        log.debug("cannot describe the topic: %s", exc)
        if self._admin is not None:
            self._admin.poll(0)
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() in AUTHORIZATION_ERRORS:
            self.config.get("error_cb", lambda e: None)(error)


class TopicIdQuestion:
    """One asynchronous description of a topic: its topic id once answered."""

    def __init__(self, future: Future[Any], on_failure: Callable[[BaseException], None]) -> None:
        self._future = future
        self._on_failure = on_failure

    def done(self) -> bool:
        return self._future.done()

    def identity(self) -> LogIdentity | None:
        """The topic id (no cluster id) once done; None if the description failed."""
        exc = self._future.exception(timeout=0)
        if exc is not None:
            self._on_failure(exc)
            return None
        return LogIdentity(_topic_id(self._future.result(timeout=0).topic_id), None)


def _topic_id(uuid: Any) -> str:
    """confluent-kafka's ``Uuid`` as Kafka's tools print it."""
    raw = b"".join(
        (bits & (2**64 - 1)).to_bytes(8, "big")
        for bits in (uuid.get_most_significant_bits(), uuid.get_least_significant_bits())
    )
    return topic_id_text(raw)
