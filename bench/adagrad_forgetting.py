"""AdaGrad that forgets (issue 19, item 2): a gradually drifting stream and a stationary one,
progressive (test-then-train) log loss of the last 200 k samples, for today's default (m = 32,
SGD η = 0.1), a grid of fixed (m, η), and ``--batch-size auto --learning-rate auto`` with
AdaGrad never forgetting and with half-lives h of its accumulator.

    .venv/bin/python -m bench.adagrad_forgetting [--n 600000] [--last 200000] [--seed 0]
        [--half-lives 10000,30000,100000] [--no-grid] [--quality]

``--quality`` runs instead ``--batch-size auto --learning-rate auto`` never forgetting and with
each half-life over bench.quality_auto's data sets (dense, sparse, drift, phishing, shuttle,
their default sizes and seed): what a half-life costs where the stream does not rotate.

The streams (deterministic from ``--seed``): d = 20, x ~ N(0, I), y ~ Bernoulli(σ(w*(t)ᵀx)),
w*(t) = r (cos(ω t) u + sin(ω t) v) with u ⊥ v unit vectors and r = 2 (Bayes ≈ 0.46, as
the issue's stream); ω = 1 rad per 100,000 samples (drift) or 0 (stationary). "Bayes" is the
loss of w*(t) itself. Every system runs through the runner of ``streamsgd evaluate``
(:func:`streamsgd.cli.evaluate.validation`), built from a ``TrainConfig`` as ``train`` builds
it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from streamsgd.cli.evaluate import validation
from streamsgd.codec import DecodedRun
from streamsgd.config import train_config
from streamsgd.core.losses import log_loss

N_FEATURES = 20
RADIUS = 2.0
RADIANS_PER_SAMPLE = 1.0 / 100_000
FEED_SAMPLES = 4096
GRID = [(m, eta) for m in (8, 32, 128) for eta in (0.03, 0.1, 0.3)]


def stream(n: int, seed: int, drift: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (n, d), y (n,), and the true scores z*_t = w*(t)ᵀx_t (n,)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(N_FEATURES, 2)))
    angle = np.arange(n) * (RADIANS_PER_SAMPLE if drift else 0.0)
    X = rng.normal(size=(n, N_FEATURES))
    z = RADIUS * (np.cos(angle) * (X @ basis[:, 0]) + np.sin(angle) * (X @ basis[:, 1]))
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
    return X, y, z


def last_loss(options: dict[str, Any], X: np.ndarray, y: np.ndarray, last: int) -> tuple:
    """(mean progressive log loss of the last ``last`` samples, final m, seconds)."""
    config = train_config(source="file", path="(in memory)", n_features=X.shape[1], **options)
    runner = validation(config)
    started = time.process_time()
    for lo in range(0, len(y), FEED_SAMPLES):
        hi = min(lo + FEED_SAMPLES, len(y))
        runner.feed([DecodedRun("bench", lo, X[lo:hi], y[lo:hi], None, False)])
    result = runner.finish()
    seconds = time.process_time() - started
    losses = log_loss(result.scores, result.labels)
    return float(np.mean(losses[-last:])), result.batch_size, seconds


def systems(half_lives: list[float], grid: bool) -> list[tuple[str, dict[str, Any]]]:
    auto = {"batch_size": "auto", "learning_rate": "auto"}
    rows: list[tuple[str, dict[str, Any]]] = [
        ("default m=32 SGD eta=0.1", {"batch_size": 32, "learning_rate": 0.1, "optimizer": "sgd"}),
        ("auto, AdaGrad never forgets", auto),
    ]
    rows += [
        (f"auto, half-life {h:,.0f}", {**auto, "adagrad_half_life_samples": h}) for h in half_lives
    ]
    if grid:
        rows += [
            (
                f"fixed m={m} SGD eta={eta}",
                {"batch_size": m, "learning_rate": eta, "optimizer": "sgd"},
            )
            for m, eta in GRID
        ]
    return rows


def quality(half_lives: list[float]) -> None:
    """Progressive log loss / accuracy of ``auto`` per half-life on quality_auto's data."""
    from bench import quality_auto

    auto = {"batch_size": "auto", "learning_rate": "auto"}
    columns = [0.0, *half_lives]
    print("| data set | " + " | ".join(f"h = {h:,.0f}" for h in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in ("dense", "sparse", "drift", "phishing", "shuttle"):
        n = 120_000 if name == "drift" else 100_000  # quality_auto's sizes (seed 0)
        ds = quality_auto.load(name, n, 0)
        cells = []
        for h in columns:
            result = quality_auto.streamsgd_result(ds, {**auto, "adagrad_half_life_samples": h})
            cells.append(f"{result.log_loss:.4f} / {result.accuracy:.4f}")
        print(f"| {name} (log loss / accuracy) | " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=600_000)
    parser.add_argument("--last", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--half-lives", default="10000,30000,100000")
    parser.add_argument("--no-grid", action="store_true")
    parser.add_argument("--quality", action="store_true")
    args = parser.parse_args(argv)
    half_lives = [float(h) for h in args.half_lives.split(",") if h]
    if args.quality:
        quality(half_lives)
        return 0
    streams = {kind: stream(args.n, args.seed, kind == "drift") for kind in ("drift", "stationary")}
    bayes = {k: float(np.mean(log_loss(z, y)[-args.last :])) for k, (_, y, z) in streams.items()}
    print(f"last {args.last:,} of {args.n:,} samples, seed {args.seed}")
    print("| system | drift | stationary | m at the end (drift) | CPU s (drift) |")
    print("|---|---|---|---|---|")
    print(f"| Bayes (w*(t)) | {bayes['drift']:.4f} | {bayes['stationary']:.4f} | | |")
    for label, options in systems(half_lives, not args.no_grid):
        drift, m, seconds = last_loss(options, *streams["drift"][:2], args.last)
        stationary, _, _ = last_loss(options, *streams["stationary"][:2], args.last)
        print(f"| {label} | {drift:.4f} | {stationary:.4f} | {m} | {seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
