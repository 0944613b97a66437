"""``streamsgd evaluate --predictions`` faults (docs/operations.md#what-is-guaranteed): the target
is the input file, a run that fails with a predictions file already there. Real subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def evaluate(*args: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streamsgd", "evaluate", *map(str, args)],
        capture_output=True,
        cwd=REPO,
        timeout=300,
    )


def write_stream(path: Path, n: int) -> bytes:
    rng = np.random.default_rng(7)
    lines = [
        f'{{"x": [{a!r}, {b!r}], "y": {int(a + b > 0)}}}\n'
        for a, b in rng.normal(size=(n, 2)).tolist()
    ]
    path.write_text("".join(lines))
    return path.read_bytes()


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamsgd: error: "), lines
    return lines[0]


def test_predictions_pointed_at_the_input_file_is_refused_and_the_input_kept(
    tmp_path: Path,
) -> None:
    """Injects: --predictions naming the input file, by another spelling
    (docs/operations.md#what-is-guaranteed: it emptied the input and exited 0). Must hold: exit 2
    with one line, the input intact, no file left beside it."""
    stream = tmp_path / "s.jsonl"
    before = write_stream(stream, 50)
    alias = tmp_path / "." / "s.jsonl"
    result = evaluate(
        "--source", "file", "--path", stream, "--n-features", 2, "--predictions", alias
    )
    assert result.returncode == 2
    assert "is the input file" in one_error_line(result)
    assert stream.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl"]


def test_a_failed_run_leaves_an_existing_predictions_file_as_it_was(tmp_path: Path) -> None:
    """Injects: a run whose input cannot be opened, with a predictions file from an earlier run at
    the target (docs/operations.md#what-is-guaranteed: it was emptied before the run failed). Must
    hold: exit 2 with one line; the old predictions file untouched, no temporary file left; then a
    good run replaces it whole."""
    predictions = tmp_path / "p.txt"
    predictions.write_text("0.5\n0.25\n")
    result = evaluate(
        "--source",
        "file",
        "--path",
        tmp_path / "missing.jsonl",
        "--n-features",
        2,
        "--predictions",
        predictions,
    )
    assert result.returncode == 2
    assert "cannot open" in one_error_line(result)
    assert predictions.read_text() == "0.5\n0.25\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt"]

    stream = tmp_path / "s.jsonl"
    write_stream(stream, 40)
    result = evaluate(
        "--source", "file", "--path", stream, "--n-features", 2, "--predictions", predictions
    )
    assert result.returncode == 0, result.stderr
    assert len(predictions.read_text().splitlines()) == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt", "s.jsonl"]
