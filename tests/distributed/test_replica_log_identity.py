"""Scale-out, a topic recreated while the replica job was down (issue 21, item 1): the job's
checkpoint holds the topic id, and a restart against another log refuses with the single
trainer's one line, unless ``--accept-new-topic-log`` (then the new log from its beginning).
Before: a replica job stored no topic id and resumed the new log at the old offsets (the
first 40 of its 64 records skipped without a trace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.replica_job import N_FEATURES, ReplicaJob, final_state, train_options
from tests.faults.test_kafka_log_faults import recreate_topic
from tests.support.kafka_fixtures import create_topic
from tests.support.kafka_helpers import produce_synthetic

CLIENTS = ["kafka-python", "confluent"]


def _learned(job: ReplicaJob) -> int:
    document = job.model(0)
    return -1 if document is None else int(document["n_samples_seen"])


@pytest.mark.parametrize("client", CLIENTS)
def test_a_topic_recreated_while_the_replica_job_was_down_is_refused_unless_accepted(
    client: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, 1)
    produce_synthetic(kafka_bootstrap, topic, 40, N_FEATURES, seed=21)
    checkpoint_dir = tmp_path / "ckpt"
    options = train_options(kafka_bootstrap, topic, checkpoint_dir, kafka_client=client)
    first = ReplicaJob(2, options, tmp_path / "first.log")
    try:
        first.wait_for(lambda: _learned(first) == 40, "the job to learn 40 records", 240)
        assert first.stop() == 0, first.diagnostics()
    finally:
        first.kill()
    state = final_state(checkpoint_dir)
    old_id = state["source"].get("topic_id")
    assert old_id, state["source"]

    recreate_topic(kafka_bootstrap, topic)
    produce_synthetic(kafka_bootstrap, topic, 64, N_FEATURES, seed=22)
    refused = ReplicaJob(2, options, tmp_path / "refused.log")
    try:
        code = refused.wait_exit(240)
    finally:
        refused.kill()
    assert code == 2, refused.diagnostics()  # the single trainer's usage error, every replica
    text = refused.log_text()
    errors = [line for line in text.splitlines() if line.startswith("streamsgd: error: ")]
    assert errors and all("--accept-new-topic-log" in line for line in errors), text
    assert all("is not the log the checkpoint's positions belong to" in e for e in errors), text
    assert "Traceback" not in text, text
    assert int(final_state(checkpoint_dir)["model"]["n_samples_seen"]) == 40  # nothing learned

    accepted = ReplicaJob(2, {**options, "accept_new_topic_log": True}, tmp_path / "new.log")
    try:
        accepted.wait_for(lambda: _learned(accepted) == 104, "the 64 records of the new log", 240)
        assert accepted.stop() == 0, accepted.diagnostics()
    finally:
        accepted.kill()
    state = final_state(checkpoint_dir)
    assert state["source"]["topic_id"] not in (None, old_id), state["source"]
    assert state["offsets"] == {f"{topic}:0": 64}
