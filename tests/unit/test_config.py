"""The one configuration: its defaults, environment variables and ``--help`` agree for every
option; the Python API shares its defaults; a config file, the environment and flags take
precedence in that order; bad files are one-line errors; ``--print-config`` masks secrets;
without a terminal a run logs progress lines, as text or as JSON."""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamsgd.cli import build_parser, build_service
from streamsgd.cli.build import build_model
from streamsgd.cli.main import parse
from streamsgd.cli.train import config_from_args
from streamsgd.codec import Decoder
from streamsgd.config import TrainConfig, flatten, train_config, train_options
from streamsgd.config.options import BOOLEAN, HASH_BITS, PORT, TEXT, OptionSpec, specs
from streamsgd.config.produce import ProduceConfig, ProduceSynthetic
from streamsgd.core.model import OnlineLogisticRegression
from streamsgd.telemetry.logs import configure_logging
from streamsgd.training.ports import Sensor
from streamsgd.training.trainer import ServiceConfig
from tests.unit.test_cli import REPO, run_cli

SPECS = [spec for _, spec in train_options()]


def subparser(name: str) -> Any:
    parser = build_parser(environ={})
    return parser._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]


def other_value(spec: OptionSpec) -> tuple[str, Any]:
    """A valid value other than the default: (as text, as parsed)."""
    if spec.choices:
        choice = next(c for c in spec.choices if c != spec.default)
        return choice, choice
    if spec.value_type is BOOLEAN:
        return "true", True
    if spec.value_type is TEXT:
        return "some-value", "some-value"
    if spec.value_type is HASH_BITS:
        return "4", 4
    if spec.value_type is PORT:
        return "1234", 1234
    if spec.value_type.kind is int:
        value = 7 if spec.default != 7 else 8
        return str(value), value
    value = 0.25 if spec.default != 0.25 else 0.3
    return str(value), value


@pytest.fixture(scope="module")
def train_help() -> str:
    result = run_cli("train", "--help")
    assert result.returncode == 0
    return " ".join(result.stdout.decode().split())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_default_environment_and_help_agree(spec: OptionSpec, train_help: str) -> None:
    action = next(a for a in subparser("train")._actions if spec.flag in a.option_strings)
    assert action.default == spec.default
    assert getattr(getattr(TrainConfig(), _section_of(spec)), spec.name) == spec.default
    assert spec.flag in train_help
    assert f"[env: {spec.env_var}]" in train_help
    shown = f"(default: {spec.default})"
    if spec.default in (None, False) or spec.secret:
        assert f"[env: {spec.env_var}] (default:" not in train_help
    else:
        assert f"[env: {spec.env_var}] {shown}" in train_help
    text, value = other_value(spec)
    args = build_parser(environ={spec.env_var: text}).parse_args(["train"])
    assert getattr(args, spec.name) == value
    flag_args = [spec.flag] if spec.value_type is BOOLEAN else [spec.flag, text]
    args = build_parser(environ={}).parse_args(["train", *flag_args])
    assert getattr(args, spec.name) == value


def _section_of(spec: OptionSpec) -> str:
    return next(section for section, s in train_options() if s.name == spec.name)


def test_every_help_line_comes_from_the_config(train_help: str) -> None:
    flags = [a for a in subparser("train")._actions if a.option_strings and a.dest != "help"]
    declared = {spec.flag for spec in SPECS} | {"--config", "--print-config"}
    assert {a.option_strings[0] for a in flags} == declared
    assert "[env: STREAMSGD_CONFIG]" in train_help


def test_produce_parser_defaults_are_the_config_defaults() -> None:
    produce = subparser("produce")
    for spec in specs(ProduceConfig):
        action = next(a for a in produce._actions if spec.flag in a.option_strings)
        assert action.default == spec.default, spec.name
        assert action.required == spec.required, spec.name
    synthetic = produce._subparsers._group_actions[0].choices["synthetic"]
    for spec in specs(ProduceSynthetic):
        action = next(a for a in synthetic._actions if spec.flag in a.option_strings)
        assert action.default == spec.default, spec.name


