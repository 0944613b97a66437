"""How often the lower confidence bound B̂ of the noise scale is below the true B (issue 19,
item 6: "≈ 97.7 %" is a pointwise normal-approximation figure; this measures it).

    .venv/bin/python -m bench.noise_bound_coverage [--n 200000] [--seed 0]

The stream: the dense stream of ``bench.quality_auto`` (d = 100, x ~ N(0, I), labels from a
logistic model w*), learned at fixed m (8 and 32, SGD η = 0.1, default flags otherwise). Every
1,000 samples after the first 5,000, where the model reports B̂
(``noise_scale_lower_bound``), the true B = tr Σ / |G|² at the current θ is computed on
200,000 held-out rows with the labels integrated out (E[y | x] = σ(w*ᵀx + b*), so |G|² has
no label noise): G = E[(σ(θᵀv) − σ(w*ᵀv)) v], tr Σ = E[(σ − y)² ‖v‖²] − |G|². Printed per m:
the checkpoints with a B̂, the fraction with B̂ ≤ B (the claim: ≈ 97.7 % at each one), and
the range and median of B̂/B. Consecutive checkpoints share most of their EWMA window, so
they are not independent draws.
"""

from __future__ import annotations

import argparse

import numpy as np

from streamsgd import OnlineLogisticRegression
from streamsgd.core.losses import sigmoid
from streamsgd.datasets.synthetic_stream import SyntheticStream

D = 100
HELD_OUT = 200_000
EVERY, FIRST = 1_000, 5_000


def true_noise_scale(
    theta: np.ndarray, X: np.ndarray, p_true: np.ndarray, norms_squared: np.ndarray
) -> float:
    """tr Σ / |G|² of the per-sample gradient (σ(θᵀv) − y) v at θ, labels integrated out."""
    p = sigmoid(X @ theta[:-1] + theta[-1])
    r = p - p_true
    gradient = np.append(r @ X, r.sum()) / len(r)
    g2 = float(gradient @ gradient)
    second = float(((p * p - 2.0 * p * p_true + p_true) * norms_squared).mean())
    return (second - g2) / g2


def coverage(m: int, n: int, seed: int) -> str:
    stream = SyntheticStream(D, seed=seed)
    X, y = stream.samples(0, n)
    Xh, _ = stream.samples(10 * n, 10 * n + HELD_OUT)
    p_true = sigmoid(Xh @ stream.true_weights(0) + stream.intercept)
    norms_squared = np.einsum("ij,ij->i", Xh, Xh) + 1.0
    model = OnlineLogisticRegression(D, learning_rate=0.1)
    ratios = []
    for lo in range(0, n, m):
        model.learn_batch(X[lo : lo + m], y[lo : lo + m])
        seen = lo + m
        if seen >= FIRST and seen % EVERY < m:
            bound = model.gradient_stats.noise_scale_lower_bound
            if np.isfinite(bound):
                truth = true_noise_scale(model.parameters, Xh, p_true, norms_squared)
                ratios.append(bound / truth)
    if not ratios:
        return f"m = {m:>3}: no checkpoint with a B̂"
    r = np.array(ratios)
    return (
        f"m = {m:>3}: {len(r)} checkpoints with a B̂, B̂ ≤ B at {np.mean(r <= 1.0):.1%};"
        f" B̂/B from {r.min():.3f} to {r.max():.3f}, median {np.median(r):.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for m in (8, 32):
        print(coverage(m, args.n, args.seed), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
