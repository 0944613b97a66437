"""Statistical properties of the minibatch gradient (docs/design.md, The math), over many
seeded minibatches drawn uniformly *with replacement* from a fixed finite dataset, at fixed weights:

* E[ḡ] = G, the full-data gradient (unbiased);
* Cov(ḡ) = Σ/m, with Σ the population (ddof = 0) covariance of one per-sample gradient;
* E[tr Σ̂] = tr Σ for the within-batch ddof = 1 estimate;
* E[‖ḡ‖² − tr Σ̂/m] = ‖G‖², whereas E‖ḡ‖² = ‖G‖² + tr Σ/m is biased upward.

Every tolerance is 5 standard errors of the quantity being averaged, the standard error
estimated from the same draws (sd/√n_draws). The draws are seeded, so the test is
deterministic; were it not, a false failure would happen with probability ~6e-7 per check.
All the expected values come from brute-force per-sample gradients of the whole dataset
(tests/support/reference.py), never from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression
from streamsgd.core.gradient_stats import RunningGradientStatistics
from tests.support.reference import per_sample_gradients, sigmoid_ref

N, D = 300, 4
N_DRAWS = 3000
MS = [1, 4, 16, 64]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(2024)
    X = rng.standard_normal((N, D)) * np.array([1.0, 2.0, 0.5, 1.0]) + np.array([0.3, 0, 0, -1])
    w_true = np.array([1.0, -0.5, 2.0, 0.0])
    y = (rng.random(N) < sigmoid_ref(X @ w_true - 0.2)).astype(float)
    # Weights near (but not at) the truth: a small full gradient G relative to the noise,
    # which is the regime where the |G|² bias matters.
    theta = np.array([0.8, -0.4, 1.7, 0.1, 0.0])
    G_all = per_sample_gradients(X, y, theta[:-1], theta[-1])  # (N, D + 1)
    G = G_all.mean(axis=0)
    tr_sigma = float(np.trace(np.cov(G_all, rowvar=False, ddof=0)))
    model = OnlineLogisticRegression(D)
    state = model.get_state()
    state["theta"] = theta
    model = OnlineLogisticRegression.from_state(state)

    draws = {}
    for m in MS:
        rng_m = np.random.default_rng([7, m])
        gbar = np.empty((N_DRAWS, D + 1))
        trace_hat = np.empty(N_DRAWS)
        for k in range(N_DRAWS):
            idx = rng_m.integers(0, N, m)
            sums = model.batch_sums(X[idx], y[idx])
            gbar[k] = sums.mean_gradient
            trace_hat[k] = sums.gradient_variance
        draws[m] = (gbar, trace_hat)
    return dict(G=G, tr_sigma=tr_sigma, draws=draws, X=X, y=y, theta=theta)


@pytest.mark.parametrize("m", MS)
def test_minibatch_gradient_is_unbiased(problem, m):
    gbar, _ = problem["draws"][m]
    G = problem["G"]
    mean = gbar.mean(axis=0)
    se = gbar.std(axis=0, ddof=1) / math.sqrt(N_DRAWS)
    assert np.all(np.abs(mean - G) <= 5 * se), (mean, G, se)
    # Not vacuous: a sum-instead-of-mean error (E = m·G) would fail the same check at m > 1.
    if m > 1:
        assert not np.all(np.abs(m * G - G) <= 5 * se)


@pytest.mark.parametrize("m", MS)
def test_covariance_of_minibatch_gradient_scales_as_one_over_m(problem, m):
    """tr Cov(ḡ) = tr Σ / m.

    Estimator and its error, derived: with G known, Q_k = ‖ḡ_k − G‖² are iid with
    E[Q] = tr Cov(ḡ) = tr Σ/m, so mean(Q) is unbiased with standard error sd(Q)/√n, and
    sd(Q) is estimated from the same n draws. (If ḡ were Gaussian this relative standard
    error would be √(2 tr(C²)/n)/tr C ≤ √(2/n) ≈ 2.6% for n = 3000, the chi-square value;
    at m = 1 the per-sample gradients are far from Gaussian, which is why the empirical
    sd(Q) is used instead of that bound.) The usual sample covariance tr np.cov(ḡ, ddof=1)
    is also unbiased for tr C and differs from mean(Q)·n/(n−1) by ‖mean(ḡ) − G‖²·n/(n−1),
    which is O(tr C/n), i.e. ~1/√n of the tolerance; it gets the same 5-SE tolerance.
    """
    gbar, _ = problem["draws"][m]
    G, tr_sigma = problem["G"], problem["tr_sigma"]
    Q = ((gbar - G) ** 2).sum(axis=1)
    se = Q.std(ddof=1) / math.sqrt(N_DRAWS)
    assert abs(m * Q.mean() - tr_sigma) <= 5 * m * se, (m * Q.mean(), tr_sigma, m * se)
    tr_cov = float(np.trace(np.cov(gbar, rowvar=False, ddof=1)))
    assert abs(m * tr_cov - tr_sigma) <= 5 * m * se, (m * tr_cov, tr_sigma)
    # The tolerance is tight enough to tell 1/m from, e.g., 1/√m or 1/(m−1) scaling at m ≥ 4.
    assert 5 * m * se < 0.2 * tr_sigma


def test_variance_ratio_between_batch_sizes(problem):
    """The same fact as one number: tr Cov(ḡ) at m = 1 over that at m = 64 is 64."""
    G = problem["G"]
    q1 = ((problem["draws"][1][0] - G) ** 2).sum(axis=1)
    q64 = ((problem["draws"][64][0] - G) ** 2).sum(axis=1)
    ratio = q1.mean() / q64.mean()
    # Delta method: rel. sd of a ratio of independent means = √(r1² + r2²).
    rel = math.hypot(q1.std(ddof=1) / q1.mean(), q64.std(ddof=1) / q64.mean()) / math.sqrt(N_DRAWS)
    assert abs(ratio / 64 - 1) <= 5 * rel, (ratio, rel)


@pytest.mark.parametrize("m", [4, 16, 64])
def test_within_batch_trace_is_unbiased(problem, m):
    """E[tr Σ̂] (ddof = 1 within a batch drawn with replacement) = tr Σ (ddof = 0 over the
    finite dataset)."""
    _, trace_hat = problem["draws"][m]
    se = trace_hat.std(ddof=1) / math.sqrt(N_DRAWS)
    assert abs(trace_hat.mean() - problem["tr_sigma"]) <= 5 * se


@pytest.mark.parametrize("m", [4, 16, 64])
def test_unbiased_squared_gradient_norm(problem, m):
    gbar, trace_hat = problem["draws"][m]
    G, tr_sigma = problem["G"], problem["tr_sigma"]
    G2 = float(G @ G)
    sq = (gbar**2).sum(axis=1)
    est = sq - trace_hat / m
    se_est = est.std(ddof=1) / math.sqrt(N_DRAWS)
    se_sq = sq.std(ddof=1) / math.sqrt(N_DRAWS)
    # ‖ḡ‖² − tr Σ̂/m is unbiased for ‖G‖² ...
    assert abs(est.mean() - G2) <= 5 * se_est, (est.mean(), G2, se_est)
    # ... while ‖ḡ‖² is biased upward by exactly tr Σ/m, and detectably so.
    assert abs(sq.mean() - (G2 + tr_sigma / m)) <= 5 * se_sq
    assert sq.mean() - G2 > 5 * se_sq


# ------------------------------------------------------------------ the objective's |G|²
L2 = 0.3


def _model_at(theta: np.ndarray, **params: float) -> OnlineLogisticRegression:
    state = OnlineLogisticRegression(len(theta) - 1, **params).get_state()  # type: ignore[arg-type]
    state["theta"] = theta.copy()
    return OnlineLogisticRegression.from_state(state)


@pytest.mark.parametrize("m", [4, 16])
def test_objective_squared_gradient_norm_is_unbiased_with_l2(problem, m):
    """With λ₂ > 0 the per-step estimate the model folds in, e = ‖ḡ + λ₂[w;0]‖² − tr Σ̂/m at
    the pre-step w (the first step's e is the smoothed value itself), has mean |∇J(w)|² =
    ‖G + λ₂[w;0]‖², J = mean loss + λ₂‖w‖²/2 on the full data (brute force); the
    loss-only target ‖G‖² is detectably different."""
    X, y, theta, G = problem["X"], problem["y"], problem["theta"], problem["G"]
    target = G + np.append(L2 * theta[:-1], 0.0)
    base = _model_at(theta, l2=L2, learning_rate=0.01, clip_norm_ratio=0.0).get_state()
    rng = np.random.default_rng([17, m])
    estimates = np.empty(N_DRAWS)
    for k in range(N_DRAWS):
        model = OnlineLogisticRegression.from_state(base)
        idx = rng.integers(0, N, m)
        model.learn_batch(X[idx], y[idx])
        estimates[k] = model.gradient_stats.true_gradient_squared_norm
    se = estimates.std(ddof=1) / math.sqrt(N_DRAWS)
    assert abs(estimates.mean() - float(target @ target)) <= 5 * se
    assert abs(float(G @ G) - float(target @ target)) > 5 * se


def _regularised_optimum(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """θ* of mean loss + λ₂‖w‖²/2 by full-batch steps of the model (to convergence)."""
    model = OnlineLogisticRegression(X.shape[1], learning_rate=1.0, l2=L2, clip_norm_ratio=0.0)
    for _ in range(400):
        model.learn_batch(X, y)
    return model.parameters.copy()


def test_statistics_at_the_regularised_optimum_report_no_gradient(problem):
    """At θ* the objective's |∇J|² is < 1e-24 while the loss part alone is ‖λ₂ w*‖² ≈ 0.015.
    Minibatches (m = 16, with replacement) at θ*: Ḡ² is 0 within its standard error and
    the statistics are not trusted (no noise scale), where the loss-only |G|² of the
    issue's measurement would read ‖λ₂ w*‖², more than 4 standard errors: trusted."""
    X, y = problem["X"], problem["y"]
    theta = _regularised_optimum(X, y)
    G_all = per_sample_gradients(X, y, theta[:-1], theta[-1])
    rho = np.append(L2 * theta[:-1], 0.0)
    grad_J = G_all.mean(axis=0) + rho
    assert float(grad_J @ grad_J) < 1e-24
    model = _model_at(theta, l2=L2, clip_norm_ratio=0.0)
    stats = RunningGradientStatistics()
    rng = np.random.default_rng(5)
    trusted = 0
    for _ in range(3000):
        idx = rng.integers(0, N, 16)
        stats.update(model.batch_sums(X[idx], y[idx]), rho)
        trusted += stats.trusted
    assert not stats.trusted and math.isnan(stats.noise_scale)
    assert trusted <= 30  # ≤ 1 % of the steps
    assert abs(stats.true_gradient_squared_norm) <= 3 * stats.standard_error
    assert float(rho @ rho) > 4 * stats.standard_error


def _population_sums(rng, model, w_true, m):
    X = rng.standard_normal((m, len(w_true)))
    if w_true is None or not np.any(w_true):
        y = (rng.random(m) < 0.5).astype(float)
    else:
        y = (rng.random(m) < sigmoid_ref(X @ w_true)).astype(float)
    return model.batch_sums(X, y)


def test_trusted_gate_is_false_on_pure_noise():
    """Labels independent of x, at the optimum w = 0, b = 0 of the population (G = 0
    exactly), fresh i.i.d. batches: the gate stays shut (≤ 1 % of the steps)."""
    rng = np.random.default_rng(6)
    model, stats = OnlineLogisticRegression(4), RunningGradientStatistics()
    trusted = 0
    for _ in range(3000):
        stats.update(_population_sums(rng, model, np.zeros(4), 16))
        trusted += stats.trusted
    assert trusted <= 30 and not stats.trusted
    assert math.isnan(stats.noise_scale)


def test_trusted_gate_is_true_on_a_known_signal():
    """w = 0 far from w_true: the gate opens within 100 steps and B is within a factor 2
    of tr Σ/|G|² measured on 200 000 fresh samples (brute force)."""
    rng = np.random.default_rng(7)
    w_true = np.array([2.0, -1.0, 1.0, 0.5])
    model, stats = OnlineLogisticRegression(4), RunningGradientStatistics()
    opened = None
    for step in range(300):
        stats.update(_population_sums(rng, model, w_true, 16))
        if opened is None and stats.trusted:
            opened = step
    assert opened is not None and opened < 100 and stats.trusted
    X = rng.standard_normal((200_000, 4))
    y = (rng.random(200_000) < sigmoid_ref(X @ w_true)).astype(float)
    G_all = per_sample_gradients(X, y, np.zeros(4), 0.0)
    G = G_all.mean(axis=0)
    noise_scale = float(np.trace(np.cov(G_all, rowvar=False))) / float(G @ G)
    assert noise_scale / 2 <= stats.noise_scale <= 2 * noise_scale