def test_python_api_shares_the_defaults() -> None:
    config = TrainConfig()
    service = ServiceConfig()
    # train and evaluate default to auto (issue 19); a loop without a controller, the Python
    # API's, keeps the fixed m = 32 that was the default of both before.
    assert service.batch_size == 32 and config.minibatch.batch_size == "auto"
    assert service.online_block_size == config.minibatch.online_block_size == 32
    assert service.max_samples is config.source.max_samples is None
    assert service.max_wait_seconds is config.minibatch.max_wait_ms is None
    assert service.checkpoint_interval_seconds == config.checkpoint.checkpoint_interval_seconds
    assert service.checkpoint_every_updates == config.checkpoint.checkpoint_every_updates
    model_defaults = {
        name: p.default
        for name, p in inspect.signature(OnlineLogisticRegression).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    renamed = {"learning_rate_decay": "decay", "learning_rate_power": "power"}
    shared = [
        "learning_rate_schedule",
        "learning_rate_decay",
        "learning_rate_power",
        "l2",
        "l1",
        "reduction",
        "stats_smoothing",
        "clip_norm_ratio",
        "max_weight_norm",
    ]
    for name in shared:
        keyword = renamed.get(name, name)
        assert model_defaults[keyword] == getattr(config.model, name), name
    # train's default learning rate is auto (issue 19): AdaGrad at η₀ = 0.1, the Python API's
    # rate; --optimizer auto with a numeric learning rate is the Python API's SGD.
    assert config.model.learning_rate == "auto" and config.optimizer == "adagrad"
    assert model_defaults["learning_rate"] == build_model(config).learning_rate == 0.1
    fixed = train_config(batch_size=32, learning_rate=0.1)
    assert model_defaults["optimizer"] == fixed.optimizer == "sgd"
    decoder_default = inspect.signature(Decoder).parameters["max_record_bytes"].default
    assert decoder_default == config.source.max_record_bytes
    weight_default = inspect.signature(Decoder).parameters["max_sample_weight"].default
    assert weight_default == config.source.max_sample_weight


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "streamsgd.toml"
    path.write_text(text)
    return str(path)


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[minibatch]\nbatch_size = 4\nonline_block_size = 64\n"
        "[model]\nlearning_rate = 0.2\noptimizer = 'adagrad'\nl2 = 1\n"
        "[logging]\nlog_format = 'json'\nprogress = 'never'\n"
        "[kafka]\nkafka_protocol_debug = true\ngroup_id = 'from-file'\n",
    )
    env = {
        "STREAMSGD_CONFIG": path,
        "STREAMSGD_BATCH_SIZE": "8",
        "STREAMSGD_OPTIMIZER": "sgd",
        "STREAMSGD_GROUP_ID": "from-env",
    }
    result = run_cli("train", "--print-config", "--batch-size", "16", "--l2", "0.5", env=env)
    assert result.returncode == 0, result.stderr.decode()
    printed = tomllib.loads(result.stdout.decode())
    # flags > environment > file > defaults, for ints, floats, choices, strings and booleans
    assert printed["minibatch"]["batch_size"] == 16
    assert printed["model"]["l2"] == 0.5
    assert printed["model"]["optimizer"] == "sgd"
    assert printed["kafka"]["group_id"] == "from-env"
    assert printed["minibatch"]["online_block_size"] == 64
    assert printed["model"]["learning_rate"] == 0.2
    assert printed["logging"]["log_format"] == "json"
    assert printed["kafka"]["kafka_protocol_debug"] is True
    assert printed["checkpoint"]["checkpoint_interval_seconds"] == 10.0


def test_printed_configuration_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("STREAMSGD_")]:
        monkeypatch.delenv(var)
    argv = ["train", "--batch-size", "5", "--drift", "0.5", "--source", "synthetic"]
    wanted = config_from_args(parse(argv))
    result = run_cli("train", "--print-config", *argv[1:])
    assert result.returncode == 0
    path = write(tmp_path, result.stdout.decode())
    assert config_from_args(parse(["train", "--config", path])) == wanted


