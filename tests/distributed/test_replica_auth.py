"""Replicas whose login or topic the broker refuses end the job (issue 21 item 5), under
real ``mpiexec`` against the real broker's SASL_PLAINTEXT listener, both clients.

Injects: a job of 2 replicas started with the right user name and a wrong password, records
waiting in the topic. Must hold: ``mpiexec`` exits non-zero within the bound; a replica that
met the refusal said why in one ``streamsgd: error:`` line (authentication failed, what to
check), exited 1, and mpiexec ended the others; no other error line, no traceback, no spelling
of the password. Nothing was learned, so no checkpoint. Before: each replica printed its line
and exited 1, but the last one's MPI Finalize after the failure could hang until its alarm
killed it, a signal ``mpiexec --with-ft ulfm`` tolerates: the job exited 0 (seen in 1 of 2
runs), and a supervisor would not restart it.

Injects (second test): a job of 2 replicas logged in as a user that an ACL refuses every
operation on the topic (the broker's StandardAuthorizer). Must hold: the same, with the line
saying the principal is not authorized (TOPIC_AUTHORIZATION_FAILED), naming the principal,
the topic and the grant to add. Before: kafka-python's replicas listed the partitions with
an all-topics metadata request, whose answer just leaves a refused topic out: the job ended
after the partition wait with "no partitions ... the topic does not exist", the wrong reason.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.distributed.replica_job import ReplicaJob, train_options
from tests.faults.test_kafka_faults import secret_spellings, write_marked_records
from tests.support.kafka_fixtures import SaslListener, create_topic, deny_acl
from tests.support.kafka_ops import CLIENTS

pytestmark = pytest.mark.kafka

REPLICAS = 2
EXIT_BOUND_SECONDS = 240  # two replicas' logins and MPI's exit on a loaded 2-core machine


def _run_to_refusal(options: dict, tmp_path: Path) -> tuple[ReplicaJob, list[str]]:
    """Runs the job until it exits; checks a non-zero exit and 1 to N error lines, no
    traceback; returns the job and its ``streamsgd: error:`` lines."""
    job = ReplicaJob(REPLICAS, options, tmp_path / "job.log")
    try:
        code = job.wait_exit(EXIT_BOUND_SECONDS)
    finally:
        job.kill()
    output = job.log_text()
    assert code != 0, job.diagnostics()
    errors = [line for line in output.splitlines() if line.startswith("streamsgd: error:")]
    assert 1 <= len(errors) <= REPLICAS, job.diagnostics()
    assert "Traceback" not in output, job.diagnostics()
    return job, errors


@pytest.mark.parametrize("client", CLIENTS)
def test_replicas_with_a_refused_login_all_exit_with_one_line(
    client: str, kafka_bootstrap: str, kafka_sasl: SaslListener, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, REPLICAS)
    write_marked_records(kafka_bootstrap, topic, 20)
    password = f"wrong-{secrets.token_hex(8)}"
    options = train_options(
        kafka_sasl.bootstrap_servers,
        topic,
        tmp_path / "ck",
        dead_letter_topic=None,
        kafka_client=client,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=kafka_sasl.username,
        sasl_password=password,  # a flag: the job's environment is not passed to the ranks
    )
    # The replica that met the refusal says why; mpiexec then ends the job, including a
    # replica that had not asked the broker anything yet (none says anything else).
    job, errors = _run_to_refusal(options, tmp_path)
    output = job.log_text()
    for line in errors:
        assert "authentication failed" in line.lower(), line
    for spelling in secret_spellings(kafka_sasl.username, password):
        assert spelling not in output, f"the job's output shows the password as {spelling!r}"
    assert not (tmp_path / "ck" / "checkpoint.json").exists(), "nothing was learned to save"


@pytest.mark.parametrize("client", CLIENTS)
def test_replicas_refused_the_topic_by_an_acl_exit_naming_the_refusal(
    client: str, kafka_bootstrap: str, kafka_sasl: SaslListener, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, REPLICAS)
    write_marked_records(kafka_bootstrap, topic, 20)
    user = kafka_sasl.restricted()
    deny_acl(kafka_bootstrap, user.username, "topic", topic)
    options = train_options(
        user.bootstrap_servers,
        topic,
        tmp_path / "ck",
        dead_letter_topic=None,
        kafka_client=client,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=user.username,
        sasl_password=user.password,  # a flag: the job's environment is not passed to the ranks
    )
    job, errors = _run_to_refusal(options, tmp_path)
    output = job.log_text()
    for line in errors:
        assert "not authorized" in line and "TOPIC_AUTHORIZATION_FAILED" in line, line
        assert f"User:{user.username}" in line and f"READ on topic {topic}" in line, line
        assert "grant it" in line, line
    for spelling in secret_spellings(user.username, user.password):
        assert spelling not in output, f"the job's output shows the password as {spelling!r}"
    assert not (tmp_path / "ck" / "checkpoint.json").exists(), "nothing was learned to save"
