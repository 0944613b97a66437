"""Bounded influence without bias (issue 19, item 5): what the influence bound does to the
model and to the row scale s, on deterministic synthetic streams, default flags (κ = 10,
m = 32, plain SGD η = 0.1) unless a row says otherwise.

    .venv/bin/python -m bench.influence_bias [--n 100000] [--seed 0]

* ``hostile-11``: 11 % of the rows of a clean stream (d = 20, label noise 0.1) rescaled to
  norm 1e6, labels kept (``-flipped``: labels flipped). Printed: s of the clean stream and of
  the attacked one, their ratio (target: within 2x), and ‖θ − θ_clean‖/‖θ_clean‖ (target:
  ≤ 5 %), θ_clean the model of the clean stream under the same flags.
* ``heavy-tails``: a well-specified logistic model whose rows have log-normal norms
  (x = ρ g, g ~ N(0, I₅), log ρ ~ N(0, 0.75²)), so that κ s cuts a real fraction of them;
  AdaGrad η = 0.5 so that the fit converges. Printed for κ = 10 and κ = 3: the fraction of
  rows weighted down, and the relative distance of θ to the κ = 0 model of the same stream
  (what the bound changes) and to θ* (the last coefficient, θ*_5 = 0.05, printed alone: the
  issue's tail coefficient).
"""

from __future__ import annotations

import argparse

import numpy as np

from streamsgd import OnlineLogisticRegression
from streamsgd.datasets.synthetic_stream import SyntheticStream

BATCH_SIZE = 32
HOSTILE_FRACTION = 0.11
HOSTILE_NORM = 1e6
TRUE_WEIGHTS = np.array([1.0, -0.8, 0.5, 0.3, 0.05])
TRUE_INTERCEPT = -0.2


def train(
    X: np.ndarray, y: np.ndarray, **params: float | str
) -> tuple[OnlineLogisticRegression, int]:
    """The model after one pass in minibatches of 32, and the samples weighted down."""
    model = OnlineLogisticRegression(X.shape[1], **params)  # type: ignore[arg-type]
    clipped = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, len(y), BATCH_SIZE):
            clipped += model.learn_batch(X[i : i + BATCH_SIZE], y[i : i + BATCH_SIZE]).n_clipped
    return model, clipped


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def hostile(n: int, seed: int) -> None:
    X, y = SyntheticStream(20, seed=seed, label_noise=0.1).samples(0, n)
    clean, _ = train(X, y)
    rng = np.random.default_rng(seed)
    rows = rng.random(n) < HOSTILE_FRACTION
    Xh = X.copy()
    Xh[rows] *= HOSTILE_NORM / np.linalg.norm(X[rows], axis=1, keepdims=True)
    print(f"{'scenario':<20}{'s clean':>10}{'s attacked':>12}{'ratio':>8}{'rel. to clean':>15}")
    for name, labels in (("hostile-11", y), ("hostile-11-flipped", np.where(rows, 1.0 - y, y))):
        attacked, _ = train(Xh, labels)
        ratio = attacked.row_scale / clean.row_scale
        rel = relative(attacked.parameters, clean.parameters)
        print(
            f"{name:<20}{clean.row_scale:>10.3f}{attacked.row_scale:>12.4g}{ratio:>8.3f}{rel:>15.4f}"
        )


def heavy_tails(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    radius = np.exp(rng.normal(0.0, 0.75, n))
    X = rng.normal(size=(n, len(TRUE_WEIGHTS))) * radius[:, None]
    p = 1.0 / (1.0 + np.exp(-(X @ TRUE_WEIGHTS + TRUE_INTERCEPT)))
    y = (rng.random(n) < p).astype(np.float64)
    flags = {"optimizer": "adagrad", "learning_rate": 0.5}
    reference, _ = train(X, y, clip_norm_ratio=0.0, **flags)
    truth = np.append(TRUE_WEIGHTS, TRUE_INTERCEPT)
    header = f"{'scenario':<20}{'kappa':>6}{'weighted':>10}{'rel. to kappa=0':>17}"
    print(f"{header}{'rel. to truth':>15}{'w_5':>9}")
    for kappa in (10.0, 3.0, 0.0):
        model, clipped = train(X, y, clip_norm_ratio=kappa, **flags)
        theta = model.parameters
        print(
            f"{'heavy-tails':<20}{kappa:>6g}{clipped / n:>10.4f}"
            f"{relative(theta, reference.parameters):>17.4f}{relative(theta, truth):>15.4f}"
            f"{theta[-2]:>9.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    hostile(args.n, args.seed)
    heavy_tails(4 * args.n, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
