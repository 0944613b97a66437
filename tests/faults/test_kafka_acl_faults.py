"""Authorization refused by the broker's ACLs ends the run (issue 21 item 5), against the real
broker's SASL_PLAINTEXT listener with the KRaft StandardAuthorizer, both clients.

Injects: a trainer logged in as a user (not a super user) that an ACL refuses every operation
on the topic or on the consumer group; and a trainer that learned under that user when an ACL
then refuses it the group (its next offset commit, or heartbeat, is refused). Must hold: it
exits 1 within the bound with one ERROR line of its own that says it is not authorized, names
the refusal (TOPIC_/GROUP_AUTHORIZATION_FAILED) and the resource, no traceback, no spelling of
the password; refused from the start it never reports ready. Before this change both clients
waited forever, ready or silent: a zombie that a supervisor never restarts."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.faults.test_kafka_auth_faults import _readyz_until_exit
from tests.faults.test_kafka_faults import (
    model_samples,
    sasl_train_args,
    secret_spellings,
    write_marked_records,
)
from tests.support.kafka_fixtures import SaslListener, deny_acl
from tests.support.kafka_helpers import Processes, Trainer, load_checkpoint, samples_seen
from tests.support.kafka_ops import CLIENTS

pytestmark = pytest.mark.kafka

EXIT_BOUND_SECONDS = 120
ERRORS = {"topic": "TOPIC_AUTHORIZATION_FAILED", "group": "GROUP_AUTHORIZATION_FAILED"}


def _start(
    processes: Processes, sasl: SaslListener, client: str, topic: str, group: str, ck: Path
) -> Trainer:
    user = sasl.restricted()
    return processes.trainer(
        [
            *sasl_train_args(user, topic, group, ck, "--checkpoint-interval-seconds", 1),
            "--kafka-client",
            client,
        ],
        env={"STREAMSGD_SASL_PASSWORD": user.password},
    )


def _assert_one_line_refusal(trainer: Trainer, sasl: SaslListener, resource: str, name: str):
    output = trainer.log_text()
    errors = [line for line in output.splitlines() if line.startswith("streamsgd: error:")]
    assert len(errors) == 1, trainer.diagnostics()
    line = errors[0]
    assert "not authorized" in line and ERRORS[resource] in line, line
    assert f"{resource} {name}" in line and f"User:{sasl.restricted_username}" in line, line
    assert "Traceback" not in output, trainer.diagnostics()
    for spelling in secret_spellings(sasl.restricted_username, sasl.restricted_password):
        assert spelling not in output, f"the log shows the password as {spelling!r}"


@pytest.mark.parametrize("resource", ["topic", "group"])
@pytest.mark.parametrize("client", CLIENTS)
def test_a_topic_or_group_the_acls_refuse_ends_the_run_with_one_line_and_never_ready(
    client: str,
    resource: str,
    kafka_bootstrap: str,
    kafka_sasl: SaslListener,
    kafka_topic,
    tmp_path: Path,
    processes: Processes,
) -> None:
    topic = kafka_topic()
    write_marked_records(kafka_bootstrap, topic, 20)
    group = f"acl-{uuid.uuid4().hex[:8]}"
    name = topic if resource == "topic" else group
    deny_acl(kafka_bootstrap, kafka_sasl.restricted_username, resource, name)
    trainer = _start(processes, kafka_sasl, client, topic, group, tmp_path / "ck")
    statuses = _readyz_until_exit(trainer, EXIT_BOUND_SECONDS)
    code = trainer.wait_exit(10)
    assert code == 1, trainer.diagnostics()
    assert 200 not in statuses, f"/readyz answered 200 while refused: {statuses}"
    _assert_one_line_refusal(trainer, kafka_sasl, resource, name)
    assert not (tmp_path / "ck" / "checkpoint.json").exists(), "nothing was learned to save"


@pytest.mark.parametrize("client", CLIENTS)
def test_acls_that_refuse_the_group_under_a_running_trainer_end_the_run(
    client: str,
    kafka_bootstrap: str,
    kafka_sasl: SaslListener,
    kafka_topic,
    tmp_path: Path,
    processes: Processes,
) -> None:
    topic = kafka_topic()
    write_marked_records(kafka_bootstrap, topic, 16)
    group = f"acl-{uuid.uuid4().hex[:8]}"
    ck = tmp_path / "ck"
    trainer = _start(processes, kafka_sasl, client, topic, group, ck)
    trainer.wait_for(lambda: model_samples(trainer) == 16, EXIT_BOUND_SECONDS, "16 learned")
    trainer.wait_for(lambda: samples_seen(load_checkpoint(ck)) == 16, 120, "their checkpoint")
    # READ on the group is what commits, heartbeats and joins need; the topic stays readable.
    deny_acl(kafka_bootstrap, kafka_sasl.restricted_username, "group", group, "READ")
    write_marked_records(kafka_bootstrap, topic, 16)  # a step to checkpoint and commit
    code = trainer.wait_exit(EXIT_BOUND_SECONDS)
    assert code == 1, trainer.diagnostics()
    _assert_one_line_refusal(trainer, kafka_sasl, "group", group)
    # The last checkpoint stands (the run's positions are never lost by the refusal).
    assert samples_seen(load_checkpoint(ck)) >= 16
