"""Evidence for the bounded influence of one sample (issue 9): the row-norm clipping of
:mod:`streamsgd.core.row_scale` with and without (κ = 10 vs κ = 0).

    .venv/bin/python -m bench.influence [--n 10000] [--seed 1]

Prints, for each scenario and minibatch size m, the relative L2 distance of the final
coefficients from a reference model and the number of clipped samples:

* ``poison-first``: one record x = [1e300]*5 (y = 0) before n valid records; the reference
  is the model trained on the valid records alone (κ as in the row).
* ``poison-1e6``: one record at 10⁶ × an ordinary row (label flipped) after n/2 records.
* ``clean-1``, ``clean-1e4``: clean streams at unit scale and at 10⁴ scale (η scaled by
  10⁻⁸ so that the steps are the same in relative terms); the reference is the κ = 0
  model, so the distance is what the clipping changes on clean data; ``clipped after
  warm-up`` counts clipped samples after the first 60 steps.
* ``drop-first``: the valid stream without its first record against the full stream: the
  noise floor of such comparisons (for m > 1 the minibatches shift by one sample).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from streamsgd import OnlineLogisticRegression
from streamsgd.datasets.synthetic_stream import SyntheticStream

N_FEATURES = 5
WARM_UP_STEPS = 60


@dataclass
class Run:
    model: OnlineLogisticRegression
    n_clipped: int
    n_clipped_after_warm_up: int
    n_skipped: int


def train(X: np.ndarray, y: np.ndarray, m: int, learning_rate: float, kappa: float) -> Run:
    model = OnlineLogisticRegression(X.shape[1], learning_rate=learning_rate, clip_norm_ratio=kappa)
    clipped = late = skipped = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for step, i in enumerate(range(0, len(y), m)):
            stats = model.learn_batch(X[i : i + m], y[i : i + m])
            clipped += stats.n_clipped
            late += stats.n_clipped if step >= WARM_UP_STEPS else 0
            skipped += int(stats.skipped)
    return Run(model, clipped, late, skipped)


def distance(a: OnlineLogisticRegression, b: OnlineLogisticRegression) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.linalg.norm(a.coef_ - b.coef_) / np.linalg.norm(b.coef_))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    X, y = SyntheticStream(N_FEATURES, seed=args.seed, label_noise=0.1).samples(0, args.n)
    half = args.n // 2
    poisoned = {
        "poison-first": (
            np.vstack([np.full((1, N_FEATURES), 1e300), X]),
            np.concatenate([[0.0], y]),
        ),
        "poison-1e6": (
            np.vstack([X[:half], X[half : half + 1] * 1e6, X[half:]]),
            np.concatenate([y[:half], [1.0 - y[half]], y[half:]]),
        ),
    }
    print(
        f"{'scenario':<14}{'m':>4}{'kappa':>7}{'rel. L2 to reference':>22}"
        f"{'clipped':>9}{'clipped after warm-up':>23}{'skipped':>9}  health"
    )
    for m in (1, 32):
        for name, (Xp, yp) in poisoned.items():
            for kappa in (10.0, 0.0):
                reference = train(X, y, m, 0.1, kappa).model
                run = train(Xp, yp, m, 0.1, kappa)
                _row(name, m, kappa, distance(run.model, reference), run)
        for scale in (1.0, 1e4):
            eta = 0.1 / scale**2
            reference = train(X * scale, y, m, eta, 0.0).model
            run = train(X * scale, y, m, eta, 10.0)
            _row(f"clean-{scale:g}", m, 10.0, distance(run.model, reference), run)
        # The noise floor: the same valid stream without its first record (the batches
        # shift by one sample), against the full stream.
        run = train(X[1:], y[1:], m, 0.1, 10.0)
        _row("drop-first", m, 10.0, distance(run.model, train(X, y, m, 0.1, 10.0).model), run)
    return 0


def _row(name: str, m: int, kappa: float, rel: float, run: Run) -> None:
    print(
        f"{name:<14}{m:>4}{kappa:>7g}{rel:>22.3e}{run.n_clipped:>9}"
        f"{run.n_clipped_after_warm_up:>23}{run.n_skipped:>9}  {run.model.health() or 'ok'}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
