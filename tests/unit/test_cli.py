"""The CLI end to end on embedded sources: same weights as the Python API, env-backed flags,
one-line errors, checkpoints and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamsgd.cli import build_parser, main
from streamsgd.datasets.synthetic_stream import SyntheticStream
from tests.support.helpers import reference_fit, write_jsonl

REPO = Path(__file__).resolve().parents[2]


def inspect_json(directory: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["inspect", str(directory), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSGD_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "streamsgd", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        cwd=REPO,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("batch_size", "online_block_size"), [(1, 0), (1, 256), (8, 256), (32, 256)]
)
def test_file_training_equals_python_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], batch_size: int, online_block_size: int
) -> None:
    X, y = SyntheticStream(6, seed=11).samples(0, 1001)
    path = tmp_path / "samples.jsonl"
    write_jsonl(path, X, y)
    code = main(
        [
            "train",
            "--source",
            "file",
            "--path",
            str(path),
            "--n-features",
            "6",
            "--batch-size",
            str(batch_size),
            "--learning-rate",
            "0.05",
            "--l2",
            "0.001",
            "--metrics-port",
            "0",
            "--checkpoint-dir",
            str(tmp_path / "ck"),
            "--progress",
            "never",
            "--online-block-size",
            str(online_block_size),
        ]
    )
    assert code == 0
    state = inspect_json(tmp_path / "ck", capsys)
    expected = reference_fit(X, y, batch_size, learning_rate=0.05, l2=0.001)
    if batch_size == 1 and online_block_size:
        # The same m = 1 steps, computed blockwise by learn_sequence: equal to rounding.
        np.testing.assert_allclose(np.array(state["coef"]), expected.coef_, rtol=1e-12)
        assert state["intercept"] == pytest.approx(expected.intercept_, rel=1e-12)
    else:
        assert np.array_equal(np.array(state["coef"]), expected.coef_)
        assert state["intercept"] == expected.intercept_
    assert state["n_samples_seen"] == 1001
    assert state["n_updates"] == -(-1001 // batch_size)
    assert state["offsets"] == {"file": 1001}


def test_stdin_source_and_rejected_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = SyntheticStream(3, seed=2).samples(0, 200)
    path = tmp_path / "s.jsonl"
    bad = {
        5: b"{not json",
        50: b'{"x": [1, 2], "y": 1}',
        51: b'{"x": [1, 2, NaN], "y": 0}',
        120: b'{"x": [1, 2, 3], "y": 2}',
    }
    write_jsonl(path, X, y, bad)
    result = run_cli(
        "train",
        "--source",
        "file",
        "--path",
        "-",
        "--n-features",
        "3",
        "--batch-size",
        "4",
        "--learning-rate",  # the reference's plain SGD (not the default auto)
        "0.1",
        "--metrics-port",
        "0",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        stdin=path.read_bytes(),
    )
    assert result.returncode == 0, result.stderr.decode()
    state = inspect_json(tmp_path / "ck", capsys)
    expected = reference_fit(X, y, 4)
    assert np.array_equal(np.array(state["coef"]), expected.coef_)
    assert state["totals"]["records_rejected"] == 4
    assert state["offsets"] == {"file": 204}


def test_named_features_are_hashed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        {"features": {"age": 31.0, "country": "FR"}, "y": 1},
        {"features": {"age": 12.0, "country": "DE"}, "y": 0},
        {"features": {"age": 45.0, "country": "FR", "clicks": 3}, "y": True},
    ]
    path = tmp_path / "named.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert (
        main(
            [
                "train",
                "--source",
                "file",
                "--path",
                str(path),
                "--hash-bits",
                "8",
                "--batch-size",
                "3",
                "--metrics-port",
                "0",
                "--checkpoint-dir",
                str(tmp_path / "ck"),
                "--progress",
                "never",
            ]
        )
        == 0
    )
    state = inspect_json(tmp_path / "ck", capsys)
    coef = np.array(state["coef"])
    assert coef.shape == (256,)
    # Three distinct names in sample 1 and 2 and four in sample 3 touch at most 5 buckets.
    assert 1 <= np.count_nonzero(coef) <= 5
    assert state["n_samples_seen"] == 3


def test_synthetic_resume_is_bit_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = [
        "train",
        "--source",
        "synthetic",
        "--n-features",
        "4",
        "--batch-size",
        "16",
        "--learning-rate",  # the reference's plain SGD (not the default auto)
        "0.1",
        "--metrics-port",
        "0",
        "--progress",
        "never",
        "--seed",
        "5",
    ]
    # 3008 = 188 full minibatches: a bound inside a minibatch would end it early by design.
    assert main([*common, "--max-samples", "3008", "--checkpoint-dir", str(tmp_path / "a")]) == 0
    assert main([*common, "--max-samples", "7000", "--checkpoint-dir", str(tmp_path / "a")]) == 0
    assert main([*common, "--max-samples", "7000", "--checkpoint-dir", str(tmp_path / "b")]) == 0
    resumed, straight = inspect_json(tmp_path / "a", capsys), inspect_json(tmp_path / "b", capsys)
    assert resumed["coef"] == straight["coef"] and resumed["intercept"] == straight["intercept"]
    assert resumed["n_samples_seen"] == straight["n_samples_seen"] == 7000
    X, y = SyntheticStream(4, seed=5).samples(0, 7000)
    assert np.array_equal(np.array(straight["coef"]), reference_fit(X, y, 16).coef_)


def test_env_variables_set_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMSGD_BATCH_SIZE", "4")
    monkeypatch.setenv("STREAMSGD_LEARNING_RATE", "0.25")
    monkeypatch.setenv("STREAMSGD_MAX_SAMPLES", "100")
    monkeypatch.setenv("STREAMSGD_CHECKPOINT_DIR", str(tmp_path / "ck"))
    monkeypatch.setenv("STREAMSGD_METRICS_PORT", "0")
    assert main(["train", "--n-features", "3", "--progress", "never"]) == 0
    state = inspect_json(tmp_path / "ck", capsys)
    assert state["batch_size"] == 4
    assert state["params"]["learning_rate"] == 0.25
    assert state["n_updates"] == 25
    # A flag on the command line wins over the environment.
    assert (
        main(
            [
                "train",
                "--n-features",
                "3",
                "--progress",
                "never",
                "--max-samples",
                "104",
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    assert inspect_json(tmp_path / "ck", capsys)["batch_size"] == 8


def test_help_lists_every_env_variable() -> None:
    result = run_cli("train", "--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    train = next(
        a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "train"
    )[1]  # type: ignore[union-attr]
    flags = [
        a.option_strings[0]
        for a in train._actions
        if a.option_strings and a.option_strings[0].startswith("--") and a.dest != "help"
    ]
    assert len(flags) > 30
    for flag in flags:
        env = "STREAMSGD_" + flag[2:].upper().replace("-", "_")
        if flag == "--print-config":  # a flag only: no variable
            assert flag in text and env not in text
            continue
        assert flag in text and env in " ".join(text.split()), flag


def test_secrets_are_never_printed() -> None:
    result = run_cli("train", "--help", env={"STREAMSGD_SASL_PASSWORD": "hunter2-secret"})
    assert result.returncode == 0
    assert b"hunter2-secret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["train", "--batch-size", "0"], {}, "--batch-size"),
        (["train", "--learning-rate", "-1"], {}, "--learning-rate"),
        (["train", "--learning-rate", "nan"], {}, "--learning-rate"),
        (["train", "--bogus"], {}, "--bogus"),
        (["train", "--source", "nope"], {}, "nope"),
        (["train", "--source", "file"], {}, "--path"),
        (
            ["train", "--source", "file", "--path", "/does/not/exist", "--n-features", "2"],
            {},
            "/does/not/exist",
        ),
        (["train", "--source", "kafka", "--n-features", "2"], {}, "--bootstrap-servers"),
        (["train", "--source", "file", "--path", "x"], {}, "--n-features"),
        (["train", "--hash-bits", "40"], {}, "--hash-bits"),
        (
            "train --distributed mpi --bootstrap-servers 127.0.0.1:1 --topic t --n-features 2 "
            "--batch-size 1".split(),
            {},
            "--batch-size 1 cannot be replicated",
        ),
        (["train"], {"STREAMSGD_BATCH_SIZE": "many"}, "batch-size"),
        (["train"], {"STREAMSGD_OPTIMIZER": "adam"}, "STREAMSGD_OPTIMIZER"),
        (["inspect", "/does/not/exist"], {}, "no checkpoint"),
        (["produce", "--topic", "t", "synthetic", "--n", "5"], {}, "--bootstrap-servers"),
        ([], {}, "required"),
    ],
)
def test_mistakes_give_one_line_and_exit_2(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    result = run_cli(*args, env=env)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("streamsgd: error:") and needle in lines[0]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.json").write_text("{ torn")
    result = run_cli(
        "train", "--checkpoint-dir", str(tmp_path), "--metrics-port", "0", "--max-samples", "10"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr.decode()
    assert "not a valid checkpoint" in result.stderr.decode()


def test_produce_options_are_accepted_before_and_after_the_source() -> None:
    parser = build_parser()
    after = parser.parse_args(
        [
            "produce",
            "--bootstrap-servers",
            "h:1",
            "--topic",
            "t",
            "synthetic",
            "--n",
            "5",
            "--rate",
            "7",
            "--samples-per-record",
            "3",
            "--format",
            "binary",
            "--partitions",
            "4",
        ]
    )
    assert (after.rate, after.samples_per_record, after.format, after.partitions) == (
        7.0,
        3,
        "binary",
        4,
    )
    before = parser.parse_args(
        [
            "produce",
            "--bootstrap-servers",
            "h:1",
            "--topic",
            "t",
            "--rate",
            "9",
            "--samples-per-record",
            "2",
            "synthetic",
            "--n",
            "5",
        ]
    )
    assert (before.rate, before.samples_per_record, before.format) == (9.0, 2, "json")
