"""The seeded synthetic stream: chunking-independent, seed-dependent, and statistically the
logistic model it claims to be (tolerances: 5 standard errors of the averaged quantity)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsgd.datasets.synthetic_stream import (
    BLOCK_SIZE,
    DEMO_REGIME_SAMPLES,
    DRIFT_PERIOD_SAMPLES,
    SyntheticStream,
    demo_stream,
)
from tests.support.reference import sigmoid_ref

N = 20_000


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(0, 3 * BLOCK_SIZE),
    cuts=st.lists(st.integers(0, 2500), max_size=6),
    drift=st.sampled_from([0.0, 1.0]),
    noise=st.sampled_from([0.0, 0.2]),
)
def test_same_seed_same_samples_regardless_of_chunking(start, cuts, drift, noise):
    s = SyntheticStream(n_features=4, seed=42, drift=drift, label_noise=noise)
    stop = start + 2500
    X, y = s.samples(start, stop)
    assert X.shape == (2500, 4) and y.shape == (2500,)
    bounds = [start, *sorted(start + c for c in cuts), stop]
    parts = [s.samples(a, b) for a, b in itertools.pairwise(bounds)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), X)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    # A fresh object with the same parameters gives the same stream (no hidden state).
    X2, y2 = SyntheticStream(n_features=4, seed=42, drift=drift, label_noise=noise).samples(
        start, stop
    )
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize("chunk_size", [1, 7, 1000, BLOCK_SIZE, 5000])
def test_iter_chunks_covers_the_range_exactly(chunk_size):
    s = SyntheticStream(n_features=3, seed=5)
    start, stop = 123, 3000
    X, y = s.samples(start, stop)
    chunks = list(s.iter_chunks(start, stop, chunk_size=chunk_size))
    assert chunks[0][0] == start
    for (i, Xc, _), (j, _, _) in itertools.pairwise(chunks):
        assert j == i + len(Xc)
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), X)
    np.testing.assert_array_equal(np.concatenate([c[2] for c in chunks]), y)
    # Endless iteration yields the same prefix.
    endless = s.iter_chunks(start, None, chunk_size=chunk_size)
    first = next(endless)
    assert first[0] == start and len(first[1]) == chunk_size
    np.testing.assert_array_equal(first[1], s.samples(start, start + chunk_size)[0])


def test_empty_and_invalid_ranges():
    s = SyntheticStream(n_features=2)
    X, y = s.samples(10, 10)
    assert X.shape == (0, 2) and y.shape == (0,)
    with pytest.raises(ValueError):
        s.samples(5, 4)
    with pytest.raises(ValueError):
        SyntheticStream(n_features=2, label_noise=0.6)
    with pytest.raises(ValueError):
        SyntheticStream(n_features=0)


def test_different_seeds_differ():
    a = SyntheticStream(n_features=5, seed=1)
    b = SyntheticStream(n_features=5, seed=2)
    Xa, ya = a.samples(0, 2000)
    Xb, yb = b.samples(0, 2000)
    assert not np.array_equal(Xa, Xb)
    assert not np.array_equal(ya, yb)
    assert not np.allclose(a.true_weights(0), b.true_weights(0))
    # Different blocks of one stream differ too (blocks are not repeats).
    np.testing.assert_raises(
        AssertionError,
        np.testing.assert_array_equal,
        a.samples(0, BLOCK_SIZE)[0],
        a.samples(BLOCK_SIZE, 2 * BLOCK_SIZE)[0],
    )


def test_features_are_standard_normal():
    X, _ = SyntheticStream(n_features=3, seed=9).samples(0, N)
    se = 1 / math.sqrt(N)  # sd of a mean of N(0, 1)
    assert np.all(np.abs(X.mean(axis=0)) <= 5 * se)
    # Var of a sample variance of N(0,1) is 2/(N−1).
    assert np.all(np.abs(X.var(axis=0, ddof=1) - 1) <= 5 * math.sqrt(2 / (N - 1)))


def test_labels_follow_the_true_model_without_noise():
    s = SyntheticStream(n_features=4, seed=3, weight_norm=2.0, intercept=0.25)
    X, y = s.samples(0, N)
    w = s.true_weights(0)
    assert np.linalg.norm(w) == pytest.approx(2.0, rel=1e-12)
    p = sigmoid_ref(X @ w + 0.25)
    # y_i − p_i are independent, mean 0, variance p_i(1 − p_i).
    resid = y - p
    se = math.sqrt(float(np.sum(p * (1 - p)))) / N
    assert abs(resid.mean()) <= 5 * se
    # ... and uncorrelated with each feature (E[(y − p) x_j] = 0).
    for j in range(4):
        prod = resid * X[:, j]
        assert abs(prod.mean()) <= 5 * prod.std(ddof=1) / math.sqrt(N)
    # Not vacuous: the labels do depend on x through w.
    assert np.corrcoef(y, X @ w)[0, 1] > 0.3


def test_label_noise_one_half_gives_balanced_random_labels():
    s = SyntheticStream(n_features=4, seed=4, label_noise=0.5)
    X, y = s.samples(0, N)
    se = 0.5 / math.sqrt(N)
    assert abs(y.mean() - 0.5) <= 5 * se
    # Independent of x: E[(2y − 1) x_j] = 0 with sd 1 per term.
    for j in range(4):
        assert abs(np.mean((2 * y - 1) * X[:, j])) <= 5 / math.sqrt(N)
    z = X @ s.true_weights(0) + s.intercept
    assert abs(np.mean((2 * y - 1) * z)) <= 5 * z.std() / math.sqrt(N)


def test_label_noise_flips_the_expected_fraction():
    clean = SyntheticStream(n_features=3, seed=6)
    noisy = SyntheticStream(n_features=3, seed=6, label_noise=0.2)
    Xc, yc = clean.samples(0, N)
    Xn, yn = noisy.samples(0, N)
    np.testing.assert_array_equal(Xc, Xn)  # noise does not change the features
    # Each label is an independent flip with probability 0.2 of the noise-free one.
    flipped = np.mean(yc != yn)
    assert abs(flipped - 0.2) <= 5 * math.sqrt(0.2 * 0.8 / N)


@pytest.mark.parametrize("d", [2, 5, 30])
def test_drift_rotates_weights_with_constant_norm(d):
    drift = 0.7
    s = SyntheticStream(n_features=d, seed=8, drift=drift, weight_norm=1.5)
    idx = np.array([0, 1, 1000, 50_000, 100_000, 300_000, 10**7])
    W = s.true_weights(idx)
    assert W.shape == (len(idx), d)
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1.5, rtol=1e-12)
    # The angle to w*(0) grows as drift · i / DRIFT_PERIOD_SAMPLES (for angles below π).
    for i, w in zip(idx[:6], W[:6], strict=False):
        cos = float(w @ W[0]) / 1.5**2
        angle = drift * i / DRIFT_PERIOD_SAMPLES
        assert cos == pytest.approx(math.cos(angle), abs=1e-12)
    np.testing.assert_allclose(s.true_weights(1000), W[2], rtol=1e-15)
    # Without drift the weights never change.
    still = SyntheticStream(n_features=d, seed=8, weight_norm=1.5)
    np.testing.assert_allclose(
        still.true_weights(idx), np.tile(still.true_weights(0), (7, 1)), rtol=1e-15
    )


def test_drifted_labels_follow_the_current_weights():
    """With drift π per period, around sample 100,000 the true weights are −w*(0): the labels
    there must correlate positively with x·w*(i) and negatively with x·w*(0)."""
    s = SyntheticStream(n_features=3, seed=10, drift=math.pi, intercept=0.0, weight_norm=3.0)
    lo, hi = 95_000, 105_000
    X, y = s.samples(lo, hi)
    W = s.true_weights(np.arange(lo, hi))
    z_now = np.sum(X * W, axis=1)
    p = sigmoid_ref(z_now)
    resid = y - p
    se = math.sqrt(float(np.sum(p * (1 - p)))) / len(y)
    assert abs(resid.mean()) <= 5 * se
    assert np.corrcoef(y, z_now)[0, 1] > 0.3
    assert np.corrcoef(y, X @ s.true_weights(0))[0, 1] < -0.3


def _progressive_losses(
    X: np.ndarray, y: np.ndarray, batch_size: int = 32, window: int = 2048
) -> tuple[list[float], list[float]]:
    """Mean pre-step loss and the smoothed per-sample gradient variance of the CLI's default
    model (η = 0.1) per window of samples, at minibatches of the compose default m = 32."""
    from streamsgd import OnlineLogisticRegression

    model = OnlineLogisticRegression(X.shape[1], learning_rate=0.1)
    losses, variances, loss_sum = [], [], 0.0
    for i in range(0, len(y), batch_size):
        loss_sum += model.learn_batch(X[i : i + batch_size], y[i : i + batch_size]).sums.loss_sum
        if (i + batch_size) % window == 0:
            losses.append(loss_sum / window)
            variances.append(model.gradient_stats.per_sample_variance)
            loss_sum = 0.0
    return losses, variances


def test_demo_stream_makes_the_model_visibly_learn_in_each_regime():
    """The demo stream (the CLI's embedded source and `produce synthetic`) must let the
    progressive loss and the gradient variance move: the loss falls from the start, and at
    every regime change (each minute at 500 records/s) loss and variance jump, then the
    loss falls again. The stationary stream shows no such jump."""
    n = 2 * DEMO_REGIME_SAMPLES
    X, y = demo_stream(20, seed=1).samples(0, n)
    losses, variances = _progressive_losses(X, y)
    switch = DEMO_REGIME_SAMPLES // 2048  # the window holding the regime change
    assert losses[0] > losses[switch - 1] + 0.04  # learning from w = 0
    assert losses[switch] > losses[switch - 1] + 0.08  # the jump ...
    assert losses[switch + 3] < losses[switch] - 0.08  # ... and the relearning
    # The statistics widen their window while the noise scale exceeds it, so the smoothed
    # variance follows the jump over a few windows rather than at once.
    assert max(variances[switch : switch + 3]) > 1.1 * variances[switch - 1]
    flat, _ = _progressive_losses(*SyntheticStream(20, seed=1).samples(0, n))
    assert max(flat[2:]) < losses[switch] - 0.05  # no jump without regimes


def test_demo_stream_is_the_stationary_stream_until_its_first_regime_change():
    """Short demo runs (and every test that seeds the stationary stream for the CLI) see the
    same samples; afterwards the true weights are a fresh direction of the same norm."""
    demo, still = demo_stream(5, seed=3, drift=0.5), SyntheticStream(5, seed=3, drift=0.5)
    np.testing.assert_array_equal(
        demo.samples(0, DEMO_REGIME_SAMPLES)[1], still.samples(0, DEMO_REGIME_SAMPLES)[1]
    )
    after = demo.true_weights(np.array([DEMO_REGIME_SAMPLES, 2 * DEMO_REGIME_SAMPLES]))
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), still.weight_norm, rtol=1e-12)
    assert abs(float(after[0] @ still.true_weights(DEMO_REGIME_SAMPLES))) < 0.9 * 2.0**2
    np.testing.assert_allclose(
        demo.true_weights(DEMO_REGIME_SAMPLES + 7),
        demo.true_weights(np.array([DEMO_REGIME_SAMPLES + 7]))[0],
        rtol=1e-15,
    )
    # Chunking-independent across a regime change, like every stream.
    a = demo.samples(DEMO_REGIME_SAMPLES - 700, DEMO_REGIME_SAMPLES + 700)
    b = [
        demo.samples(DEMO_REGIME_SAMPLES - 700, DEMO_REGIME_SAMPLES + 5),
        demo.samples(DEMO_REGIME_SAMPLES + 5, DEMO_REGIME_SAMPLES + 700),
    ]
    np.testing.assert_array_equal(a[1], np.concatenate([b[0][1], b[1][1]]))
    with pytest.raises(ValueError):
        SyntheticStream(2, regime_samples=-1)
