"""Replicas whose login the broker refuses end the job (issue 21 item 5), under real
``mpiexec`` against the real broker's SASL_PLAINTEXT listener, both clients.

Injects: a job of 2 replicas started with the right user name and a wrong password, records
waiting in the topic. Must hold: ``mpiexec`` exits non-zero within the bound; a replica that
met the refusal said why in one ``streamsgd: error:`` line (authentication failed, what to
check), exited 1, and mpiexec ended the others; no other error line, no traceback, no spelling
of the password. Nothing was learned, so no checkpoint. Before: each replica printed its line
and exited 1, but the last one's MPI Finalize after the failure could hang until its alarm
killed it, a signal ``mpiexec --with-ft ulfm`` tolerates: the job exited 0 (seen in 1 of 2
runs), and a supervisor would not restart it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.distributed.replica_job import ReplicaJob, train_options
from tests.faults.test_kafka_faults import secret_spellings, write_marked_records
from tests.support.kafka_fixtures import SaslListener, create_topic
from tests.support.kafka_ops import CLIENTS

pytestmark = pytest.mark.kafka

REPLICAS = 2
EXIT_BOUND_SECONDS = 240  # two replicas' logins and MPI's exit on a loaded 2-core machine


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
    job = ReplicaJob(REPLICAS, options, tmp_path / "job.log")
    try:
        code = job.wait_exit(EXIT_BOUND_SECONDS)
    finally:
        job.kill()
    output = job.log_text()
    assert code != 0, job.diagnostics()
    # The replica that met the refusal says why; mpiexec then ends the job, including a
    # replica that had not asked the broker anything yet (none says anything else).
    errors = [line for line in output.splitlines() if line.startswith("streamsgd: error:")]
    assert 1 <= len(errors) <= REPLICAS, job.diagnostics()
    for line in errors:
        assert "authentication failed" in line.lower(), line
    assert "Traceback" not in output, job.diagnostics()
    for spelling in secret_spellings(kafka_sasl.username, password):
        assert spelling not in output, f"the job's output shows the password as {spelling!r}"
    assert not (tmp_path / "ck" / "checkpoint.json").exists(), "nothing was learned to save"
