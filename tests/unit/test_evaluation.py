"""``streamsgd evaluate`` and :mod:`streamsgd.training.evaluation`: the metrics against brute-force
references, the runner against a hand-written test-then-train loop, the CLI's output and
its one-line errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsgd import OnlineLogisticRegression
from streamsgd.cli import main
from streamsgd.codec import Decoder, decode_poll
from streamsgd.core.losses import log_loss, sigmoid
from streamsgd.datasets.synthetic_stream import SyntheticStream, demo_stream
from streamsgd.sources.file import FileSource
from streamsgd.training.evaluation import ProgressiveValidation, accuracy, mean_log_loss, roc_auc
from tests.support.helpers import write_jsonl

REPO = Path(__file__).resolve().parents[1]
KEYS = {
    "n_samples",
    "n_updates",
    "n_rejected",
    "accuracy",
    "log_loss",
    "roc_auc",
    "batch_size",
    "learning_rate",
}


def brute_force_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of (positive, negative) pairs with the positive scored higher, ties ½."""
    pos = scores[labels == 1]
    neg = scores[labels == 0]
    total = 0.0
    for p in pos:
        for q in neg:
            total += 1.0 if p > q else 0.5 if p == q else 0.0
    return total / (len(pos) * len(neg))


# ---------------------------------------------------------------------------- metrics
@pytest.mark.parametrize("seed", range(6))
def test_auc_equals_brute_force_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    labels = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(float)
    labels[:2] = [0.0, 1.0]  # both classes present
    # Few distinct values: many ties within and across the classes.
    scores = np.round(rng.normal(size=n) + labels, int(rng.integers(0, 2)))
    assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-3, 3).map(float), st.sampled_from([0.0, 1.0])),
        min_size=2,
        max_size=40,
    )
)
def test_auc_property_brute_force(pairs: list[tuple[float, float]]) -> None:
    scores = np.array([s for s, _ in pairs])
    labels = np.array([y for _, y in pairs])
    if len(set(labels.tolist())) < 2:
        assert math.isnan(roc_auc(scores, labels))
    else:
        assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)


def test_auc_edge_cases() -> None:
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0
    assert roc_auc([0.9, 0.1], [0, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5], [0, 1, 1]) == 0.5  # all tied
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))  # one class: undefined
    assert math.isnan(roc_auc([np.nan, 0.2], [0, 1]))
    # Invariant under a monotone transform: scores and probabilities give the same AUC.
    z = np.random.default_rng(1).normal(size=50)
    y = (np.arange(50) % 3 == 0).astype(float)
    assert roc_auc(z, y) == roc_auc(sigmoid(z), y)


def test_accuracy_and_log_loss_from_scores() -> None:
    z = np.array([-2.0, 0.0, 3.0, -0.5, 12.0])
    y = np.array([0.0, 0.0, 1.0, 1.0, 0.0])
    assert accuracy(z, y) == 2 / 5  # z ≥ 0 predicts 1
    p = 1 / (1 + np.exp(-z))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
    assert mean_log_loss(z, y) == pytest.approx(expected, rel=1e-9)
    # Where p rounds to 1 the score still gives the loss: ℓ(40, 0) = 40 + log1p(e⁻⁴⁰).
    assert mean_log_loss([40.0], [0.0]) == pytest.approx(40.0, rel=1e-15)
    assert math.isnan(accuracy([], []))
    with pytest.raises(ValueError):
        accuracy([0.0], [1.0, 0.0])


# ---------------------------------------------------------------------------- runner
def hand_loop(
    X: np.ndarray, y: np.ndarray, batch_size: int, **params: object
) -> tuple[np.ndarray, OnlineLogisticRegression]:
    """decision_function before learn_batch, full batches of m then the rest."""
    model = OnlineLogisticRegression(X.shape[1], **params)  # type: ignore[arg-type]
    scores = []
    for start in range(0, len(y), batch_size):
        rows = slice(start, start + batch_size)
        scores.append(model.decision_function(X[rows]))
        model.learn_batch(X[rows], y[rows])
    return np.concatenate(scores), model


