"""Unrecoverable authentication errors end the run (issue 21 item 5), against the real
broker's SASL_PLAINTEXT listener (mechanism PLAIN), both clients.

Injects: a trainer pointed at the SASL listener with the right user name and a wrong
password, records waiting in the topic. Must hold: it never reports ready (``/readyz`` is
503 whenever it answers: nothing can be learned), and it exits 1 within the bound with one
ERROR line of its own that says authentication failed and what to check, no traceback, and no
spelling of the password it was given. Before this change both clients retried the login forever:
a zombie that a supervisor never restarts."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from pathlib import Path

import pytest

from tests.faults.test_kafka_faults import sasl_train_args, secret_spellings, write_marked_records
from tests.support.kafka_fixtures import SaslListener
from tests.support.kafka_helpers import Processes, Trainer
from tests.support.kafka_ops import CLIENTS

pytestmark = pytest.mark.kafka

EXIT_BOUND_SECONDS = 120


def _readyz_until_exit(trainer: Trainer, timeout: float) -> list[int]:
    """Every /readyz status the trainer answered until it exited (polled; -1 while its HTTP
    port is not known or it did not answer)."""
    statuses: list[int] = []
    port_line = re.compile(r"serving /metrics .* on http://[^\s:]+:(\d+)")
    deadline = time.monotonic() + timeout
    while trainer.alive() and time.monotonic() < deadline:
        if trainer._port is None and (match := port_line.search(trainer.log_text())):
            trainer._port = int(match.group(1))
        statuses.append(trainer.readyz() if trainer._port is not None else -1)
        time.sleep(0.2)  # polling pace, not synchronisation: the loop waits on the exit
    return statuses


@pytest.mark.parametrize("client", CLIENTS)
def test_wrong_credentials_end_the_run_with_one_line_and_never_ready(
    client: str,
    kafka_bootstrap: str,
    kafka_sasl: SaslListener,
    kafka_topic,
    tmp_path: Path,
    processes: Processes,
) -> None:
    topic = kafka_topic()
    write_marked_records(kafka_bootstrap, topic, 20)
    password = f"wrong-{secrets.token_hex(8)}"
    group = f"auth-{uuid.uuid4().hex[:8]}"
    trainer = processes.trainer(
        [*sasl_train_args(kafka_sasl, topic, group, tmp_path / "ck"), "--kafka-client", client],
        env={"STREAMSGD_SASL_PASSWORD": password},
    )
    statuses = _readyz_until_exit(trainer, EXIT_BOUND_SECONDS)
    code = trainer.wait_exit(10)
    output = trainer.log_text()
    assert code == 1, trainer.diagnostics()
    assert 200 not in statuses, f"/readyz answered 200 with wrong credentials: {statuses}"
    # The trainer's own verdict (the clients log their connection failures themselves).
    errors = [line for line in output.splitlines() if line.startswith("streamsgd: error:")]
    assert len(errors) == 1, trainer.diagnostics()
    assert "authentication failed" in errors[0].lower(), errors[0]
    assert "Traceback" not in output, trainer.diagnostics()
    for spelling in secret_spellings(kafka_sasl.username, password):
        assert spelling not in output, f"the log shows the password as {spelling!r}"
    assert not (tmp_path / "ck" / "checkpoint.json").exists(), "nothing was learned to save"
