"""The trainer never creates the topic it reads (issue 21, item 9: "kafka-python re-creates a
topic deleted under it (broker auto-create)"), against the real broker, whose
``auto.create.topics.enable`` is on (Kafka's default).

Injects: a kafka-python consumer-group source (as ``streamsgd train`` builds it) and an
assigned-mode one (the replicas'), each on a topic that does not exist, polled until the
broker answered a metadata request that names the topic. Must hold: the topic still does not
exist. Before: kafka-python 3.0 sends every metadata request at its cache's own default,
automatic creation on, whatever ``allow_auto_create_topics=False`` the consumer was given: the
subscription's first request created the topic (for a topic deleted under a running trainer,
a new, empty log that the trainer then reads). The assigned case guards the replicas'
partition list, which now names the topic too (an all-topics request never created one)."""

from __future__ import annotations

import logging
import uuid

import pytest
from kafka.admin import KafkaAdminClient

from streamsgd.kafka.group import PartitionsUnavailableError
from streamsgd.kafka.source import KafkaSource
from streamsgd.training.ports import SourceFailed
from tests.support.kafka_fixtures import unique_topic_name
from tests.support.kafka_helpers import wait_until

pytestmark = pytest.mark.kafka


def _exists(bootstrap: str, topic: str) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamsgd-tests")
    try:
        return topic in admin.list_topics()
    finally:
        admin.close()


@pytest.mark.parametrize("assigned", [False, True], ids=["group", "assigned"])
def test_asking_for_a_missing_topic_never_creates_it(
    assigned: bool, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kafka.cluster")
    topic = unique_topic_name("never-created")
    source = KafkaSource(kafka_bootstrap, topic, f"g-{uuid.uuid4().hex[:8]}", assigned=assigned)

    def answered() -> bool:
        """The broker answered a request naming the topic: not found, or created."""
        try:
            source.partitions(0.5) if assigned else source.poll(0.2)
        except (PartitionsUnavailableError, SourceFailed):
            pass
        said = any(
            topic in r.getMessage() and "not found" in r.getMessage() for r in caplog.records
        )
        return said or _exists(kafka_bootstrap, topic)

    try:
        wait_until(answered, 120, f"the broker's answer about {topic}")
    finally:
        source.close()
    assert not _exists(kafka_bootstrap, topic), f"asking for {topic} created it"
