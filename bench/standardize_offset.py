"""A feature far from 0 carrying the signal (issue 19, item 3): the standardiser against the
same stream pre-centred, with the default flags of ``train`` and ``evaluate`` and with a fixed
m.

    .venv/bin/python -m bench.standardize_offset [--n 200000] [--batch-size 32] [--seed 0]
        [--systems auto,fixed]

The stream: d = 5 unit normal features, labels from a logistic model of all five; the first
feature is then shifted to 2000 ± 10 (a year, a price). Printed per system: the progressive
(test-then-train) log loss averaged over the first 10 k, 50 k and 200 k samples, for the
offset stream and the pre-centred one, and their difference (target: ≤ 0.003 at each).

Systems
    auto    the default flags (``--batch-size auto --learning-rate auto``: AdaGrad under the
            controller with ``--standardize`` on dense features), through the runner of
            ``streamsgd evaluate`` (:func:`streamsgd.cli.evaluate.validation`), built from a
            ``TrainConfig`` as ``train`` builds it: the issue's target.
    fixed   ``OnlineLogisticRegression(standardize=True)`` with the Python API's defaults
            (m = ``--batch-size``, SGD η = 0.1, κ = 10); also printed: σ of the feature at the
            end (its true value is 10).
"""

from __future__ import annotations

import argparse

import numpy as np

from streamsgd import OnlineLogisticRegression
from streamsgd.cli.evaluate import validation
from streamsgd.codec import DecodedRun
from streamsgd.config import train_config
from streamsgd.core.losses import log_loss

CHECKPOINTS = (10_000, 50_000, 200_000)
WEIGHTS = np.array([1.5, -1.0, 0.5, 0.0, 0.3])
FEED_SAMPLES = 4096  # samples per fed "poll" of the evaluate runner


def stream(n: int, seed: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(WEIGHTS)))
    p = 1.0 / (1.0 + np.exp(-(X @ WEIGHTS + 0.2)))
    y = (rng.random(n) < p).astype(np.float64)
    X[:, 0] = offset + 10.0 * X[:, 0]
    return X, y


def progressive(X: np.ndarray, y: np.ndarray, m: int) -> tuple[np.ndarray, float]:
    """Fixed m: cumulative mean progressive loss per sample, and σ of feature 0 at the end."""
    model = OnlineLogisticRegression(X.shape[1], standardize=True)
    losses = np.empty(len(y))
    for lo in range(0, len(y), m):
        losses[lo : lo + m] = model.learn_batch(X[lo : lo + m], y[lo : lo + m]).loss
    scale = float(model.inputs.scale[0])  # type: ignore[attr-defined]
    return np.cumsum(losses) / np.arange(1, len(y) + 1), scale


def progressive_auto(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The default flags: cumulative mean progressive loss per sample."""
    auto = {"batch_size": "auto", "learning_rate": "auto"}
    config = train_config(source="file", path="(in memory)", n_features=X.shape[1], **auto)
    runner = validation(config)
    for lo in range(0, len(y), FEED_SAMPLES):
        hi = min(lo + FEED_SAMPLES, len(y))
        runner.feed([DecodedRun("bench", lo, X[lo:hi], y[lo:hi], None, False)])
    result = runner.finish()
    losses = log_loss(result.scores, result.labels)
    return np.cumsum(losses) / np.arange(1, len(y) + 1)


def table(offset: np.ndarray, centred: np.ndarray, n: int) -> None:
    print(f"{'samples':>8}{'offset':>10}{'pre-centred':>13}{'difference':>12}")
    for k in CHECKPOINTS:
        if k <= n:
            a, b = offset[k - 1], centred[k - 1]
            print(f"{k:>8}{a:>10.4f}{b:>13.4f}{a - b:>12.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--systems", default="auto,fixed")
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    if unknown := set(systems) - {"auto", "fixed"}:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))} (auto, fixed)")
    offset_stream = stream(args.n, args.seed, 2000.0)
    centred_stream = stream(args.n, args.seed, 0.0)
    print(f"seed {args.seed}, {args.n:,} samples")
    if "auto" in systems:
        print("default flags (auto: AdaGrad under the controller, --standardize)")
        table(progressive_auto(*offset_stream), progressive_auto(*centred_stream), args.n)
    if "fixed" in systems:
        print(f"fixed m = {args.batch_size}, SGD eta = 0.1, standardize=True (Python API)")
        offset, offset_scale = progressive(*offset_stream, args.batch_size)
        centred, centred_scale = progressive(*centred_stream, args.batch_size)
        table(offset, centred, args.n)
        print(
            f"sigma of the feature at the end: {offset_scale:.3f} (pre-centred {centred_scale:.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
