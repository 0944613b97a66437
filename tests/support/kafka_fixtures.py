"""pytest plugin: a real Apache Kafka broker for the integration tier.

Load it from the top-level conftest with ``pytest_plugins = ["tests.support.kafka_fixtures"]``.

Fixtures
    kafka_broker     (session)  KafkaBroker: the broker the tests talk to. Started through
                                ``scripts/kafka-local start`` on a free port with its own state and
                                data directories under pytest's tmp dir, stopped at session end.
                                With $STREAMSGD_TEST_BOOTSTRAP_SERVERS set, that cluster is used
                                instead and nothing is started (it cannot be stopped/restarted).
    kafka_bootstrap  (session)  str, "127.0.0.1:PORT" (or the external bootstrap servers).
    kafka_topic      (function) make(partitions: int = 1) -> str: creates a fresh, uniquely named
                                topic and returns once its metadata (every partition with a
                                leader) is visible.
    kafka_sasl       (session)  SaslListener: the session broker's second listener,
                                SASL_PLAINTEXT with mechanism PLAIN on its own port, a super
                                user and a restricted user (``.restricted()``), each with a
                                random password (fails with an external cluster). The broker
                                checks ACLs (KRaft StandardAuthorizer): the PLAINTEXT
                                listener's principal and the first user are super users; the
                                restricted one may use whatever no ACL names, and deny_acl()
                                takes a right from it.

A broker of a test module's own
    own_broker(base_dir, host="127.0.0.1")  context manager: a KafkaBroker listening on `host`
                                (e.g. a bridge address network namespaces reach), stopped on exit

Helpers for other tests (they act on the session broker)
    broker_stop()    stop the session broker (SIGTERM; data dir and port are kept)
    broker_kill()    SIGKILL it instead (a crash; data dir and port are kept)
    broker_start()   start it again on the same port with the same data
    session_broker() the KafkaBroker of the session
    create_topic(bootstrap_servers, partitions=1, name=None, ...) / wait_for_topic(...)
    deny_acl(bootstrap_servers, username, resource, name, operation="ALL")  an ACL that
                     refuses a SASL user an operation on a topic or group, applied on return

If the broker cannot start the fixtures fail (with the tail of the broker log); they never skip.
A test that stops the broker and does not start it again gets it restarted after it finishes.

Environment
    STREAMSGD_TEST_BOOTSTRAP_SERVERS   use this cluster instead of starting a broker
    STREAMSGD_TEST_REPLICATION_FACTOR  replication factor of created topics (default 1)
    STREAMSGD_TEST_KAFKA_START_TIMEOUT seconds for ``kafka-local start`` (default 900; the first
                                       run resolves the jars from Maven Central)
    plus everything scripts/kafka-local reads (STREAMSGD_KAFKA_CACHE, KAFKA_HEAP_OPTS, ...).
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO / "scripts" / "kafka-local"
HOST = "127.0.0.1"
ENV_BOOTSTRAP = "STREAMSGD_TEST_BOOTSTRAP_SERVERS"
ENV_REPLICATION = "STREAMSGD_TEST_REPLICATION_FACTOR"
ENV_START_TIMEOUT = "STREAMSGD_TEST_KAFKA_START_TIMEOUT"

# Variables of kafka-local that the harness sets itself; inherited values must not leak in.
_HARNESS_VARS = (
    "KAFKA_HOST",
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "KAFKA_DATA_DIR",
    "KAFKA_STATE_DIR",
    "KAFKA_SASL_PORT",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_OTHER_USERS",
    "KAFKA_AUTHORIZER",
)


@dataclass(frozen=True)
class SaslListener:
    """The broker's SASL_PLAINTEXT listener (mechanism PLAIN) and a user of it: the super
    user, or (``restricted()``) one whose rights the broker's ACLs decide."""

    bootstrap_servers: str
    username: str
    password: str = field(repr=False)
    restricted_username: str = ""
    restricted_password: str = field(default="", repr=False)

    def restricted(self) -> SaslListener:
        """The same listener, logged in as the restricted user (not a super user: an ACL
        that names a resource decides what it may do there; see :func:`deny_acl`)."""
        return SaslListener(
            self.bootstrap_servers, self.restricted_username, self.restricted_password
        )


# --------------------------------------------------------------------------- ports, processes


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(exclude: tuple[int, ...] = (), host: str = HOST) -> int:
    """A free port on ``host`` (127.0.0.1), below the kernel's ephemeral range when possible.

    Outside the ephemeral range no outgoing connection can take the port while the broker is
    down for a restart."""
    lo, _hi = _ephemeral_range()
    if lo > 12000:
        rng = random.Random()
        for _ in range(200):
            port = rng.randrange(10000, lo)
            if port not in exclude and port_is_free(port, host):
                return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return port


