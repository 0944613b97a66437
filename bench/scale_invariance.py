"""Evidence for issue 10, part 3: does online standardisation pay on features of different
scales? Progressive (test-then-train) log loss, accuracy and ROC AUC of

* streamsgd plain SGD, AdaGrad, standardised SGD and standardised AdaGrad, all with their
  defaults (η = 0.1, κ = 10), at m = 1 and at m = 32;
* River's ``preprocessing.StandardScaler() | linear_model.LogisticRegression()`` with its
  defaults, one sample at a time (River's own pipeline, not a reimplementation);

on two streams:

* ``scaled``: the bench dense stream (d = 100, x ~ N(0, I), ``bench.data.dense_stream``) with
  feature j multiplied by a scale log-spaced from 1e-3 to 1e3; the labels are unchanged, so a
  scale-invariant learner sees the same problem as on the unit-scale stream;
* ``phishing``: River's shipped data set ``river.datasets.Phishing`` (1250 samples, 9
  features, in its shipped order).

Every system scores each sample (its pre-step probability p) before learning it; the log loss
is −mean(y log p + (1 − y) log(1 − p)) with p clipped to [1e-15, 1 − 1e-15].

    .venv/bin/python -m bench.scale_invariance [--n 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from bench import data
from streamsgd import OnlineLogisticRegression

FloatArray = NDArray[np.float64]
EPSILON = 1e-15

SYSTEMS: dict[str, dict[str, object]] = {
    "sgd": {},
    "adagrad": {"optimizer": "adagrad"},
    "standardized sgd": {"standardize": True},
    "standardized adagrad": {"standardize": True, "optimizer": "adagrad"},
}


def scaled_stream(n: int, seed: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The dense bench stream with per-feature scales 1e-3 … 1e3: (scaled X, y, unit X)."""
    dense = data.dense_stream(n, seed)
    scales = np.logspace(-3, 3, dense.X.shape[1])
    return dense.X * scales, dense.y, dense.X


def phishing() -> tuple[FloatArray, FloatArray]:
    """River's Phishing data set as arrays, in its shipped order."""
    from river import datasets

    rows, labels = [], []
    for x, y in datasets.Phishing():
        rows.append([float(v) for v in x.values()])
        labels.append(float(y))
    return np.array(rows), np.array(labels)


def streamsgd_probabilities(
    X: FloatArray, y: FloatArray, batch_size: int, params: dict[str, object]
) -> FloatArray:
    """Each sample's probability under the weights before the step that learns it."""
    model = OnlineLogisticRegression(X.shape[1], **params)  # type: ignore[arg-type]
    probabilities = np.empty(len(y))
    for lo in range(0, len(y), batch_size):
        batch = slice(lo, lo + batch_size)
        probabilities[batch] = model.predict_proba(X[batch])
        model.learn_batch(X[batch], y[batch])
    return probabilities


def river_probabilities(X: FloatArray, y: FloatArray) -> FloatArray:
    """``StandardScaler() | LogisticRegression()`` with River's defaults, learn_one."""
    from river import linear_model, preprocessing

    pipeline = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    probabilities = np.empty(len(y))
    for i, (row, label) in enumerate(zip(X.tolist(), y.tolist(), strict=True)):
        x = dict(enumerate(row))
        probabilities[i] = pipeline.predict_proba_one(x).get(True, 0.0)
        pipeline.learn_one(x, bool(label))
    return probabilities


def roc_auc(y: FloatArray, scores: FloatArray) -> float:
    """Exact ROC AUC (ties count one half), by ranks."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    stops = np.concatenate((boundaries, [len(scores)]))
    for start, stop in zip(starts, stops, strict=True):
        ranks[order[start:stop]] = (start + stop + 1) / 2.0
    positives = y == 1.0
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not (n_pos and n_neg):
        return math.nan
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def scores_of(y: FloatArray, p: FloatArray) -> tuple[float, float, float]:
    """(log loss, accuracy, ROC AUC) of probabilities p; NaN p counts as 0.5."""
    p = np.where(np.isfinite(p), p, 0.5)
    clipped = np.clip(p, EPSILON, 1.0 - EPSILON)
    loss = -float(np.mean(y * np.log(clipped) + (1.0 - y) * np.log1p(-clipped)))
    accuracy = float(np.mean((p >= 0.5) == (y == 1.0)))
    return loss, accuracy, roc_auc(y, p)


def table(name: str, X: FloatArray, y: FloatArray, unit: FloatArray | None = None) -> None:
    """One markdown table; ``unit``: the same stream at unit scales, for reference rows
    (what a scale-invariant learner should match)."""
    runs: list[tuple[str, Callable[[], FloatArray]]] = []
    for batch_size in (1, 32):
        for system, params in SYSTEMS.items():
            runs.append(
                (
                    f"streamsgd {system}, m={batch_size}",
                    lambda b=batch_size, p=params: streamsgd_probabilities(X, y, b, p),
                )
            )
        if unit is not None:
            for system in ("sgd", "adagrad"):
                runs.append(
                    (
                        f"(unit-scale stream) streamsgd {system}, m={batch_size}",
                        lambda b=batch_size, p=SYSTEMS[system]: streamsgd_probabilities(
                            unit, y, b, p
                        ),
                    )
                )
    runs.append(("River StandardScaler | LogisticRegression", lambda: river_probabilities(X, y)))
    print(f"\n{name}: n = {len(y)}, d = {X.shape[1]}, positives {y.mean():.3f}")
    print(f"| {'system':<52} | log loss | accuracy | ROC AUC |")
    print(f"|{'-' * 54}|----------|----------|---------|")
    for label, run in runs:
        with np.errstate(all="ignore"):
            loss, accuracy, auc = scores_of(y, run())
        print(f"| {label:<52} | {loss:8.4f} | {accuracy:8.4f} | {auc:7.4f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="samples of the scaled stream")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    X, y, unit = scaled_stream(args.n, args.seed)
    table("scaled (dense d=100, scales 1e-3..1e3)", X, y, unit)
    try:
        X, y = phishing()
    except ImportError:
        print("\nphishing: River is not installed (pip install -e '.[bench]')")
        return 0
    table("phishing (river.datasets.Phishing)", X, y)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
