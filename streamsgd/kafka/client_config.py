"""What each client library's consumer is configured with, in its own names: the same
choices (manual commits, read_committed, jumps reported rather than made, bounded fetches,
the metadata interval) spelled for kafka-python and for librdkafka. No Kafka library is
imported here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .client_logs import LIBRDKAFKA_LOGGER
from .settings import (
    FETCH_MAX_BYTES,
    MAX_PARTITION_FETCH_BYTES,
    MAX_POLL_RECORDS,
    RECONNECT_BACKOFF_MAX_MS,
    SESSION_TIMEOUT_MS,
    ConsumerSettings,
)

# librdkafka's debug contexts shown with protocol_debug (through the guarded logger).
PROTOCOL_DEBUG_CONTEXTS = "broker,protocol,security,cgrp,consumer,fetch"


def kafka_python_consumer_config(settings: ConsumerSettings) -> dict[str, Any]:
    """``KafkaConsumer`` keyword arguments for ``settings``."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "group_id": settings.group_id,
        "enable_auto_commit": False,
        # Group mode: the client reports a partition it cannot read at its position
        # instead of resetting it; the source decides and accounts the jump (.jumps).
        # Replicas (assigned) keep the client's reset until their engine decides.
        "auto_offset_reset": settings.auto_offset_reset if settings.assigned else "none",
        # Never learn a record of an aborted (or still open) transaction; kafka-python
        # reads uncommitted by default, librdkafka committed: both clients must learn
        # the same records.
        "isolation_level": "read_committed",
        # A topic deleted under the trainer must not come back as an empty one made by
        # the consumer's metadata requests (the broker's auto-create).
        "allow_auto_create_topics": False,
        # Partitions added to the topic are seen within this (300 s by default).
        "metadata_max_age_ms": int(settings.metadata_max_age_seconds * 1000),
        "max_poll_records": MAX_POLL_RECORDS,
        "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
        "fetch_max_bytes": FETCH_MAX_BYTES,
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "client_id": settings.client_id,
        **settings.security.kafka_python(),
    }
    if settings.group_instance_id:
        config["group_instance_id"] = settings.group_instance_id
    return config


def librdkafka_consumer_config(
    settings: ConsumerSettings,
    on_error: Callable[[Any], None],
    on_commit: Callable[[Any, Any], None],
) -> dict[str, Any]:
    """confluent-kafka ``Consumer`` settings for ``settings``; ``on_error`` is librdkafka's
    ``error_cb``, ``on_commit`` its offset commit callback."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # As with kafka-python: group mode reports, the source decides (.jumps).
        "auto.offset.reset": settings.auto_offset_reset if settings.assigned else "error",
        # librdkafka's default, stated: both clients learn only committed records.
        "isolation.level": "read_committed",
        # Partitions added to the topic are seen within this (300 s by default).
        "topic.metadata.refresh.interval.ms": int(settings.metadata_max_age_seconds * 1000),
        "client.id": settings.client_id,
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        # Bound the prefetch queue (64 MiB by default) so that the process stays small:
        # peak RSS 121 MB over 10 M batched samples, against 298 MB with 16 MiB fetches
        # into the default queue (bench.memory).
        "max.partition.fetch.bytes": MAX_PARTITION_FETCH_BYTES,
        "fetch.max.bytes": FETCH_MAX_BYTES,
        "queued.max.messages.kbytes": 16 * 1024,
        # Once that queue is full, librdkafka postpones the next fetch by this long,
        # 1 s by default: with batched records the queue fills in one fetch, and the
        # trainer, which drains it in well under a second, would then idle (0.22
        # against 1.27 M samples/s measured with 0.7 ms of work per 1,024-sample
        # record).
        "fetch.queue.backoff.ms": 10,
        "error_cb": on_error,
        "on_commit": on_commit,
        # librdkafka's own log lines go through the guarded Python logger.
        "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
        **settings.security.librdkafka(),
    }
    if settings.protocol_debug:
        config["debug"] = PROTOCOL_DEBUG_CONTEXTS
    if settings.group_instance_id:
        config["group.instance.id"] = settings.group_instance_id
    return config
