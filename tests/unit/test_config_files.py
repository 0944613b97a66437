"""Configuration files and ``--print-config`` at their edges
(docs/operations.md#what-is-guaranteed): text that TOML cannot take from JSON's escapes, bytes that
are not UTF-8, a NUL in a value."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.unit.test_cli import run_cli


def one_line_error(result: subprocess.CompletedProcess[bytes], message: str) -> None:
    stderr = result.stderr.decode()
    lines = stderr.strip().splitlines()
    assert result.returncode == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("streamsgd: error: ") and message in lines[0]


@pytest.mark.parametrize("text", ["ü😀", "tab\there", 'quote" back\\slash', "del\x7f"])
def test_printed_strings_read_back_as_toml(text: str) -> None:
    """A non-BMP character was printed as JSON's surrogate pair, which TOML refuses."""
    argv = ["train", "--print-config", "--source", "file", "--n-features", "2", "--path", text]
    result = run_cli(*argv)
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout.decode())["source"]["path"] == text


def test_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"[minibatch]\nbatch_size = 3\n# \xff\xfe\n")
    one_line_error(run_cli("train", "--config", str(path), "--print-config"), "not valid UTF-8")


def test_nul_in_a_config_value_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[source]\npath = "a\\u0000b"\n')
    result = run_cli("evaluate", "--config", str(path), "--source", "file", "--n-features", "2")
    one_line_error(result, "NUL")