def test_print_config_masks_secrets() -> None:
    result = run_cli(
        "train",
        "--print-config",
        "--ssl-password",
        "flag-secret-42",
        env={"STREAMSGD_SASL_PASSWORD": "hunter2-secret", "STREAMSGD_SASL_USERNAME": "alice"},
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "hunter2-secret" not in out and "flag-secret-42" not in out
    printed = tomllib.loads(out)
    assert printed["kafka"]["sasl_password"] == "***"
    assert printed["kafka"]["ssl_password"] == "***"
    assert printed["kafka"]["sasl_username"] == "alice"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[model]\nlearning_rat = 0.1\n", "learning_rat"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("batch_size = 4\n", "batch_size"),
        ("[minibatch]\nbatch_size = 0\n", "batch_size"),
        ("[minibatch]\nbatch_size = 'many'\n", "batch_size"),
        ("[model]\noptimizer = 'adam'\n", "adam"),
        ("[model]\nlearning_rate = nan\n", "learning_rate"),
        ("[minibatch\n", "TOML"),
    ],
)
def test_bad_config_files_give_one_line_and_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    result = run_cli("train", "--config", write(tmp_path, text), "--max-samples", "10")
    err = result.stderr.decode()
    assert result.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("streamsgd: error:") and needle in lines[0], lines[0]


def test_forgetting_adagrad_at_m_1_with_hashing_is_refused_in_one_line(tmp_path: Path) -> None:
    """The lazy sparse m = 1 loop cannot decay every hashed coordinate each sample."""
    args = ["--source", "file", "--path", str(tmp_path / "in.jsonl"), "--hash-bits", "8"]
    result = run_cli("train", *args, "--batch-size", "1", "--adagrad-half-life-samples", "1e4")
    err = result.stderr.decode()
    assert result.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "--adagrad-half-life-samples needs --batch-size >= 2" in lines[0], lines[0]
    # accepted: a minibatch, or m = 1 on dense features, or never forgetting
    train_config(source="file", path="x", hash_bits=8, batch_size=2, adagrad_half_life_samples=1e4)
    train_config(source="file", path="x", n_features=3, batch_size=1, adagrad_half_life_samples=1e4)
    train_config(source="file", path="x", hash_bits=8, batch_size=1, adagrad_half_life_samples=0)
    config = train_config(batch_size=8, optimizer="adagrad", adagrad_half_life_samples=500.0)
    assert build_model(config).adagrad_half_life_samples == 500.0  # passed to the model


def test_missing_config_file_is_one_line() -> None:
    result = run_cli("train", "--config", "/does/not/exist.toml")
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines() == [
        "streamsgd: error: cannot read config file /does/not/exist.toml: No such file or directory"
    ]


def test_build_service_runs_what_the_config_says() -> None:
    seen: list[int] = []

    class Count(Sensor):
        def batch_applied(self, stats: Any, model: Any, duration_seconds: float) -> None:
            seen.append(stats.n_samples)

    config = train_config(
        source="synthetic", n_features=3, batch_size=10, max_samples=95, progress="never"
    )
    assert flatten(config)["batch_size"] == 10
    service, resources = build_service(config, sensors=[Count()], metrics=False)
    try:
        service.run()
    finally:
        resources.close()
    assert seen == [10] * 9 + [5]
    assert service.model.n_features == 3 and resources.registry is None


def test_kafka_protocol_debug_lets_client_logs_through_redacted() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handler = configure_logging(
        "INFO", "text", kafka_protocol_debug=True, secrets=["pa55word"], stream=stream
    )
    try:
        logging.getLogger("kafka.conn").debug("SaslAuthenticate auth_bytes=b'\\x00u\\x00pa55word'")
        configure_logging("INFO", "text", secrets=["pa55word"], stream=stream)
        logging.getLogger("kafka.conn").info("connected")  # quiet again: WARNING
    finally:
        for h in [h for h in root.handlers if getattr(h, "streamsgd", False)]:
            root.removeHandler(h)
        logging.getLogger("kafka").setLevel(logging.NOTSET)
    assert handler not in root.handlers
    text = stream.getvalue()
    assert "SaslAuthenticate" in text and "pa55word" not in text and "***" in text
    assert "connected" not in text