def samples_with_an_extreme_row(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = SyntheticStream(d, seed=seed).samples(0, n)
    X[n // 3] *= 1e4  # clipped by the step (κ = 10): evaluate reports the unclipped score
    return X, y


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_cli_equals_hand_written_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], batch_size: int
) -> None:
    X, y = samples_with_an_extreme_row(403, 5, seed=4)
    path, predictions = tmp_path / "s.jsonl", tmp_path / "p.txt"
    write_jsonl(path, X, y)
    scores, model = hand_loop(X, y, batch_size, learning_rate=0.2)
    argv = ["evaluate", "--source", "file", "--path", str(path), "--n-features", "5"]
    argv += ["--batch-size", str(batch_size), "--learning-rate", "0.2", "--json"]
    capsys.readouterr()
    assert main([*argv, "--predictions", str(predictions)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_samples"] == 403
    assert out["n_updates"] == model.n_updates == math.ceil(403 / batch_size)
    assert out["accuracy"] == float(np.mean((scores >= 0) == (y == 1)))
    assert out["log_loss"] == pytest.approx(float(log_loss(scores, y).mean()), rel=1e-12)
    assert out["roc_auc"] == pytest.approx(brute_force_auc(scores, y), abs=1e-12)
    written = np.loadtxt(predictions)
    assert written.shape == (403,)
    np.testing.assert_allclose(written, sigmoid(scores), rtol=1e-12, atol=0)


def test_runner_result_and_changing_batch_size(tmp_path: Path) -> None:
    """m is asked before every step (the controller hook); the trace follows the steps."""
    X, y = SyntheticStream(4, seed=2).samples(0, 300)
    path = tmp_path / "s.jsonl"
    write_jsonl(path, X, y, extra_lines={10: b"not json", 200: b'{"x": [1, 2], "y": 1}'})
    sizes = iter([1, 2, 4, 8, 16, 32, 64, 128, 256])
    asked: list[int] = []

    def next_batch_size() -> int:
        asked.append(next(sizes, 256))
        return asked[-1]

    model = OnlineLogisticRegression(4, learning_rate_schedule="inverse_scaling")
    seen = []
    runner = ProgressiveValidation(model, next_batch_size, on_step=seen.append)
    source, decoder = FileSource(str(path)), Decoder(4)
    while not source.exhausted:
        runner.feed(decode_poll(decoder, source.poll(1.0)))
    result = runner.finish()
    assert result.n_rejected == 2
    assert result.n_samples == 300
    assert result.step_sizes.tolist() == [1, 2, 4, 8, 16, 32, 64, 128, 45]
    assert len(seen) == result.n_updates == 9 == len(asked)  # asked once per step
    assert result.batch_size == 256  # the m asked for the last (partial) step
    assert result.learning_rate == seen[-1].learning_rate == model.schedule(8)
    # The same steps by hand: the scores and the trace agree.
    hand = OnlineLogisticRegression(4, learning_rate_schedule="inverse_scaling")
    start, scores = 0, []
    for m in result.step_sizes.tolist():
        scores.append(hand.decision_function(X[start : start + m]))
        hand.learn_batch(X[start : start + m], y[start : start + m])
        start += m
    z = np.concatenate(scores)
    np.testing.assert_allclose(result.scores, z, rtol=1e-12)
    ends = np.cumsum(result.step_sizes)
    expected = [float(log_loss(z[:e], y[:e]).mean()) for e in ends]
    np.testing.assert_allclose(result.loss_trace(), expected, rtol=1e-12)


def test_max_samples_on_the_synthetic_stream(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    argv = ["evaluate", "--source", "synthetic", "--n-features", "6", "--max-samples", "2500"]
    fixed = ["--batch-size", "16", "--learning-rate", "0.1"]  # hand_loop's plain SGD
    assert main([*argv, *fixed, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    X, y = SyntheticStream(6).samples(0, 2500)  # the demo stream's first regime
    scores, model = hand_loop(X, y, 16)
    assert out["n_samples"] == 2500 and out["n_updates"] == model.n_updates
    assert out["log_loss"] == pytest.approx(float(log_loss(scores, y).mean()), rel=1e-12)


# ---------------------------------------------------------------------------- CLI
def test_json_keys_types_and_bad_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = SyntheticStream(3, seed=9).samples(0, 100)
    path = tmp_path / "s.jsonl"
    bad = {5: b"{", 17: b'{"x": [1, 2], "y": 1}', 40: b'{"x": [1, 2, 3], "y": 7}', 41: b""}
    write_jsonl(path, X, y, extra_lines=bad)
    capsys.readouterr()
    code = main(
        ["evaluate", "--source", "file", "--path", str(path), "--n-features", "3", "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == KEYS
    assert out["n_rejected"] == 4 and out["n_samples"] == 100
    for key in ("n_samples", "n_updates", "n_rejected", "batch_size"):
        assert type(out[key]) is int
    for key in ("accuracy", "log_loss", "roc_auc", "learning_rate"):
        assert type(out[key]) is float and math.isfinite(out[key])


def test_undefined_auc_is_null_and_text_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X = np.random.default_rng(0).normal(size=(20, 2))
    path = tmp_path / "s.jsonl"
    write_jsonl(path, X, np.ones(20))  # one class: the AUC is undefined
    argv = ["evaluate", "--source", "file", "--path", str(path), "--n-features", "2"]
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text and json.loads(text)["roc_auc"] is None
    assert main(argv) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert set(lines) == KEYS and lines["roc_auc"] == "nan" and lines["n_samples"] == "20"


def test_config_file_applies_to_evaluate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = SyntheticStream(3).samples(0, 50)
    path, config = tmp_path / "s.jsonl", tmp_path / "c.toml"
    write_jsonl(path, X, y)
    config.write_text("[minibatch]\nbatch_size = 8\n")
    argv = ["evaluate", "--config", str(config), "--source", "file", "--path", str(path)]
    capsys.readouterr()
    assert main([*argv, "--n-features", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_size"] == 8 and out["n_updates"] == 7


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSGD_")}
    return subprocess.run(
        [sys.executable, "-m", "streamsgd", *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_stdin_gives_the_file_result(tmp_path: Path) -> None:
    X, y = SyntheticStream(4, seed=5).samples(0, 500)
    path = tmp_path / "s.jsonl"
    write_jsonl(path, X, y)
    common = ["--n-features", "4", "--json", "--batch-size", "3"]
    from_file = run_cli("evaluate", "--source", "file", "--path", str(path), *common)
    from_stdin = run_cli(
        "evaluate", "--source", "file", "--path", "-", *common, stdin=path.read_bytes()
    )
    assert from_file.returncode == from_stdin.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout) == json.loads(from_stdin.stdout)
    assert json.loads(from_file.stdout)["n_samples"] == 500


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "synthetic"], "needs --max-samples"),
        (
            [
                "--source",
                "kafka",
                "--bootstrap-servers",
                "h:1",
                "--topic",
                "t",
                "--n-features",
                "2",
            ],
            "not kafka",
        ),
        (["--max-samples", "5", "--checkpoint-dir", "{tmp}/c"], "checkpoints"),
        (["--max-samples", "5", "--predictions", "{tmp}/missing/p.txt"], "cannot write"),
        (["--source", "file", "--path", "{tmp}/missing.jsonl", "--n-features", "2"], "cannot open"),
        (["--max-samples", "5", "--bogus"], "unrecognized arguments"),
        (["--max-samples", "5", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_cli_mistakes_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("evaluate", *(a.replace("{tmp}", str(tmp_path)) for a in args))
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("streamsgd: error: ") and message in lines[0]
    assert result.stdout == b""
    assert not (tmp_path / "c").exists()


def test_auto_batch_size_takes_each_steps_m_from_the_models_controller() -> None:
    """--batch-size auto: every step's m is what the model's noise controller says before
    that step (replayed on a second model built from the same configuration)."""
    from streamsgd.cli.build import build_model
    from streamsgd.cli.evaluate import evaluate
    from streamsgd.config import train_config

    config = train_config(source="synthetic", max_samples=30_000, n_features=5, batch_size="auto")
    result = evaluate(config)
    replay = build_model(config)
    assert replay.controller is not None
    X, y = demo_stream(5, config.source.seed).samples(0, 30_000)
    start = 0
    for m in result.step_sizes.tolist()[:-1]:  # the last step may be a partial one
        assert m == replay.controller.batch_size
        replay.learn_batch(X[start : start + m], y[start : start + m])
        start += m


def test_empty_stream_reports_nulls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"not json\n")
    capsys.readouterr()
    argv = ["evaluate", "--source", "file", "--path", str(path), "--n-features", "2", "--json"]
    assert main([*argv, "--batch-size", "32", "--learning-rate", "0.1"]) == 0  # fixed m
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "n_samples": 0,
        "n_updates": 0,
        "n_rejected": 1,
        "accuracy": None,
        "log_loss": None,
        "roc_auc": None,
        "batch_size": 32,
        "learning_rate": None,
    }
