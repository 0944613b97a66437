"""Configuration bounds (docs/operations.md#what-is-guaranteed): batch sizes bounded, --print-config
a flag only, a misspelt STREAMSGD_* variable named. Real subprocesses (the environment is read at
start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def streamsgd(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSGD_")}
    return subprocess.run(
        [sys.executable, "-m", "streamsgd", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**base, **(env or {})},
        timeout=300,
    )


TRAIN = (
    "train",
    *(
        "--batch-size",
        32,
        "--learning-rate",
        0.1,
    ),  # fixed m (the default auto needs m_min <= m_max)
    "--source",
    "synthetic",
    "--max-samples",
    64,
    "--metrics-port",
    0,
    "--progress",
    "never",
)


@pytest.mark.parametrize(
    "flag", ["--batch-size", "--max-batch-size", "--min-batch-size", "--online-block-size"]
)
def test_batch_sizes_above_2_to_the_20_are_one_line_exit_2(flag: str) -> None:
    """Injects: a batch size of 10^12 (docs/operations.md#what-is-guaranteed: accepted, memory grew
    without bound). Must hold: exit 2 with one line naming the flag and the bound; 2^20 accepted."""
    result = streamsgd(*TRAIN, flag, 10**12, "--print-config")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("streamsgd: error: "), lines
    assert flag in lines[0] and "1048576" in lines[0]
    assert streamsgd(*TRAIN, flag, 2**20, "--print-config").returncode == 0


def test_print_config_from_the_environment_does_not_turn_train_into_print() -> None:
    """Injects: STREAMSGD_PRINT_CONFIG=1 (docs/operations.md#what-is-guaranteed: `train` printed and
    exited 0 without training). Must hold: train trains (its done line), prints no configuration."""
    result = streamsgd(*TRAIN, env={"STREAMSGD_PRINT_CONFIG": "1"})
    assert result.returncode == 0, result.stderr
    assert "[minibatch]" not in result.stdout
    assert "done: 64 samples" in result.stderr


def test_a_misspelt_environment_variable_is_a_warning_naming_the_closest() -> None:
    """Injects: STREAMSGD_BATCH_SIZ=4 (docs/operations.md#what-is-guaranteed: silently ignored).
    Must hold: a warning names it and the closest option's variable; the run goes on."""
    result = streamsgd(*TRAIN, env={"STREAMSGD_BATCH_SIZ": "4"})
    assert result.returncode == 0, result.stderr
    assert (
        "streamsgd: warning: STREAMSGD_BATCH_SIZ is not a streamsgd option and is ignored "
        "(did you mean STREAMSGD_BATCH_SIZE?)"
    ) in result.stderr


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("streamsgd: error: "), lines
    return lines[0]


def test_a_secret_of_the_wrong_type_in_the_config_file_is_not_echoed(tmp_path: Path) -> None:
    """Injects: ``sasl_password = 12345678`` (an integer) in the TOML file
    (docs/operations.md#what-is-guaranteed: the error showed the password). Must hold: one line,
    exit 2, the value masked."""
    config = tmp_path / "c.toml"
    config.write_text("[kafka]\nsasl_password = 12345678\n")
    line = one_error_line(streamsgd("train", "--config", config, "--print-config"))
    assert "12345678" not in line and "***" in line


def test_a_model_larger_than_the_machine_is_one_line_not_a_traceback() -> None:
    """Injects: --n-features 10^10 (docs/operations.md#what-is-guaranteed: a MemoryError traceback).
    Must hold: one line naming the size, exit 2."""
    line = one_error_line(streamsgd(*TRAIN, "--n-features", 10**10))
    assert "GB" in line and "--n-features" in line


def test_inspect_refuses_a_fifo_named_checkpoint_json(tmp_path: Path) -> None:
    """Injects: a FIFO named checkpoint.json (docs/operations.md#what-is-guaranteed: inspect blocked
    forever). Must hold: one line, exit 2, at once."""
    os.mkfifo(tmp_path / "checkpoint.json")
    line = one_error_line(streamsgd("inspect", tmp_path))
    assert "not a regular file" in line