def pid_alive(pid: int) -> bool:
    """True if any thread of `pid` is alive. An unreaped zombie counts as dead."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    for tid in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if stat[stat.rindex(")") + 2] not in "ZX":
            return True
    return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1):
    """Poll `condition` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
        time.sleep(interval)


def _tail(path: Path | None, lines: int = 80) -> str:
    if path is None:
        return "(no log file)"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log file at {path})"


# --------------------------------------------------------------------------- the broker


class KafkaBroker:
    """A broker for tests: one started by scripts/kafka-local, or an external cluster.

    A local broker keeps its port, controller port and data directory across stop()/start(), so
    a test can take the broker away mid-stream and bring the same broker (same topics, offsets
    and committed group offsets) back."""

    def __init__(
        self,
        *,
        bootstrap_servers: str | None = None,
        base_dir: Path | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        host: str = HOST,
    ):
        self.start_output = ""
        # set by stop(), cleared by start(): the autouse fixture restarts a broker a test stopped
        self.stopped_on_request = False
        if bootstrap_servers is not None:
            self.external = True
            self.host = host
            self.bootstrap_servers = bootstrap_servers
            self.port: int | None = None
            self.controller_port: int | None = None
            self.state_dir: Path | None = None
            self.data_dir: Path | None = None
            self.sasl: SaslListener | None = None
            return
        if base_dir is None:
            raise ValueError("a local KafkaBroker needs base_dir")
        self.external = False
        # The address every listener binds and advertises ($KAFKA_HOST of kafka-local):
        # 127.0.0.1, or a bridge's address for brokers other network namespaces reach.
        self.host = host
        self.port = port or free_port(host=host)
        self.controller_port = controller_port or free_port(exclude=(self.port,), host=host)
        self.bootstrap_servers = f"{host}:{self.port}"
        # A second listener with SASL/PLAIN, for the tests that log in (issue 9: no secret
        # in the logs). The password is random: a test can search all output for it.
        sasl_port = free_port(exclude=(self.port, self.controller_port), host=host)
        self.sasl = SaslListener(
            f"{host}:{sasl_port}",
            "streamsgd-test",
            f"pw-{secrets.token_hex(12)}",
            "streamsgd-restricted",
            f"pw-{secrets.token_hex(12)}",
        )
        self.state_dir = Path(base_dir) / "state"
        self.data_dir = Path(base_dir) / "data"

    def __repr__(self) -> str:
        kind = "external" if self.external else f"local, pid {self.pid}"
        return f"KafkaBroker({self.bootstrap_servers}, {kind})"

    # -- paths and state recorded by kafka-local

    @property
    def instance_dir(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / str(self.port)

    @property
    def log_file(self) -> Path | None:
        return None if self.instance_dir is None else self.instance_dir / "broker.log"

    def recorded_state(self) -> dict | None:
        if self.instance_dir is None:
            return None
        try:
            return json.loads((self.instance_dir / "state.json").read_text())
        except FileNotFoundError:
            return None

    @property
    def pid(self) -> int | None:
        state = self.recorded_state()
        return int(state["pid"]) if state else None

    def is_running(self) -> bool:
        """For a local broker: its recorded process is alive. External: assumed running."""
        if self.external:
            return True
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def log_tail(self, lines: int = 80) -> str:
        return _tail(self.log_file, lines)

    # -- running scripts/kafka-local against this broker

    def script_env(self, **overrides: str) -> dict[str, str]:
        self._require_local("run scripts/kafka-local for")
        env = {k: v for k, v in os.environ.items() if k not in _HARNESS_VARS}
        env.update(
            KAFKA_HOST=self.host,
            KAFKA_PORT=str(self.port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            KAFKA_DATA_DIR=str(self.data_dir),
            KAFKA_STATE_DIR=str(self.state_dir),
        )
        if self.sasl is not None:
            env.update(
                KAFKA_SASL_PORT=self.sasl.bootstrap_servers.rsplit(":", 1)[1],
                KAFKA_SASL_USERNAME=self.sasl.username,
                KAFKA_SASL_PASSWORD=self.sasl.password,
                KAFKA_SASL_OTHER_USERS=(
                    f"{self.sasl.restricted_username}:{self.sasl.restricted_password}"
                ),
                # ACLs are checked (issue 21: a principal the ACLs refuse ends the run); the
                # PLAINTEXT listener's principal and the first SASL user are super users, so
                # every test that sets no ACL runs as before.
                KAFKA_AUTHORIZER="standard",
            )
        env.update(overrides)
        return env

    def run_script(
        self, command: str, timeout: float = 120.0, **env_overrides: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KAFKA_LOCAL), command],
            env=self.script_env(**env_overrides),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> str:
        """Start the broker (same port and data as before); return the bootstrap address.

        Fails the calling test/fixture, with the broker log, if it does not come up."""
        self._require_local("start")
        timeout = float(os.environ.get(ENV_START_TIMEOUT) or 900)
        try:
            proc = self.run_script("start", timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.run_script("stop")
            pytest.fail(
                f"`kafka-local start` did not return within {timeout:.0f}s\n"
                f"stdout:\n{exc.stdout}\nstderr:\n{exc.stderr}\n"
                f"broker log {self.log_file}:\n{self.log_tail()}",
                pytrace=False,
            )
        self.start_output = proc.stdout
        self.stopped_on_request = False
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines or lines[-1] != self.bootstrap_servers:
            pytest.fail(
                f"could not start the Kafka broker on {self.bootstrap_servers} "
                f"(`kafka-local start` exit {proc.returncode})\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n"
                f"broker log {self.log_file}:\n{self.log_tail()}",
                pytrace=False,
            )
        return self.bootstrap_servers

    def stop(self) -> None:
        """Stop the broker process (SIGTERM, then SIGKILL); its data directory is kept."""
        self._require_local("stop")
        pid = self.pid
        self.stopped_on_request = True
        proc = self.run_script("stop", timeout=120)
        if proc.returncode != 0 or (pid is not None and pid_alive(pid)):
            pytest.fail(
                f"`kafka-local stop` failed (exit {proc.returncode}, pid {pid} "
                f"alive={pid is not None and pid_alive(pid)})\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}",
                pytrace=False,
            )

    def kill(self) -> None:
        """SIGKILL the broker process (a crash, no controlled shutdown); data dir and port kept.

        start() brings it back (Kafka recovers its logs)."""
        self._require_local("kill")
        pid = self.pid
        if pid is None or not pid_alive(pid):
            pytest.fail(f"no running broker to kill on {self.bootstrap_servers}", pytrace=False)
        self.stopped_on_request = True
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), 30, f"broker pid {pid} to die after SIGKILL")
        self.run_script("stop")  # clears the recorded state (the process is already gone)

    def restart(self) -> str:
        self.stop()
        return self.start()

    def ensure_running(self) -> None:
        if not self.external and not self.is_running():
            self.start()

    def _require_local(self, action: str) -> None:
        if self.external:
            pytest.fail(
                f"cannot {action} the Kafka broker: the tests use an external cluster "
                f"(${ENV_BOOTSTRAP}={self.bootstrap_servers}). This test needs the broker the "
                f"harness starts itself; unset ${ENV_BOOTSTRAP} to run it.",
                pytrace=False,
            )


