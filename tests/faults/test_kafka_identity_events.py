"""Confluent's live identity check on the client's events, not only on the interval (issue 21
item 1, the gap left: "before it learns a record of the new log" held only within
``--lag-interval-seconds``).

Injects: a confluent trainer with ``--lag-interval-seconds 3600`` (so the periodic identity
check never comes again after the start) and ``--metadata-max-age-seconds 1``, caught up
after 40 records; the topic deleted, and created again with 64 records once the trainer
logged that librdkafka revoked it (its metadata saw the topic gone). Must hold: the
assignment that brings the topic back (an event, no metadata round trip per poll) makes the
trainer check the log before it returns a record: exit 1 with one line naming the replaced
topic, no record of the new log learned (the last checkpoint holds the 40 samples of the old
one). Before this change the check ran only on the interval: the trainer learned the new log.

Not covered, and not coverable without a round trip: a topic deleted and recreated between
two of librdkafka's metadata refreshes gives no event at all (no consume error, no
rebalance, no offset reset: observed with this test's settings when the recreation follows
the deletion at once); only the check every ``--lag-interval-seconds`` catches it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.faults.test_kafka_log_faults import checkpoint_samples, product_tracebacks
from tests.support.kafka_fixtures import create_topic
from tests.support.kafka_helpers import Processes, wait_until
from tests.support.kafka_ops import model_samples, samples, train_args, write_samples


def _delete_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamsgd-tests")
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


def _create_again(bootstrap: str, topic: str) -> None:
    from kafka.errors import TopicAlreadyExistsError

    def created() -> bool:
        try:
            create_topic(bootstrap, 1, topic)
        except TopicAlreadyExistsError:
            return False  # the deletion is still under way
        return True

    wait_until(created, 240, f"{topic} to be created again", interval=0.5)


def test_a_recreated_topic_is_caught_at_its_reassignment_not_at_the_interval(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path, processes: Processes
) -> None:
    topic = kafka_topic()
    X, y = samples(104, seed=31)
    write_samples(kafka_bootstrap, topic, X[:40], y[:40])
    checkpoint = tmp_path / "ck"
    args = train_args(kafka_bootstrap, "confluent", topic, checkpoint)
    events_only = ["--lag-interval-seconds", 3600, "--metadata-max-age-seconds", 1]
    trainer = processes.trainer([*args, "--checkpoint-interval-seconds", 0.2, *events_only])
    trainer.wait_for(lambda: checkpoint_samples(checkpoint) == 40, 120, "a checkpoint of 40")

    _delete_topic(kafka_bootstrap, topic)
    trainer.wait_for(lambda: "partitions revoked" in trainer.log_text(), 120, "the revocation")
    _create_again(kafka_bootstrap, topic)
    write_samples(kafka_bootstrap, topic, X[40:], y[40:])
    assert trainer.wait_exit(120) == 1, trainer.diagnostics()
    errors = [line for line in trainer.log_text().splitlines() if "streamsgd: error" in line]
    assert len(errors) == 1 and "was replaced" in errors[0], trainer.diagnostics()
    assert not product_tracebacks(trainer.log_text()), trainer.log_text()
    assert checkpoint_samples(checkpoint) == 40


def test_a_topic_recreated_between_two_metadata_refreshes_is_caught_before_a_record(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path, processes: Processes
) -> None:
    """Injects: a confluent trainer caught up after 40 records, with neither the interval
    check (``--lag-interval-seconds 3600``) nor a metadata refresh (``--metadata-max-age-
    seconds 3600``) due; the trainer stopped (SIGSTOP: librdkafka fetches nothing, refreshes
    nothing), the topic deleted and created again with 64 records, the trainer continued
    (SIGCONT) well within its session timeout. From librdkafka's side that is a recreation
    between two refreshes: its next fetch at offset 40 finds records there. Must hold: exit 1
    with one line naming the replaced topic, and no record of the new log learned (the model
    and every checkpoint stay at 40 samples). Before: no client event at all, and the trainer
    learned offsets 40-63 of the new log, ready, until the next interval check."""
    topic = kafka_topic()
    X, y = samples(104, seed=37)
    write_samples(kafka_bootstrap, topic, X[:40], y[:40])
    checkpoint = tmp_path / "ck"
    args = train_args(kafka_bootstrap, "confluent", topic, checkpoint)
    no_refresh = ["--lag-interval-seconds", 3600, "--metadata-max-age-seconds", 3600]
    trainer = processes.trainer([*args, "--checkpoint-interval-seconds", 0.2, *no_refresh])
    trainer.wait_for(lambda: checkpoint_samples(checkpoint) == 40, 120, "a checkpoint of 40")

    os.kill(trainer.pid, signal.SIGSTOP)
    try:
        _delete_topic(kafka_bootstrap, topic)
        _create_again(kafka_bootstrap, topic)
        write_samples(kafka_bootstrap, topic, X[40:], y[40:])
    finally:
        os.kill(trainer.pid, signal.SIGCONT)

    def ended_or_learned() -> bool:
        return not trainer.alive() or model_samples(trainer) > 40

    wait_until(ended_or_learned, 120, "the trainer to end (or learn the new log)")
    assert trainer.wait_exit(60) == 1, f"learned {model_samples(trainer)}\n{trainer.diagnostics()}"
    errors = [line for line in trainer.log_text().splitlines() if "streamsgd: error" in line]
    assert len(errors) == 1 and "was replaced" in errors[0], trainer.diagnostics()
    assert not product_tracebacks(trainer.log_text()), trainer.log_text()
    assert checkpoint_samples(checkpoint) == 40
