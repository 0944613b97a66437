"""The deployment against real services: Kafka broker, streamsgd, producer and Prometheus.

A real Kafka broker (tests/support/kafka_fixtures.py) feeds a running ``streamsgd train`` (with the
Kafka client compose configures) through ``streamsgd produce``; a real Prometheus server of the
version compose deploys (built by scripts/install-prometheus) scrapes it with a config derived from
deploy/prometheus/prometheus.yml and evaluates deploy/prometheus/alerts.yml. Then every expression
of the Grafana dashboard must return at least one series, and every alert expression must parse and
evaluate. Nothing here sleeps for a fixed time: each wait polls a condition until a deadline and
then fails with what it saw.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_deploy_static import compose, environment_of, prometheus_tool
from tests.support.helpers import cli_flags
from tests.support.kafka_helpers import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus]

REPO = Path(__file__).resolve().parents[2]
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD_DIR = REPO / "deploy" / "grafana" / "dashboards"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
JOB = "streamsgd"
N_FEATURES = 10
BAD_RECORDS = 7


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class StackProcesses:
    """The stack's subprocesses in this test, each with a log file; all stopped at the end.
    (Not conftest's ``processes``, which starts trainers and producers for the Kafka tests.)"""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO,
            )
        self.procs[name] = (proc, log)

    def check_running(self, *names: str) -> None:
        for name in names:
            proc, log = self.procs[name]
            if proc.poll() is not None:
                pytest.fail(
                    f"{name} exited with code {proc.returncode}:\n{tail(log)}", pytrace=False
                )

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{tail(log)}" for name, (_p, log) in self.procs.items())

    def stop_all(self) -> None:
        for _name, (proc, _log) in reversed(list(self.procs.items())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, (proc, _log) in self.procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def poll(
    condition: Callable[[], Any],
    timeout: float,
    what: Callable[[], str] | str,
    procs: StackProcesses,
    interval: float = 0.5,
) -> Any:
    """Call `condition` until it returns a truthy value; fail after `timeout` seconds with
    what was awaited (``what`` may be a callable, evaluated only then) and the logs."""
    if isinstance(what, str):
        return wait_until(condition, timeout, what, procs.logs, interval)
    return wait_until(
        condition, timeout, "the condition below", lambda: f"{what()}\n{procs.logs()}", interval
    )


class PrometheusAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry a JSON error body
            return json.loads(exc.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def scalar(self, expr: str) -> float:
        """The value of a query expected to return one series (NaN when it returns none)."""
        result = self.query(expr)
        if result.get("status") != "success" or not result["data"]["result"]:
            return float("nan")
        return float(result["data"]["result"][0]["value"][1])


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        stack = list(json.loads(path.read_text(encoding="utf-8"))["panels"])
        while stack:
            panel = stack.pop(0)
            stack.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                out.append((f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
    assert out, "no dashboard expressions found"
    return out


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def local_scrape_config(metrics_port: int) -> dict[str, Any]:
    """The shipped config with the target moved to this machine and a 1 s scrape interval:
    same job name, metrics path and scheme, and the shipped rule file loaded."""
    shipped = yaml.safe_load(PROM_CONFIG.read_text(encoding="utf-8"))
    config = copy.deepcopy(shipped)
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    assert len(jobs) == 1, f"the shipped config has no single {JOB!r} job"
    job = jobs[0]
    assert [t for sc in job["static_configs"] for t in sc["targets"]] == ["streamsgd:8000"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    config["scrape_configs"] = [job]
    return config


def dockerfile_healthcheck() -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, flags=re.M)
    assert match, "no exec-form HEALTHCHECK in deploy/Dockerfile"
    return json.loads(match.group(1))


def produce_bad_records(bootstrap: str, topic: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        bad = [b"{not json", b'{"x": [1, 2], "y": 1}', b'{"x": [0,0,0,0,0,0,0,0,0,0], "y": 7}']
        for i in range(BAD_RECORDS):
            producer.send(topic, bad[i % len(bad)])
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[StackProcesses]:
    procs = StackProcesses(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


# --------------------------------------------------------------------------- the test


def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], stack: StackProcesses, tmp_path: Path
) -> None:
    prometheus = prometheus_tool("prometheus")
    kafka_client = environment_of(compose()["services"]["streamsgd"])["STREAMSGD_KAFKA_CLIENT"]
    topic = kafka_topic(partitions=1)
    dead_letter_topic = kafka_topic(partitions=1)
    metrics_port = free_port()
    prometheus_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSGD_")}
    streamsgd = [sys.executable, "-m", "streamsgd"]

    # The producer: the same command the compose `producer` service runs, pointed here.
    stack.start(
        "producer",
        [
            *streamsgd,
            "produce",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
            "--rate",
            "2000",
            "--progress",
            "never",
            "synthetic",
            "--n",
            "200000",
            "--n-features",
            str(N_FEATURES),
            "--seed",
            "1",
        ],
        env=env,
    )
    stack.start(
        "trainer",
        [
            *streamsgd,
            "train",
            *map(
                str,
                cli_flags(
                    source="kafka",
                    bootstrap_servers=kafka_bootstrap,
                    topic=topic,
                    kafka_client=kafka_client,
                    group_id=f"g-{uuid.uuid4().hex[:8]}",
                    batch_size=16,
                    learning_rate=0.1,  # the fixed step it was written against (not auto)
                    n_features=N_FEATURES,
                    metrics_host="127.0.0.1",
                    metrics_port=metrics_port,
                    checkpoint_dir=tmp_path / "checkpoints",
                    dead_letter_topic=dead_letter_topic,
                    checkpoint_interval_seconds=1,
                    progress="never",
                ),
            ),
        ],
        env=env,
    )

    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(local_scrape_config(metrics_port)), encoding="utf-8")
    stack.start(
        "prometheus",
        [
            prometheus,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
    )
    api = PrometheusAPI(prometheus_port)

    # The Dockerfile's HEALTHCHECK command, run against the live trainer.
    def healthy() -> bool:
        stack.check_running("trainer")
        check = subprocess.run(
            [sys.executable, *dockerfile_healthcheck()[1:]],
            env={**env, "STREAMSGD_METRICS_PORT": str(metrics_port)},
            capture_output=True,
            timeout=30,
            check=False,
        )
        return check.returncode == 0

    poll(healthy, 120, "the Dockerfile HEALTHCHECK to pass against the trainer", stack)

    def ready() -> bool:
        stack.check_running("prometheus")
        return api.ready()

    poll(ready, 60, "Prometheus /-/ready", stack)

    # Records that fail validation, so the rejected and dead-letter panels carry real counts.
    produce_bad_records(kafka_bootstrap, topic)

    # Several scrapes of a trainer that is learning.
    def scraped() -> bool:
        stack.check_running("trainer", "prometheus")
        scrapes = api.scalar(f'count_over_time(up{{job="{JOB}"}}[5m])')
        up = api.scalar(f'up{{job="{JOB}"}}')
        learned = api.scalar(f'streamsgd_samples_learned_total{{job="{JOB}"}}')
        updates = api.scalar(f'increase(streamsgd_updates_total{{job="{JOB}"}}[1m])')
        return scrapes >= 8 and up == 1 and learned > 0 and updates > 0

    poll(
        scraped,
        180,
        lambda: (
            "8 scrapes of a learning trainer; targets: "
            + json.dumps(api.get("/api/v1/targets").get("data", {}).get("activeTargets", []))[:2000]
        ),
        stack,
    )

    # Every dashboard expression returns at least one series.
    exprs = dashboard_exprs()
    status: dict[str, str] = {}

    def all_have_data() -> bool:
        stack.check_running("trainer", "prometheus")
        for name, expr in exprs:
            result = api.query(expr)
            if result.get("status") != "success":
                status[name] = f"error {result.get('errorType')}: {result.get('error')}  ({expr})"
            elif not result["data"]["result"]:
                status[name] = f"no series  ({expr})"
            else:
                status[name] = "ok"
        return all(s == "ok" for s in status.values())

    poll(
        all_have_data,
        120,
        lambda: (
            "every dashboard query to return data; failing:\n"
            + "\n".join(f"  {n}: {s}" for n, s in status.items() if s != "ok")
        ),
        stack,
    )

    # The rejected records went through the pipeline and show up where the dashboard looks.
    def rejected_counted() -> bool:
        rejected = api.scalar(f'sum(streamsgd_records_rejected_total{{job="{JOB}"}})')
        dead = api.scalar(f'streamsgd_dead_letter_records_total{{job="{JOB}"}}')
        return rejected >= BAD_RECORDS and dead >= BAD_RECORDS

    poll(
        rejected_counted,
        60,
        lambda: (
            f"{BAD_RECORDS} rejected and dead-lettered records; Prometheus has "
            + json.dumps(api.query('{__name__=~"streamsgd_(records_rejected|dead_letter).*"}'))
        ),
        stack,
    )

    # Every alert expression parses and evaluates (an empty result is fine).
    for rule in alert_rules():
        result = api.query(rule["expr"])
        assert result.get("status") == "success", (
            f"alert {rule.get('alert')}: {result.get('errorType')}: {result.get('error')}"
        )
    # ... and Prometheus itself loaded the shipped rule file and evaluates every rule cleanly.
    names = {rule["alert"] for rule in alert_rules() if "alert" in rule}

    def rules_evaluated() -> dict[str, str] | None:
        groups = api.get("/api/v1/rules").get("data", {}).get("groups", [])
        health = {r["name"]: r.get("health", "?") for g in groups for r in g["rules"]}
        if set(health) >= names and all(health[n] == "ok" for n in names):
            return health
        rules_evaluated.last = health  # type: ignore[attr-defined]
        return None

    poll(
        rules_evaluated,
        60,
        lambda: (
            "every alert rule evaluated with health ok: "
            + str(getattr(rules_evaluated, "last", {}))
        ),
        stack,
    )

    # Issue 20: a healthy single trainer exports the replica-agreement and step-manifest
    # counters at 0 (so the Replicas row's panels have data), and their alerts stay inactive.
    for counter in (
        "streamsgd_replica_divergences_total",
        "streamsgd_manifest_write_failures_total",
    ):
        assert api.scalar(f'{counter}{{job="{JOB}"}}') == 0.0, counter
    groups = api.get("/api/v1/rules").get("data", {}).get("groups", [])
    states = {r["name"]: r.get("state") for g in groups for r in g["rules"]}
    for alert in ("StreamsgdReplicaDivergence", "StreamsgdManifestWriteFailing"):
        assert states.get(alert) == "inactive", (alert, states.get(alert))