# ---------------------------------------------------------------------------- without a terminal
PROGRESS_KEYS = {"samples", "samples_per_second", "updates", "progressive_log_loss", "rejected"}


def run_until_progress_lines(*extra: str, count: int = 2) -> tuple[int, list[str]]:
    """Start a synthetic training with stderr piped (not a terminal), wait until ``count``
    progress lines arrived, stop it with SIGTERM; returns the exit code and stderr lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSGD_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamsgd",
            "train",
            "--source",
            "synthetic",
            "--max-samples",
            "1000000000",
            "--metrics-port",
            "0",
            "--log-interval-seconds",
            "0.5",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while sum("progress:" in line for line in seen) < count:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, f"exited {proc.wait()} early:\n" + "\n".join(seen)
            seen.append(line)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        while (line := lines.get(timeout=120)) is not None:
            seen.append(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, seen


def test_progress_lines_without_a_terminal() -> None:
    code, lines = run_until_progress_lines()
    assert code == 0, "\n".join(lines)
    progress = [line for line in lines if "progress:" in line]
    assert len(progress) >= 2
    for line in progress:
        assert " INFO streamsgd.progress: progress: " in line
        for word in ("samples/s", "updates", "progressive log loss", "rejected"):
            assert word in line, line
    assert any("done:" in line for line in lines)


def test_json_log_format_is_one_object_per_line() -> None:
    code, lines = run_until_progress_lines("--log-format", "json")
    assert code == 0, "\n".join(lines)
    documents = [json.loads(line) for line in lines if line.strip()]
    assert documents
    for document in documents:
        assert {"ts", "level", "logger", "message"} <= set(document), document
    progress = [d for d in documents if d["logger"] == "streamsgd.progress"]
    assert len(progress) >= 2
    for document in progress:
        assert PROGRESS_KEYS <= set(document), document
        assert document["level"] == "INFO" and document["samples"] > 0
    assert progress[-1]["samples"] >= progress[0]["samples"]


def test_progress_log_paces_its_lines_and_reports_the_lag(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from streamsgd.telemetry.progress import ProgressLog

    now = [0.0]
    progress = ProgressLog(10.0, clock=lambda: now[0])
    model = OnlineLogisticRegression(2)
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    stats = model.learn_batch(X, np.array([1.0, 0.0]))
    progress.batch_applied(stats, model, 0.0)
    with caplog.at_level(logging.INFO, logger="streamsgd.progress"):
        now[0] = 9.9
        progress.tick(model)
        assert not caplog.records
        now[0] = 10.0
        progress.set_consumer_lag(1234)
        progress.tick(model)
    (record,) = caplog.records
    assert "lag 1,234 records" in record.getMessage()
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["samples"] == 2 and fields["updates"] == 1 and fields["lag_records"] == 1234
    assert fields["samples_per_second"] == pytest.approx(0.2)
    assert fields["progressive_log_loss"] == pytest.approx(stats.sums.loss_sum / 2)


def test_auto_keeps_the_latency_budget_and_a_fixed_m_stays_exact() -> None:
    """Under --batch-size auto a partial minibatch goes once its first sample is as old as
    --max-batch-latency-seconds; a fixed m never takes partial minibatches for age."""
    from streamsgd.cli.build import service_config

    auto = config_from_args(parse(["train", "--max-batch-latency-seconds", "0.25"]))
    assert service_config(auto).max_batch_age_seconds == 0.25
    fixed = config_from_args(parse(["train", "--batch-size", "32", "--learning-rate", "0.1"]))
    assert service_config(fixed).max_batch_age_seconds is None
