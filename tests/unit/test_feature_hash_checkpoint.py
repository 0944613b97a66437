"""A checkpoint records the feature hash of a hashed model; a hashed checkpoint of another
hash (the BLAKE2b of earlier versions, which recorded none) is refused in one line with exit
2, while dense checkpoints, which never recorded one, still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamsgd.checkpoint import dumps, loads
from streamsgd.cli import main
from streamsgd.core.hashing import FEATURE_HASH

NAMED = [
    {"features": {"age": 31.0, "country": "FR"}, "y": 1},
    {"features": {"age": 12.0, "country": "DE"}, "y": 0},
]


def _train(path: Path, checkpoint: Path, *extra: str) -> int:
    return main(
        [
            "train",
            "--source",
            "file",
            "--path",
            str(path),
            "--batch-size",
            "2",
            "--metrics-port",
            "0",
            "--progress",
            "never",
            "--checkpoint-dir",
            str(checkpoint),
            *extra,
        ]
    )


def _rewrite(checkpoint: Path, **changes: object) -> None:
    """Edit the stored state (None deletes a key), keeping the file valid (checksummed)."""
    file = checkpoint / "checkpoint.json"
    state = loads(file.read_bytes())
    for key, value in changes.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    file.write_bytes(dumps(state))


@pytest.fixture()
def named(tmp_path: Path) -> Path:
    path = tmp_path / "named.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in NAMED))
    return path


def test_hashed_checkpoint_records_the_hash_and_resumes(tmp_path: Path, named: Path) -> None:
    ck = tmp_path / "ck"
    assert _train(named, ck, "--hash-bits", "6") == 0
    state = loads((ck / "checkpoint.json").read_bytes())
    assert state["feature_hash"] == {"hash": FEATURE_HASH, "hash_bits": 6}
    assert _train(named, ck, "--hash-bits", "6") == 0


def test_old_hashed_checkpoint_is_refused_in_one_line(
    tmp_path: Path, named: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ck = tmp_path / "ck"
    assert _train(named, ck, "--hash-bits", "6") == 0
    _rewrite(ck, feature_hash=None)  # what streamsgd wrote before MurmurHash3
    capsys.readouterr()
    assert _train(named, ck, "--hash-bits", "6") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("streamsgd: error: ")
    assert "MurmurHash3" in errors[0] and "retrained" in errors[0]
    # Another hash's identity is refused too.
    _rewrite(ck, feature_hash={"hash": "blake2b-64", "hash_bits": 6})
    assert _train(named, ck, "--hash-bits", "6") == 2
    assert "retrained" in capsys.readouterr().err


def test_dense_checkpoints_with_or_without_the_entry_still_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dense.jsonl"
    path.write_text('{"x": [1.0, 2.0], "y": 1}\n{"x": [0.5, -1.0], "y": 0}\n')
    ck = tmp_path / "ck"
    assert _train(path, ck, "--n-features", "2") == 0
    assert loads((ck / "checkpoint.json").read_bytes())["feature_hash"] is None
    _rewrite(ck, feature_hash=None)  # a dense checkpoint of an earlier version
    assert _train(path, ck, "--n-features", "2") == 0


def test_a_dense_run_refuses_a_hashed_checkpoint(tmp_path: Path, named: Path) -> None:
    ck = tmp_path / "ck"
    assert _train(named, ck, "--hash-bits", "2") == 0
    dense = tmp_path / "dense.jsonl"
    dense.write_text('{"x": [1.0, 2.0, 0.0, 1.0], "y": 1}\n')
    assert _train(dense, ck, "--n-features", "4") == 2