# --------------------------------------------------------------------------- topics


def _admin(bootstrap_servers: str):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="streamsgd-tests", request_timeout_ms=30000
    )


def topic_ready(admin, name: str, partitions: int) -> bool:
    """The topic's metadata lists `partitions` partitions, each with a leader."""
    try:
        described = admin.describe_topics([name])
    except Exception:  # e.g. UnknownTopicOrPartitionError while metadata propagates
        return False
    for topic in described:
        if described_name(topic) != name or topic.get("error_code", 0) != 0:
            continue
        parts = topic.get("partitions") or []
        return len(parts) == partitions and all(described_leader(p) >= 0 for p in parts)
    return False


def described_name(topic: dict) -> str | None:
    """Topic name in a KafkaAdminClient.describe_topics() entry (kafka-python 3.x: "name",
    2.x: "topic")."""
    return topic.get("name", topic.get("topic"))


def described_leader(partition: dict) -> int:
    """Leader of a describe_topics() partition entry ("leader_id" in 3.x, "leader" in 2.x)."""
    leader = partition.get("leader_id", partition.get("leader"))
    return -1 if leader is None else int(leader)


def wait_for_topic(bootstrap_servers: str, name: str, partitions: int, timeout: float = 60.0):
    admin = _admin(bootstrap_servers)
    try:
        wait_for(lambda: topic_ready(admin, name, partitions), timeout, f"topic {name!r}")
    finally:
        admin.close()


def unique_topic_name(prefix: str = "t") -> str:
    clean = re.sub(r"[^A-Za-z0-9-]+", "-", prefix).strip("-")[:100] or "t"
    return f"{clean}-{uuid.uuid4().hex[:10]}"


def create_topic(
    bootstrap_servers: str,
    partitions: int = 1,
    name: str | None = None,
    *,
    timeout: float = 60.0,
    replication_factor: int | None = None,
    admin=None,
) -> str:
    """Create a topic (a fresh unique name unless given) and wait until its metadata is visible."""
    from kafka.admin import NewTopic

    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    name = name or unique_topic_name()
    rf = replication_factor or int(os.environ.get(ENV_REPLICATION) or 1)
    own = admin is None
    admin = admin or _admin(bootstrap_servers)
    try:
        admin.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=rf)],
            timeout_ms=int(timeout * 1000),
        )
        wait_for(lambda: topic_ready(admin, name, partitions), timeout, f"topic {name!r}")
    finally:
        if own:
            admin.close()
    return name


