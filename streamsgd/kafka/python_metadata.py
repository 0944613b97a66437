"""What kafka-python's metadata says about the topic: its partitions (assigned mode), its
topic id and cluster id (the log identity), and whether the broker's ACLs refuse it.

A mixin of :class:`~streamsgd.kafka.source.KafkaSource`; imports kafka-python, like that
module. Every question names the topic: kafka-python's ``partitions_for_topic`` asks for all
topics when its cache lacks one, and the broker's answer to that just leaves out a topic
its ACLs refuse the principal, as if it did not exist (issue 21, item 5).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka.errors import AuthorizationError, KafkaError, TopicAuthorizationFailedError

from ..training.ports import SourceFailed
from .group import PartitionsUnavailableError
from .identity import LogIdentity, topic_id_text
from .notices import fatal_message

log = logging.getLogger("streamsgd.kafka")


def _named_cluster(consumer: Any) -> Any | None:
    """kafka-python 3's metadata cache (private), which can ask for one topic by name and
    keeps the topics the ACLs refused; None with a client without one (kafka-python 2)."""
    cluster = getattr(consumer, "_cluster", None)
    if cluster is None or not hasattr(cluster, "request_update"):
        return None
    return cluster


def forbid_auto_create(consumer: Any) -> None:
    """Make every metadata request of ``consumer`` say what its configuration says about
    creating the topics it names. kafka-python 3.0 builds its metadata cache without the
    consumer's ``allow_auto_create_topics``, at its own default (True): a request naming the
    topic, which a subscription sends at every refresh, made the broker create a topic
    deleted under the trainer, or one that does not exist yet."""
    cluster = _named_cluster(consumer)
    config = getattr(cluster, "config", None)
    if isinstance(config, dict) and "allow_auto_create_topics" in config:
        config["allow_auto_create_topics"] = consumer.config.get("allow_auto_create_topics", True)


class KafkaPythonMetadata:
    """``_read_partitions`` and ``_describe_log`` of the kafka-python source."""

    topic: str
    settings: Any
    _consumer: Any
    _fatal: str | None

    def _assigned_consumer(self, timeout_seconds: float) -> Any: ...

    def _not_authorized(self, exc: AuthorizationError) -> None: ...

    def _read_partitions(self, timeout_seconds: float) -> list[int]:
        """The topic's partition numbers from a metadata request that names it, [] if the
        topic does not exist; raises :class:`~streamsgd.training.ports.SourceFailed` if the
        ACLs refuse it, :class:`~.group.PartitionsUnavailableError` if the broker did not
        answer within ``timeout_seconds``."""
        consumer = self._assigned_consumer(timeout_seconds)
        cluster = _named_cluster(consumer)
        try:
            if cluster is None:
                return sorted(consumer.partitions_for_topic(self.topic) or ())
            answered = threading.Event()
            # Tracked from now on: the client's periodic refreshes name the topic too (a
            # request already on its way may not: partitions() asks again).
            cluster.add_topic(self.topic)
            cluster.request_update().add_both(lambda _: answered.set())
        except KafkaError as exc:
            raise PartitionsUnavailableError(f"metadata request failed ({exc})") from exc
        if not answered.wait(max(timeout_seconds, 0.1)):
            raise PartitionsUnavailableError("the broker did not answer a metadata request")
        self._end_if_refused(cluster)
        return sorted(cluster.partitions_for_topic(self.topic) or ())

    def _end_if_refused(self, cluster: Any) -> None:
        """SourceFailed if the last metadata answer said the ACLs refuse the topic."""
        if self.topic in cluster.unauthorized_topics:
            self._not_authorized(TopicAuthorizationFailedError({self.topic}))
        if self._fatal is not None:
            raise SourceFailed(fatal_message(self.settings, self._fatal))

    def _describe_log(self) -> LogIdentity | None:
        consumer = self._consumer
        if consumer is None:
            return None
        cluster = _named_cluster(consumer)
        if cluster is None:
            try:
                consumer.partitions_for_topic(self.topic)  # asks the broker if not cached
            except KafkaError as exc:
                log.warning("cannot read the metadata of %s: %s", self.topic, exc)
            return None
        # Ask for the subscribed topic by name, without auto-creation, and read the answer
        # at the next try (the ACLs' refusal ends the run at the next poll).
        if self.topic in cluster.unauthorized_topics:
            self._not_authorized(TopicAuthorizationFailedError({self.topic}))
            return None
        if cluster.partitions_for_topic(self.topic) is None:
            cluster.add_topic(self.topic)  # tracked already once subscribed
            cluster.request_update()
            return None
        return self._cached_identity(consumer)

    def _cached_identity(self, consumer: Any) -> LogIdentity | None:
        """The identity in the client's metadata cache (no request): kafka-python updates it
        at every metadata refresh, before it fetches from a recreated topic."""
        cluster = getattr(consumer, "_cluster", None)  # private in kafka-python 3
        if cluster is None or not hasattr(cluster, "topic_id"):
            return None
        topic_id = cluster.topic_id(self.topic)
        return LogIdentity(
            topic_id_text(topic_id.bytes) if topic_id is not None else None,
            getattr(cluster, "cluster_id", None),
        )
