"""Tests of scripts/kafka-local and of the broker fixtures in tests/support/kafka_fixtures.py.

The script tests run against brokers of their own, started by the script. The last tests use
the session broker (kafka_broker / kafka_topic fixtures and the broker_stop/broker_start helpers);
with $STREAMSGD_TEST_BOOTSTRAP_SERVERS set, the helper tests fail by design: an external cluster
cannot be stopped and restarted by the harness.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from tests.support.kafka_fixtures import (
    HOST,
    KAFKA_LOCAL,
    KafkaBroker,
    broker_start,
    broker_stop,
    described_name,
    free_port,
    pid_alive,
    port_is_free,
    wait_for,
)

pytestmark = pytest.mark.kafka

HARNESS_VARS = ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_DATA_DIR", "KAFKA_STATE_DIR")


def run(command: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(KAFKA_LOCAL), command],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def script_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HARNESS_VARS}
    env.update(values)
    return env


def produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=10)
    try:
        producer.send(topic, value).get(timeout=60)
    finally:
        producer.close()


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[bytes]:
    """Read from the beginning with a fresh consumer group until `expected` records arrived."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
    finally:
        consumer.close()
    return values


def answers(bootstrap: str) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        return len(admin.describe_cluster()["brokers"]) == 1
    finally:
        admin.close()


def recorded_state(state_dir: Path, port: int) -> dict:
    return json.loads((state_dir / str(port) / "state.json").read_text())


@pytest.fixture(scope="module")
def script_broker(tmp_path_factory: pytest.TempPathFactory):
    """A broker of this module's own (explicit data dir), started and stopped by the script."""
    broker = KafkaBroker(base_dir=tmp_path_factory.mktemp("kafka-local-test"))
    broker.start()
    try:
        yield broker
    finally:
        if broker.pid is not None:
            broker.stop()


