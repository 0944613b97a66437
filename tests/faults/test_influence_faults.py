"""Fault suite (docs/operations.md#what-is-guaranteed): one record with finite but extreme values
must not move the model more than an ordinary sample can. Real trainer processes on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamsgd.datasets.synthetic_stream import SyntheticStream
from tests.support.helpers import write_jsonl

REPO = Path(__file__).resolve().parents[2]
N_FEATURES = 5


def _train_and_inspect(path: Path, checkpoint_dir: Path, batch_size: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSGD_")}
    common = [sys.executable, "-m", "streamsgd"]
    train = subprocess.run(
        [
            *common,
            "train",
            "--source",
            "file",
            "--path",
            str(path),
            "--n-features",
            str(N_FEATURES),
            "--batch-size",
            str(batch_size),
            "--learning-rate",
            "0.1",
            "--metrics-port",
            "0",
            "--checkpoint-dir",
            str(checkpoint_dir),
        ],
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr.decode()
    inspect = subprocess.run(
        [*common, "inspect", str(checkpoint_dir), "--json"],
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert inspect.returncode == 0, inspect.stderr.decode()
    return json.loads(inspect.stdout)


@pytest.mark.parametrize("batch_size", [1, 32])
@pytest.mark.parametrize(
    "poison, position",
    [(b'{"x":[1e300,1e300,1e300,1e300,1e300],"y":0}', 0), ("1e6 x typical", 5000)],
)
def test_a_poisoned_file_trains_the_valid_only_model(
    tmp_path: Path, batch_size: int, poison: bytes | str, position: int
) -> None:
    """Injects one finite extreme record into a file of 10,000 valid records — the record of
    the fault probe (x = [1e300]*5, first) or a record 10^6 times an ordinary one (after
    5,000 records, when the row scale has adapted). Must hold: the trainer exits 0, every
    record is learned (none skipped, none rejected: the record is valid), and the final
    coefficients are within 1 % (relative L2) of the model trained on the valid records
    alone, with finite weights."""
    X, y = SyntheticStream(N_FEATURES, seed=1, label_noise=0.1).samples(0, 10_000)
    if isinstance(poison, str):
        row = X[position] * 1e6
        poison = json.dumps({"x": [float(v) for v in row], "y": int(1 - y[position])}).encode()
    write_jsonl(tmp_path / "valid.jsonl", X, y)
    write_jsonl(tmp_path / "poisoned.jsonl", X, y, extra_lines={position: poison})

    valid = _train_and_inspect(tmp_path / "valid.jsonl", tmp_path / "ck-valid", batch_size)
    poisoned = _train_and_inspect(tmp_path / "poisoned.jsonl", tmp_path / "ck-poisoned", batch_size)

    assert poisoned["n_samples_seen"] == valid["n_samples_seen"] + 1 == 10_001
    coef, reference = np.array(poisoned["coef"]), np.array(valid["coef"])
    assert np.isfinite(coef).all() and np.isfinite(poisoned["intercept"])
    assert np.linalg.norm(coef - reference) / np.linalg.norm(reference) < 0.01
