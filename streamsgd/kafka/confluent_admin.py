"""The topic id and cluster id of a topic, read with confluent-kafka's admin API (the
consumer's metadata carries no topic id). Imports confluent_kafka, like :mod:`.confluent`."""

from __future__ import annotations

import logging
from collections.abc import Callable
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
            log.debug("cannot describe %s: %s", topic, exc)
            self._admin.poll(0)  # serve error_cb: say why, e.g. a refused login
            error = exc.args[0] if exc.args else None
            # A refusal of the ACLs comes only here, not through error_cb: hand it over.
            if isinstance(error, KafkaError) and error.code() in AUTHORIZATION_ERRORS:
                self.config.get("error_cb", lambda e: None)(error)
            return None
        uuid = found.topic_id
        raw = b"".join(
            (bits & (2**64 - 1)).to_bytes(8, "big")
            for bits in (uuid.get_most_significant_bits(), uuid.get_least_significant_bits())
        )
        return LogIdentity(topic_id_text(raw), cluster.cluster_id)