def test_start_prints_bootstrap_address_last_and_broker_answers(tmp_path: Path) -> None:
    # Defaults: fresh temporary data dir, controller port chosen by the script.
    port = free_port()
    env = script_env(KAFKA_PORT=str(port), KAFKA_STATE_DIR=str(tmp_path / "state"))
    started = run("start", env)
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        assert started.stdout.strip().splitlines()[-1] == f"{HOST}:{port}"
        state = recorded_state(tmp_path / "state", port)
        assert pid_alive(state["pid"])
        assert state["data_dir_is_temporary"] is True
        assert Path(state["log_file"]).read_text().strip(), "the broker log is empty"

        topic = f"roundtrip-{uuid.uuid4().hex[:8]}"  # auto-created on first produce
        produce(f"{HOST}:{port}", topic, b"hello kafka-local")
        assert consume_all(f"{HOST}:{port}", topic, 1) == [b"hello kafka-local"]

        status = run("status", env, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "answering" in status.stdout
        assert status.stdout.strip().splitlines()[-1] == f"{HOST}:{port}"
    finally:
        stopped = run("stop", env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not pid_alive(state["pid"])
    assert not Path(state["data_dir"]).exists(), "temporary data dir not removed by stop"


def test_second_start_on_the_same_port_fails_and_leaves_the_broker_alone(
    script_broker: KafkaBroker,
) -> None:
    pid = script_broker.pid
    second = script_broker.run_script("start")
    assert second.returncode != 0
    assert "already running" in second.stderr
    assert str(script_broker.port) in second.stderr
    assert script_broker.pid == pid and pid_alive(pid)
    assert answers(script_broker.bootstrap_servers)


def test_start_refuses_a_port_another_process_listens_on(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = script_env(KAFKA_PORT=str(port), KAFKA_STATE_DIR=str(tmp_path / "state"))
        result = run("start", env, timeout=120)
    assert result.returncode != 0
    assert "in use" in result.stderr
    assert not (tmp_path / "state" / str(port) / "state.json").exists()


def test_stop_stops_exactly_that_broker(tmp_path: Path, script_broker: KafkaBroker) -> None:
    port = free_port(exclude=(script_broker.port, script_broker.controller_port))
    env = script_env(KAFKA_PORT=str(port), KAFKA_STATE_DIR=str(tmp_path / "state"))
    started = run("start", env)
    assert started.returncode == 0, started.stderr + started.stdout
    pid = recorded_state(tmp_path / "state", port)["pid"]
    other_pid = script_broker.pid
    assert pid != other_pid and pid_alive(pid) and pid_alive(other_pid)

    stopped = run("stop", env, timeout=120)

    assert stopped.returncode == 0, stopped.stderr
    assert f"pid {pid}" in stopped.stderr
    assert not pid_alive(pid)
    assert port_is_free(port)
    assert pid_alive(other_pid), "stop took down another broker"
    assert answers(script_broker.bootstrap_servers)
    assert run("status", env, timeout=60).returncode == 3
    again = run("stop", env, timeout=60)
    assert again.returncode == 0 and "nothing to stop" in again.stderr


def test_start_failure_is_loud_with_the_broker_log(tmp_path: Path) -> None:
    # A heap too small for the JVM to start: the script must report it, not hang or pretend.
    port = free_port()
    env = script_env(
        KAFKA_PORT=str(port), KAFKA_STATE_DIR=str(tmp_path / "state"), KAFKA_HEAP_OPTS="-Xmx1m"
    )
    result = run("start", env, timeout=300)
    assert result.returncode != 0
    assert "exited with status" in result.stderr
    assert "heap" in result.stderr.lower()  # the JVM's message, from the log tail
    assert f"{HOST}:{port}" not in result.stdout.splitlines()
    assert run("status", env, timeout=60).returncode == 3
    assert port_is_free(port)


def test_fixture_start_fails_rather_than_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_HEAP_OPTS", "-Xmx1m")
    broker = KafkaBroker(base_dir=tmp_path)
    with pytest.raises(pytest.fail.Exception, match="could not start the Kafka broker"):
        broker.start()
    assert not broker.is_running()


def test_restart_keeps_port_and_data(script_broker: KafkaBroker) -> None:
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    produce(script_broker.bootstrap_servers, topic, b"before restart")
    old_pid = script_broker.pid

    script_broker.stop()
    assert not pid_alive(old_pid)
    assert script_broker.start() == script_broker.bootstrap_servers

    assert script_broker.pid != old_pid
    produce(script_broker.bootstrap_servers, topic, b"after restart")
    assert consume_all(script_broker.bootstrap_servers, topic, 2) == [
        b"before restart",
        b"after restart",
    ]


def test_start_after_kill_recovers_the_data(script_broker: KafkaBroker) -> None:
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    produce(script_broker.bootstrap_servers, topic, b"acked before the crash")
    old_pid = script_broker.pid

    script_broker.kill()
    assert not pid_alive(old_pid)
    assert not script_broker.is_running()
    script_broker.start()

    assert consume_all(script_broker.bootstrap_servers, topic, 1) == [b"acked before the crash"]


def test_an_external_broker_cannot_be_stopped_or_restarted() -> None:
    broker = KafkaBroker(bootstrap_servers="kafka.example:9092")
    assert broker.external
    with pytest.raises(pytest.fail.Exception, match="external cluster"):
        broker.stop()
    with pytest.raises(pytest.fail.Exception, match="external cluster"):
        broker.start()
    with pytest.raises(pytest.fail.Exception, match="external cluster"):
        broker.kill()


def test_kafka_topic_makes_fresh_topics_with_visible_metadata(
    kafka_bootstrap: str, kafka_topic
) -> None:
    one = kafka_topic()
    four = kafka_topic(4)
    assert one != four
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = {described_name(t): t for t in admin.describe_topics([one, four])}
    finally:
        admin.close()
    assert len(described[one]["partitions"]) == 1
    assert len(described[four]["partitions"]) == 4
    # Created, not merely named: producing to a partition that only exists in a 4-partition
    # topic works at once.
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        metadata = producer.send(four, b"x", partition=3).get(timeout=30)
    finally:
        producer.close()
    assert metadata.partition == 3


def test_broker_stop_and_start_helpers_restart_the_session_broker_with_its_data(
    kafka_broker: KafkaBroker, kafka_bootstrap: str, kafka_topic
) -> None:
    topic = kafka_topic()
    produce(kafka_bootstrap, topic, b"one")
    old_pid = kafka_broker.pid

    broker_stop()
    assert not pid_alive(old_pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, kafka_broker.port), timeout=5).close()

    assert broker_start() == kafka_bootstrap
    produce(kafka_bootstrap, topic, b"two")
    assert consume_all(kafka_bootstrap, topic, 2) == [b"one", b"two"]


def test_a_test_may_leave_the_session_broker_stopped(kafka_broker: KafkaBroker) -> None:
    broker_stop()
    assert not kafka_broker.is_running()
    # the autouse fixture starts it again after this test; the next test checks that


def test_the_session_broker_is_back_after_a_test_left_it_stopped(
    kafka_broker: KafkaBroker, kafka_bootstrap: str
) -> None:
    assert kafka_broker.is_running()
    assert not kafka_broker.stopped_on_request
    assert answers(kafka_bootstrap)


def test_wait_for_polls_until_the_deadline() -> None:
    with pytest.raises(pytest.fail.Exception, match="never"):
        wait_for(lambda: False, timeout=0.3, what="never")