# --------------------------------------------------------------------------- ACLs


def deny_acl(
    bootstrap_servers: str,
    username: str,
    resource: str,
    name: str,
    operation: str = "ALL",
    timeout: float = 120.0,
) -> None:
    """Refuse SASL user ``username`` ``operation`` (an ``ACLOperation`` name: "ALL",
    "READ", ...) on the ``resource`` ("topic" or "group") called ``name``, through the
    PLAINTEXT listener (a super user); returns once the broker lists the ACL (its
    authorizer applies what it lists)."""
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )

    kind = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}[resource]
    pattern = ResourcePattern(kind, name, ACLResourcePatternType.LITERAL)
    acl = ACL(f"User:{username}", "*", ACLOperation[operation], ACLPermissionType.DENY, pattern)
    wanted = ACLFilter(
        f"User:{username}",
        None,
        ACLOperation.ANY,
        ACLPermissionType.DENY,
        ResourcePatternFilter(kind, name, ACLResourcePatternType.LITERAL),
    )
    admin = _admin(bootstrap_servers)
    try:
        created = admin.create_acls([acl])
        if created["failed"]:
            pytest.fail(f"could not create the ACL {acl}: {created['failed']}", pytrace=False)
        wait_for(lambda: bool(admin.describe_acls(wanted)[0]), timeout, f"the broker to list {acl}")
    finally:
        admin.close()


# --------------------------------------------------------------------------- session helpers

_SESSION_BROKER: KafkaBroker | None = None


def session_broker() -> KafkaBroker:
    if _SESSION_BROKER is None:
        pytest.fail(
            "no session Kafka broker: request the `kafka_broker` or `kafka_bootstrap` fixture "
            "before calling broker_stop()/broker_start()",
            pytrace=False,
        )
    return _SESSION_BROKER


def broker_stop() -> None:
    """Stop the session broker mid-test. Port and data are kept for broker_start()."""
    session_broker().stop()


def broker_kill() -> None:
    """SIGKILL the session broker mid-test (a crash). Port and data are kept for broker_start()."""
    session_broker().kill()


def broker_start() -> str:
    """Start the session broker again (same port, same data); return its bootstrap address."""
    return session_broker().start()


# --------------------------------------------------------------------------- a broker of its own


@contextmanager
def own_broker(base_dir: Path, host: str = HOST) -> Iterator[KafkaBroker]:
    """A broker of the caller's own (not the session's), listening on ``host`` — e.g. a
    bridge address that network namespaces reach — started and, whatever happens, stopped.
    For a module fixture; it fails (never skips) if the broker cannot start, and it cannot
    stand in for an external cluster (``$STREAMSGD_TEST_BOOTSTRAP_SERVERS`` is ignored)."""
    broker = KafkaBroker(base_dir=base_dir, host=host)
    try:
        broker.start()
        yield broker
    finally:
        if broker.pid is not None:
            broker.stop()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    global _SESSION_BROKER
    external = os.environ.get(ENV_BOOTSTRAP, "").strip()
    if external:
        broker = KafkaBroker(bootstrap_servers=external)
        _SESSION_BROKER = broker
        try:
            yield broker
        finally:
            _SESSION_BROKER = None
        return
    broker = KafkaBroker(base_dir=tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
        _SESSION_BROKER = broker
        yield broker
    finally:
        _SESSION_BROKER = None
        if broker.pid is not None:
            broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_sasl(kafka_broker: KafkaBroker) -> SaslListener:
    if kafka_broker.sasl is None:
        kafka_broker._require_local("log in with SASL to")
    assert kafka_broker.sasl is not None
    return kafka_broker.sasl


@pytest.fixture
def kafka_topic(
    kafka_broker: KafkaBroker, request: pytest.FixtureRequest
) -> Iterator[Callable[..., str]]:
    admin = _admin(kafka_broker.bootstrap_servers)
    prefix = request.node.name

    def make(partitions: int = 1) -> str:
        return create_topic(
            kafka_broker.bootstrap_servers,
            partitions,
            unique_topic_name(prefix),
            admin=admin,
        )

    try:
        yield make
    finally:
        admin.close()


@pytest.fixture(autouse=True)
def _kafka_broker_restored() -> Iterator[None]:
    """After a test that stopped the session broker (and did not start it again), restart it
    so later tests get a broker. A broker that died on its own is not restarted: that is a bug
    the following tests should show."""
    yield
    broker = _SESSION_BROKER
    if broker is not None and not broker.external and broker.stopped_on_request:
        if not broker.is_running():
            broker.start()
