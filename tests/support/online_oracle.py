"""The oracle of the compiled m = 1 loops: ``learn_batch`` called once per sample.

``learn_batch`` is the numpy step (streamsgd/core/step.py, model.py): the definition that
``learn_sequence`` must reproduce. The oracle runs it on a *copy* of the model (through
get_state / from_state), so one starting model can feed both sides, and compares every part
of the state a run changes. AdaGrad's forgetting (``adagrad_half_life_samples`` = h) is the
per-sample step's G ← γ G + g², γ = 2^(−1/h); :func:`forgetting_oracle` is its numpy model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamsgd import OnlineLogisticRegression, SparseRows

RTOL = 1e-9


@dataclass
class OracleRun:
    model: OnlineLogisticRegression
    losses: np.ndarray
    misclassified: int
    skipped: int
    clipped: int
    last_learning_rate: float


def copy_model(model: OnlineLogisticRegression) -> OnlineLogisticRegression:
    return OnlineLogisticRegression.from_state(model.get_state())


def per_sample_oracle(model, X, y, weights=None) -> OracleRun:
    """``learn_batch`` on each single sample, on a copy of ``model``. A skipped step's
    sample counts neither in the progressive loss (0) nor as misclassified."""
    oracle = copy_model(model)
    losses = np.zeros(len(y))
    missed = skipped = clipped = 0
    eta = math.nan
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(len(y)):
            xi = X.slice_rows(i, i + 1) if isinstance(X, SparseRows) else X[i : i + 1]
            w = None if weights is None else weights[i : i + 1]
            stats = oracle.learn_batch(xi, y[i : i + 1], w)
            if stats.skipped:
                skipped += 1
            else:
                losses[i] = stats.loss
                missed += stats.n_misclassified
            clipped += stats.n_clipped
            eta = stats.learning_rate
    return OracleRun(oracle, losses, missed, skipped, clipped, eta)


def forgetting_oracle(model, X, y) -> np.ndarray:
    """AdaGrad's accumulators after ``model`` (AdaGrad, no L2, no clipping, dense) learns
    the rows one at a time, in numpy: G ← γ G + g², g = (σ(θᵀ[x;1]) − y) [x;1],
    θ ← θ − η g / (√G + ε), γ = 2^(−1/h) (h = 0: γ = 1). Returns the final G."""
    h, eta = model.adagrad_half_life_samples, model.get_params()["learning_rate"]
    gamma = 2.0 ** (-1.0 / h) if h > 0.0 else 1.0
    theta = model.get_state()["theta"].copy()
    accumulated = model._squared_gradient_sum.copy()
    for i in range(len(y)):
        row = np.append(X[i], 1.0)
        z = float(row @ theta)
        residual = 1.0 / (1.0 + math.exp(-z)) - y[i]
        g = residual * row
        accumulated = gamma * accumulated + g * g
        theta = theta - eta * g / (np.sqrt(accumulated) + model.adagrad_epsilon)
    return accumulated


def _close(expected, actual, what: str, scale: float | None = None) -> None:
    expected = np.asarray(expected, dtype=float)
    actual = np.asarray(actual, dtype=float)
    if scale is None:
        finite = np.abs(expected[np.isfinite(expected)])
        scale = float(finite.max(initial=0.0))
    # atol: a value that is a difference of larger ones (|G|² = ‖M + ρ‖² − v T, a weight
    # soft-thresholded to about 0) is only as exact as the terms it is computed from.
    np.testing.assert_allclose(
        actual, expected, rtol=RTOL, atol=RTOL * max(scale, 1e-300), err_msg=what
    )


def _close_state(expected, actual, what: str, scale: float) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and expected.keys() == actual.keys(), what
        for key in expected:
            _close_state(expected[key], actual[key], f"{what}.{key}", scale)
    elif expected is None or isinstance(expected, bool | int | str):
        assert expected == actual, (what, expected, actual)
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float) and math.isnan(actual), (what, actual)
    else:
        _close(expected, actual, what, max(scale, float(np.max(np.abs(expected)))))


def assert_same_state(expected: OnlineLogisticRegression, actual: OnlineLogisticRegression):
    """θ, AdaGrad's accumulators, s, the counters and every running statistic agree (rtol
    1e-9; the statistics with an absolute floor at 1e-9 × the EWMA of ‖g‖², their scale)."""
    # The folded states (θ = [w ; b], M): the compiled loop may still hold deferred work
    # (core/deferred.py), the per-sample oracle never does.
    state_a, state_b = expected.get_state(), actual.get_state()
    _close(state_a["theta"], state_b["theta"], "theta")
    if expected._squared_gradient_sum is not None:
        _close(expected._squared_gradient_sum, actual._squared_gradient_sum, "adagrad")
    _close(expected.row_scale, actual.row_scale, "row_scale")
    assert expected.n_updates == actual.n_updates
    assert expected.n_samples_seen == actual.n_samples_seen
    a, b = expected.gradient_stats, actual.gradient_stats
    scale = a.mean_squared_norm if math.isfinite(a.mean_squared_norm) else 0.0
    _close_state(state_a["gradient_stats"], state_b["gradient_stats"], "stats", abs(scale))
    for name in ("noise_scale", "norm_test_ratio", "noise_scale_lower_bound", "trusted"):
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, bool):
            assert va == vb, name
        elif math.isnan(va):
            assert math.isnan(vb), name
        else:
            _close(va, vb, name, abs(va))
