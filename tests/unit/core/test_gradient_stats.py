"""BatchSums statistics against brute-force per-sample gradient matrices, additivity of the
sums across replicas, and the EWMA recursions of RunningGradientStatistics."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from streamsgd import BatchSums, OnlineLogisticRegression
from streamsgd.core.gradient_stats import RunningGradientStatistics
from tests.support.reference import per_sample_gradients, sigmoid_ref, trace_cov_ddof1

EPS = np.finfo(np.float64).eps


def _model_at(theta, **params):
    model = OnlineLogisticRegression(len(theta) - 1, **params)
    state = model.get_state()
    state["theta"] = np.asarray(theta, dtype=float)
    return OnlineLogisticRegression.from_state(state)


def _data(seed, m, d=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, d)) * rng.uniform(0.2, 2.0, d)
    y = rng.integers(0, 2, m).astype(float)
    theta = rng.standard_normal(d + 1) * 0.5
    return X, y, theta


# ------------------------------------------------------------------------------ per batch


@pytest.mark.parametrize("m", [2, 3, 8, 100, 1000])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_variance_equals_trace_of_np_cov(m, weighted):
    X, y, theta = _data(m, m)
    sw = np.random.default_rng(m + 1).uniform(0, 2, m) if weighted else None
    model = _model_at(theta, learning_rate=0.1)
    stats = model.learn_batch(X, y, sw)
    G = per_sample_gradients(X, y, theta[:-1], theta[-1], sw)
    want = trace_cov_ddof1(G)
    # The one-pass formula (Σ‖g_i‖² − m‖ḡ‖²)/(m−1) that additive sums require loses about
    # eps·Σ‖g_i‖²/(m−1) to cancellation; allow a few times that on top of rtol 1e-9.
    slack = 16 * EPS * float((G * G).sum()) / (m - 1)
    assert abs(stats.gradient_variance - want) <= 1e-9 * want + slack
    assert stats.gradient_norm == pytest.approx(np.linalg.norm(G.mean(axis=0)), rel=1e-12)
    assert stats.estimator_variance == pytest.approx(want / m, rel=1e-9)


def test_gradient_variance_is_nan_for_a_single_sample():
    X, y, theta = _data(0, 1)
    stats = _model_at(theta).learn_batch(X, y)
    assert math.isnan(stats.gradient_variance)
    assert math.isnan(stats.estimator_variance)
    G = per_sample_gradients(X, y, theta[:-1], theta[-1])
    assert stats.gradient_norm == pytest.approx(np.linalg.norm(G[0]), rel=1e-12)


def test_gradient_variance_of_identical_samples_is_zero_not_negative():
    X = np.tile(np.array([[0.3, -1.7, 2.2]]), (50, 1))
    y = np.ones(50)
    stats = _model_at(np.array([0.1, 0.2, 0.3, 0.4])).learn_batch(X, y)
    assert stats.gradient_variance >= 0.0
    assert stats.gradient_variance <= 1e-12


# ------------------------------------------------------------------------------ additivity


@pytest.mark.parametrize("split", [1, 7, 32, 63])
@pytest.mark.parametrize("weighted", [False, True])
def test_batch_sums_are_additive(split, weighted):
    m = 64
    X, y, theta = _data(5, m)
    sw = np.random.default_rng(6).uniform(0, 2, m) if weighted else None
    model = _model_at(theta)
    part = lambda sl: model.batch_sums(X[sl], y[sl], None if sw is None else sw[sl])  # noqa: E731
    merged = part(slice(0, split)) + part(slice(split, m))
    union = part(slice(0, m))
    assert merged.n_samples == union.n_samples == m
    assert merged.n_misclassified == union.n_misclassified
    np.testing.assert_allclose(merged.gradient_sum, union.gradient_sum, rtol=1e-12, atol=1e-13)
    assert merged.gradient_squared_norm_sum == pytest.approx(
        union.gradient_squared_norm_sum, rel=1e-12
    )
    assert merged.loss_sum == pytest.approx(union.loss_sum, rel=1e-12)
    # Statistics of the merged sums are the statistics of the union (brute force).
    G = per_sample_gradients(X, y, theta[:-1], theta[-1], sw)
    assert merged.gradient_variance == pytest.approx(trace_cov_ddof1(G), rel=1e-9)
    np.testing.assert_allclose(merged.mean_gradient, G.mean(axis=0), rtol=1e-12, atol=1e-14)
    # And the step taken from the merged sums is the step on the union batch.
    a, b = (
        _model_at(theta, learning_rate=0.3, l2=0.1, l1=0.01),
        _model_at(theta, learning_rate=0.3, l2=0.1, l1=0.01),
    )
    a.apply_step(merged)
    b.learn_batch(X, y, sw)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-12, atol=1e-15)
    assert a.intercept_ == pytest.approx(b.intercept_, rel=1e-12)
    assert a.n_samples_seen == b.n_samples_seen == m


def test_sparse_batch_sums_add_up_like_dense_ones():
    """Sums of sparse batches (gradient kept at the touched columns) add with each other and
    with dense sums into the sums of the union batch."""
    from streamsgd import SparseRows

    rng = np.random.default_rng(3)
    d = 400  # nnz well below d: the sparse form
    theta = rng.standard_normal(d + 1) * 0.3
    parts = []
    for cols in ([1, 5, 7], [5, 9], [0, 399, 7]):
        rows = [(np.array(cols, dtype=np.int64), rng.standard_normal(len(cols))) for _ in range(4)]
        parts.append((SparseRows.from_rows(rows, d), (rng.random(4) < 0.5).astype(float)))
    model = _model_at(theta)
    sparse = [model.batch_sums(S, y) for S, y in parts]
    assert all(s.gradient_columns is not None for s in sparse)
    dense = [model.batch_sums(S.to_dense(), y) for S, y in parts]
    union = sparse[0] + sparse[1] + sparse[2]
    mixed = sparse[0] + dense[1] + sparse[2]
    want = dense[0] + dense[1] + dense[2]
    for got in (union, mixed):
        np.testing.assert_allclose(got.dense_gradient_sum(d), want.gradient_sum, rtol=1e-12)
        assert got.n_samples == 12
        assert got.gradient_variance == pytest.approx(want.gradient_variance, rel=1e-10)
        assert got.mean_gradient_squared_norm == pytest.approx(
            want.mean_gradient_squared_norm, rel=1e-12
        )
    assert np.array_equal(union.gradient_columns, [0, 1, 5, 7, 9, 399])


def test_a_single_sample_batch_after_larger_ones_keeps_their_estimates():
    """Once a batch with m ≥ 2 has been seen, a batch of one (a partial flush) has no
    variance of its own: the within-batch estimates stand, they are not replaced by the
    across-step estimate of the m = 1 regime."""
    X, y, theta = _data(4, 65)
    model = _model_at(theta, learning_rate=0.05)
    model.learn_batch(X[:64], y[:64])
    stats = model.gradient_stats
    before = (stats.per_sample_variance, stats.estimator_variance)
    model.learn_batch(X[64:], y[64:])
    assert (stats.per_sample_variance, stats.estimator_variance) == before
    assert stats.last_batch_size == 1


def test_additivity_over_many_replicas():
    m = 90
    X, y, theta = _data(11, m)
    model = _model_at(theta)
    cuts = [0, 5, 6, 40, 41, 77, 90]
    parts = [model.batch_sums(X[lo:hi], y[lo:hi]) for lo, hi in itertools.pairwise(cuts)]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    G = per_sample_gradients(X, y, theta[:-1], theta[-1])
    assert total.n_samples == m
    assert total.gradient_variance == pytest.approx(trace_cov_ddof1(G), rel=1e-9)
    assert total.mean_gradient_squared_norm == pytest.approx(
        float(G.mean(0) @ G.mean(0)), rel=1e-12
    )


# ------------------------------------------------------------------------------ running stats


def _hand_ewma(values, a):
    """The mean of the first 1/a values (α_n = 1/n), then the EWMA with α = a."""
    out = None
    for n, v in enumerate(values, 1):
        out = v if out is None else out + max(a, 1.0 / n) * (v - out)
    return out


@pytest.mark.parametrize("m,alpha", [(2, 0.05), (4, 0.3), (16, 1.0)])
def test_running_statistics_follow_the_ewma_recursion(m, alpha):
    rng = np.random.default_rng(m)
    d, n_steps = 4, 30
    # A small learning rate keeps |G|² clearly positive, so B_noise is a finite ratio here
    # (the ≤ 0 case is tested separately).
    model = OnlineLogisticRegression(d, learning_rate=0.01, stats_smoothing=alpha)
    model.gradient_stats.min_smoothing = alpha  # a fixed window: the plain recursion
    traces, g2s = [], []
    for _ in range(n_steps):
        X = rng.standard_normal((m, d)) + 0.5
        y = (rng.random(m) < 0.8).astype(float)
        G = per_sample_gradients(X, y, model.coef_, model.intercept_)
        traces.append(trace_cov_ddof1(G))
        g = G.mean(axis=0)
        g2s.append(float(g @ g))
        model.learn_batch(X, y)
    tr, g2 = np.array(traces), np.array(g2s)
    s = model.gradient_stats
    want_tr = _hand_ewma(tr, alpha)
    want_est = _hand_ewma(tr / m, alpha)
    want_g2 = _hand_ewma(g2, alpha)  # ‖ḡ‖² of the objective (no L2 term here)
    # The loss-only ‖ḡ‖² is smoothed with α from the first step (m = 1 shares it).
    plain_g2 = None
    for value in g2:
        plain_g2 = value if plain_g2 is None else plain_g2 + alpha * (value - plain_g2)
    want_G2 = _hand_ewma(g2 - tr / m, alpha)
    assert s.per_sample_variance == pytest.approx(want_tr, rel=1e-9)
    assert s.estimator_variance == pytest.approx(want_est, rel=1e-9)
    assert s.mean_gradient_squared_norm == pytest.approx(plain_g2, rel=1e-9)
    assert s.objective_gradient_squared_norm == pytest.approx(want_g2, rel=1e-9)
    assert s.true_gradient_squared_norm == pytest.approx(want_G2, rel=1e-9)
    assert want_G2 > 0
    assert s.per_sample_variance / s.true_gradient_squared_norm == pytest.approx(
        want_tr / want_G2, rel=1e-8
    )
    assert s.noise_scale == pytest.approx(want_tr / want_G2, rel=1e-8) or not s.trusted
    assert s.norm_test_ratio == pytest.approx(want_est / want_g2, rel=1e-9)
    assert s.last_batch_size == m


def test_noise_scale_is_a_ratio_of_ewmas_not_an_ewma_of_ratios():
    """Two hand-made batches: (tr Σ̂, |G|²_est) = (4, 1) then (4, 3). With α = 0.5:
    ratio of EWMAs = 4 / 2 = 2; EWMA of ratios = (4 + 4/3)/2 = 8/3."""
    stats = RunningGradientStatistics(smoothing=0.5)

    def sums(g_mean, trace, m=2):
        # Choose Σ‖g_i‖² so that (Σ‖g_i‖² − m‖ḡ‖²)/(m−1) = trace.
        g_mean = np.asarray(g_mean, dtype=float)
        sq = (m - 1) * trace + m * float(g_mean @ g_mean)
        return BatchSums(m, m * g_mean, sq, 0.0, 0)

    # |G|²_est = ‖ḡ‖² − tr/m: ‖ḡ‖² = 3 → 3 − 2 = 1; ‖ḡ‖² = 5 → 5 − 2 = 3.
    b1, b2 = sums([math.sqrt(3.0), 0.0], 4.0), sums([0.0, math.sqrt(5.0)], 4.0)
    assert b1.gradient_variance == pytest.approx(4.0) and b2.gradient_variance == pytest.approx(4.0)
    stats.update(b1)
    stats.update(b2)
    assert stats.per_sample_variance == pytest.approx(4.0)
    assert stats.true_gradient_squared_norm == pytest.approx(2.0)
    ratio = stats.per_sample_variance / stats.true_gradient_squared_norm
    assert ratio == pytest.approx(2.0, rel=1e-12)
    assert abs(ratio - 8.0 / 3.0) > 0.5
    # Two steps are not enough to trust anything: the exported noise scale is NaN.
    assert not stats.trusted and math.isnan(stats.noise_scale)
    # Norm-test ratio: smoothed(tr/m) / smoothed(‖ḡ‖²) = 2 / 4.
    assert stats.norm_test_ratio == pytest.approx(0.5, rel=1e-12)


def test_noise_scale_edge_cases():
    s = RunningGradientStatistics(smoothing=0.1)
    assert math.isnan(s.noise_scale) and math.isnan(s.norm_test_ratio)
    # A batch whose |G|² estimate is ≤ 0 (pure noise): no noise scale (NaN, never ±inf),
    # and a zero ‖ḡ‖² gives a NaN norm-test ratio, not inf.
    s.update(BatchSums(2, np.zeros(3), 2.0, 0.0, 0))
    assert math.isnan(s.noise_scale) and not s.trusted
    assert math.isnan(s.norm_test_ratio)
    # Ḡ² ≤ 0 widens the window (α halves, down to α_min).
    assert s.window_smoothing < s.smoothing


def test_single_sample_across_step_recursion_by_hand():
    """m = 1: hand-computed EWMAs of g and ‖g‖², and tr Σ = (E‖g‖² − ‖E g‖²)/(1 − v),
    |G|² = ‖E g‖² − v·tr Σ with v = Σ ω_k² of the EWMA weights (→ α/(2 − α))."""
    a = 0.2
    rng = np.random.default_rng(3)
    gs = rng.standard_normal((12, 3))
    stats = RunningGradientStatistics(smoothing=a)
    M, S, v = None, None, 1.0
    for k, g in enumerate(gs):
        stats.update(BatchSums(1, g.copy(), float(g @ g), 0.0, 0))
        M = g.copy() if M is None else M + a * (g - M)
        S = float(g @ g) if S is None else S + a * (float(g @ g) - S)
        weights = np.array([a * (1 - a) ** (k - j) for j in range(1, k + 1)] + [(1 - a) ** k])
        v = float(weights @ weights)
        assert stats.weight_square_sum == pytest.approx(v, rel=1e-12)
        c = v
        if k == 0:
            assert math.isnan(stats.per_sample_variance)  # one draw: no spread to see
            continue
        trace = (S - float(M @ M)) / (1 - c)
        assert stats.per_sample_variance == pytest.approx(trace, rel=1e-9, abs=1e-15)
        assert stats.estimator_variance == pytest.approx(trace, rel=1e-9, abs=1e-15)
        assert stats.true_gradient_squared_norm == pytest.approx(float(M @ M) - c * trace, rel=1e-9)
        if k >= 1:  # finite and positive after two different gradients
            assert math.isfinite(stats.per_sample_variance) and stats.per_sample_variance > 0


def test_single_sample_estimate_through_the_model_is_positive_after_a_few_steps():
    rng = np.random.default_rng(4)
    model = OnlineLogisticRegression(3, learning_rate=0.05)
    for _ in range(3):
        model.learn_batch(rng.standard_normal((1, 3)), [float(rng.integers(0, 2))])
    v = model.gradient_stats.per_sample_variance
    assert math.isfinite(v) and v > 0
    # Three steps are far from enough to trust the estimates.
    assert math.isnan(model.gradient_stats.noise_scale)


@pytest.mark.parametrize("alpha,t,R", [(0.05, 200, 100), (0.5, 40, 400)])
def test_single_sample_variance_is_unbiased_on_a_stationary_problem(alpha, t, R):
    """m = 1 with fixed weights (learning rate 1e-12: over t ≤ 200 steps the weights move by
    < 1e-9, so Σ is stationary to far below the tolerance). For the EWMA started at its first
    value, the weights w_k of the t draws sum to 1 and Σ w_k² = c + (1 − c)(1 − α)^{2(t−1)}, so

        E[S_t] = E‖g‖²,   E‖M_t‖² = ‖G‖² + Σ w_k² · tr Σ,
        E[(S_t − ‖M_t‖²)/(1 − c)] = tr Σ · (1 − (1 − α)^{2(t−1)})

    (the factor is 1 − 1.4e-9 for α = 0.05, t = 200 and 1 − 3e-24 for α = 0.5, t = 40). So
    the mean over R independent runs is an unbiased estimate of tr Σ (population covariance:
    draws are uniform with replacement from a finite set) and the tolerance is 5 standard
    errors, the sd taken from the R runs. α = 0.05 is the default smoothing; at α = 0.5 the
    (1 − c) correction is 33%, larger than the tolerance, so leaving it out would fail here."""
    rng = np.random.default_rng(12)
    N, d = 40, 3
    X = rng.standard_normal((N, d)) + np.array([0.5, 0.0, -0.3])
    theta = np.array([0.8, -0.5, 0.3, 0.2])
    y = (rng.random(N) < sigmoid_ref(X @ theta[:-1] + theta[-1])).astype(float)
    G = per_sample_gradients(X, y, theta[:-1], theta[-1])
    tr_sigma = float(np.trace(np.cov(G, rowvar=False, ddof=0)))
    g_full = G.mean(axis=0)
    G2 = float(g_full @ g_full)
    c = alpha / (2 - alpha)

    base = _model_at(theta, learning_rate=1e-12, stats_smoothing=alpha).get_state()
    est_tr, est_G2 = np.empty(R), np.empty(R)
    for r in range(R):
        model = OnlineLogisticRegression.from_state(base)
        idx = np.random.default_rng([99, r]).integers(0, N, t)
        for i in idx:
            model.learn_batch(X[i : i + 1], y[i : i + 1])
        est_tr[r] = model.gradient_stats.per_sample_variance
        est_G2[r] = model.gradient_stats.true_gradient_squared_norm
        assert np.allclose(model.parameters, theta, rtol=0, atol=1e-8)
    assert np.all(est_tr > 0)
    se = est_tr.std(ddof=1) / math.sqrt(R)
    assert abs(est_tr.mean() - tr_sigma) <= 5 * se, (est_tr.mean(), tr_sigma, se)
    # Not vacuous: the standard error is small compared with tr Σ itself ...
    assert 5 * se < 0.2 * tr_sigma
    if alpha >= 0.5:  # ... and, at α = 0.5, with the size of the (1 − c) correction.
        assert 5 * se < c * tr_sigma
    se2 = est_G2.std(ddof=1) / math.sqrt(R)
    assert abs(est_G2.mean() - G2) <= 5 * se2, (est_G2.mean(), G2, se2)


def test_state_round_trip_of_running_statistics():
    rng = np.random.default_rng(5)
    a = RunningGradientStatistics(smoothing=0.1)
    for m in (1, 1, 3, 5):
        g = rng.standard_normal(4)
        a.update(BatchSums(m, m * g, m * float(g @ g) + m, 0.0, 0))
    b = RunningGradientStatistics.from_state(a.get_state())
    for m in (4, 1, 6):
        g = rng.standard_normal(4)
        s = BatchSums(m, m * g, m * float(g @ g) + 2.0, 0.0, 0)
        a.update(s)
        b.update(s)
    assert a.get_state().keys() == b.get_state().keys()
    for key, va in a.get_state().items():
        vb = b.get_state()[key]
        if isinstance(va, np.ndarray):
            assert va.tobytes() == vb.tobytes()
        else:
            assert va == vb or (math.isnan(va) and math.isnan(vb)), key


def test_smoothing_one_at_m1_reports_nan_instead_of_dividing_by_zero():
    """α = 1 keeps a single step in every EWMA: there is no across-step variance."""
    model = OnlineLogisticRegression(3, stats_smoothing=1.0)
    X = np.random.default_rng(0).normal(size=(5, 3))
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0])
    for i in range(5):
        model.learn_batch(X[i : i + 1], y[i : i + 1])
    assert math.isnan(model.gradient_stats.per_sample_variance)
    assert model.n_updates == 5


def test_standard_error_matches_the_spread_of_the_smoothed_estimate_across_runs():
    """SE = √(D·v) estimates the sd of Ḡ² itself: over R independent stationary runs (fixed
    window α = 0.05, per-sample gradients N(G, I_k), m = 8) the mean reported SE is within
    15 % of the empirical sd of the final Ḡ² (whose own relative error is ≈ 1/√(2R) = 5 %),
    and the mean Ḡ² is |G|² within 5 of those sds over √R."""
    k, m, R, steps = 10, 8, 200, 400
    G = np.full(k, 0.1)
    finals, ses = np.empty(R), np.empty(R)
    for r in range(R):
        rng = np.random.default_rng([31, r])
        stats = RunningGradientStatistics(smoothing=0.05, min_smoothing=0.05)
        for _ in range(steps):
            g = G + rng.standard_normal((m, k))
            stats.update(BatchSums(m, g.sum(axis=0), float(np.einsum("ij,ij->", g, g)), 0.0, 0))
        finals[r], ses[r] = stats.true_gradient_squared_norm, stats.standard_error
        assert stats.window_smoothing == 0.05  # no widening below the minimum
    spread = finals.std(ddof=1)
    assert abs(ses.mean() / spread - 1.0) < 0.15, (ses.mean(), spread)
    assert abs(finals.mean() - float(G @ G)) < 5 * spread / math.sqrt(R)
