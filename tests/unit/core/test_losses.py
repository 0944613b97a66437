"""Logistic loss, sigmoid and per-sample gradients against independent references:
the naive textbook formula (where it is accurate), 60-digit decimal arithmetic, a per-sample
numpy loop, and central finite differences of the mean loss with respect to (w, b)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression
from streamsgd.core.losses import log_loss, residual, sigmoid
from tests.support.reference import (
    decimal_log_loss,
    decimal_sigmoid,
    mean_loss_ref,
    naive_log_loss,
    per_sample_gradients,
)

EPS = np.finfo(np.float64).eps


def _model_at(w, b, **params) -> OnlineLogisticRegression:
    """A model whose weights are (w, b), built through the public state API."""
    model = OnlineLogisticRegression(len(w), **params)
    state = model.get_state()
    state["theta"] = np.append(np.asarray(w, dtype=float), b)
    return OnlineLogisticRegression.from_state(state)


class _StrictFloats:
    """Turn overflow / invalid / divide-by-zero into exceptions, and every warning into an
    error. Underflow stays ignored (numpy's default): exp(−1000) → 0 is the intended, exact
    to float precision result of the stable form, not an error."""

    def __enter__(self):
        self._err = np.errstate(over="raise", invalid="raise", divide="raise", under="ignore")
        self._err.__enter__()
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.simplefilter("error")
        return self

    def __exit__(self, *exc):
        self._warn.__exit__(*exc)
        self._err.__exit__(*exc)


# ------------------------------------------------------------------------------ loss values


def test_log_loss_matches_naive_formula_where_it_is_accurate():
    rng = np.random.default_rng(0)
    z = rng.uniform(-5, 5, size=2000)
    y = rng.integers(0, 2, size=2000).astype(float)
    # For |z| ≤ 5, 1 − σ(z) ≥ 6.7e-3, so the naive log(1 − σ) loses at most ~1e-14 absolute.
    np.testing.assert_allclose(log_loss(z, y), naive_log_loss(z, y), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    "z",
    [
        -1000.0,
        -745.0,
        -700.0,
        -200.0,
        -40.0,
        -36.0,
        -20.0,
        -3.5,
        -1e-9,
        0.0,
        1e-300,
        2.5,
        17.0,
        37.0,
        40.0,
        300.0,
        709.0,
        710.0,
        1000.0,
    ],
)
@pytest.mark.parametrize("y", [0.0, 1.0])
def test_log_loss_matches_60_digit_reference(z, y):
    got = float(log_loss(np.array([z]), np.array([y]))[0])
    want = decimal_log_loss(z, y)
    assert math.isfinite(got)
    # softplus(z) − y z evaluated in floating point is accurate to a few ulp of max(1, |z|)
    # in absolute terms (the terms being added are of that size).
    assert abs(got - want) <= 8 * EPS * max(1.0, abs(z)), (z, y, got, want)


def test_log_loss_at_abs_z_1000_is_finite_and_correct():
    z = np.array([1000.0, 1000.0, -1000.0, -1000.0])
    y = np.array([0.0, 1.0, 1.0, 0.0])
    with _StrictFloats():
        loss = log_loss(z, y)
    assert np.all(np.isfinite(loss))
    # Wrong label: ℓ = |z| + log1p(e^{−1000}) = 1000 exactly in float64.
    assert loss[0] == 1000.0 and loss[2] == 1000.0
    # Right label: ℓ = log1p(e^{−1000}) ≈ 5e-435, which is 0 in float64.
    assert 0.0 <= loss[1] <= 1e-300 and 0.0 <= loss[3] <= 1e-300
    # The naive formula really does break there (so the test above is not vacuous).
    with np.errstate(all="ignore"):
        assert not np.all(np.isfinite(naive_log_loss(z, y)))


def test_log_loss_is_nonnegative():
    rng = np.random.default_rng(1)
    z = rng.standard_normal(5000) * 10 ** rng.uniform(-3, 3, 5000)
    y = rng.integers(0, 2, 5000).astype(float)
    assert np.all(log_loss(z, y) >= 0.0)


# ------------------------------------------------------------------------------ sigmoid


def test_sigmoid_no_overflow_warnings_at_extremes():
    z = np.array(
        [
            -1e308,
            -1e5,
            -1000.0,
            -745.1,
            -709.8,
            -36.0,
            0.0,
            36.0,
            709.8,
            1000.0,
            1e5,
            1e308,
            np.inf,
            -np.inf,
        ]
    )
    with _StrictFloats():
        s = sigmoid(z)
        r = residual(z, np.ones_like(z))
    assert np.all((s >= 0.0) & (s <= 1.0))
    assert s[0] == 0.0 and s[-3] == 1.0 and s[-2] == 1.0 and s[-1] == 0.0
    assert s[6] == 0.5
    assert np.all(np.isfinite(r))


@pytest.mark.parametrize(
    "z", [-740.0, -700.0, -100.0, -20.0, -1.0, -1e-8, 0.0, 1e-8, 0.7, 5.0, 20.0, 36.0, 50.0, 700.0]
)
def test_sigmoid_matches_60_digit_reference(z):
    got = float(sigmoid(np.array([z]))[0])
    want = decimal_sigmoid(z)
    # Relative accuracy, including deep in the left tail where σ(z) ≈ e^z is tiny
    # (σ(−740) ≈ 4e-322 is subnormal: there only absolute accuracy ~ 5e-324 is possible).
    assert abs(got - want) <= 4 * EPS * want + 5e-324, (z, got, want)


def test_residual_is_sigma_minus_y():
    rng = np.random.default_rng(2)
    z = rng.uniform(-30, 30, 500)
    y = rng.integers(0, 2, 500).astype(float)
    want = np.array([decimal_sigmoid(v) for v in z]) - y
    np.testing.assert_allclose(residual(z, y), want, rtol=0, atol=4 * EPS)


# ------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("with_weights", [False, True])
def test_batch_sums_match_brute_force(with_weights):
    rng = np.random.default_rng(3)
    m, d = 37, 6
    X = rng.standard_normal((m, d)) * rng.uniform(0.1, 3, d)
    y = rng.integers(0, 2, m).astype(float)
    w, b = rng.standard_normal(d), 0.3
    sw = rng.uniform(0, 3, m) if with_weights else None
    sums = _model_at(w, b).batch_sums(X, y, sw)
    G = per_sample_gradients(X, y, w, b, sw)
    assert sums.n_samples == m
    np.testing.assert_allclose(sums.gradient_sum, G.sum(axis=0), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(sums.gradient_squared_norm_sum, float((G * G).sum()), rtol=1e-12)
    # The loss sum is unweighted (documented): the pre-step log loss of every sample.
    np.testing.assert_allclose(sums.loss_sum, m * mean_loss_ref(X, y, w, b), rtol=1e-12)
    z = X @ w + b
    assert sums.n_misclassified == int(np.sum((z >= 0) != (y == 1)))


def test_misclassified_counts_z_equal_zero_as_class_one():
    X = np.zeros((5, 2))
    y = np.array([0, 1, 0, 1, 0], dtype=float)
    sums = _model_at(np.zeros(2), 0.0).batch_sums(X, y)
    assert sums.n_misclassified == 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_gradient_matches_central_finite_differences(seed):
    rng = np.random.default_rng(10 + seed)
    m, d = 25, 4
    X = rng.standard_normal((m, d))
    y = rng.integers(0, 2, m).astype(float)
    w, b = rng.standard_normal(d), float(rng.standard_normal())
    gbar = _model_at(w, b).batch_sums(X, y).mean_gradient

    theta0 = np.append(w, b)
    h = 1e-5
    fd = np.empty(d + 1)
    for j in range(d + 1):
        tp, tm = theta0.copy(), theta0.copy()
        tp[j] += h
        tm[j] -= h
        fd[j] = (mean_loss_ref(X, y, tp[:d], tp[d]) - mean_loss_ref(X, y, tm[:d], tm[d])) / (2 * h)
    # Central differences: truncation error h²/6·|L'''| (|L'''| ≲ ‖x‖³/10 ≈ a few here,
    # so ~1e-10) plus rounding ≈ eps·L/h ≈ 1e-11. 1e-7 is far above both, far below any
    # real error (a wrong sign, a missing 1/m or a missing intercept term are O(0.1)).
    np.testing.assert_allclose(gbar, fd, rtol=0, atol=1e-7)


def test_model_loss_is_consistent_with_its_gradient():
    """Finite differences of the model's *own* reported loss give its own ḡ."""
    rng = np.random.default_rng(20)
    m, d = 16, 3
    X = rng.standard_normal((m, d))
    y = rng.integers(0, 2, m).astype(float)
    theta0 = rng.standard_normal(d + 1)
    g = _model_at(theta0[:d], theta0[d]).batch_sums(X, y).mean_gradient
    h = 1e-5
    for j in range(d + 1):
        tp, tm = theta0.copy(), theta0.copy()
        tp[j] += h
        tm[j] -= h
        lp = _model_at(tp[:d], tp[d]).batch_sums(X, y).loss_sum / m
        lm = _model_at(tm[:d], tm[d]).batch_sums(X, y).loss_sum / m
        assert abs((lp - lm) / (2 * h) - g[j]) < 1e-7


def test_gradient_is_finite_at_huge_scores():
    X = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]])
    y = np.array([0.0, 1.0, 1.0, 0.0])
    with _StrictFloats():
        # κ = 0: the scores themselves must be huge here, not clipped to the row scale.
        sums = _model_at(np.ones(1), 0.0, clip_norm_ratio=0.0).batch_sums(X, y)
    # r = σ(z) − y is +1, −1, 0, 0 → g = r·[x; 1].
    np.testing.assert_array_equal(sums.gradient_sum, [2000.0, 0.0])
    assert sums.loss_sum == 2000.0
    assert sums.gradient_squared_norm_sum == 2 * (1000.0**2 + 1)
