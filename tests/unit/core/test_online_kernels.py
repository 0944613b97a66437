"""The compiled m = 1 loops (core/_online_dense, _online_sparse) against their oracle,
``learn_batch`` once per sample (tests/support/online_oracle.py), over ≥ 2,000 steps of
random dense and sparse streams, for the option combinations: optimiser, L1, L2, schedule,
weights, row clip, statistics, a model that has seen minibatches before, hostile rows.

The step sizes keep η σ'(z) ‖x‖² < 2 (σ' ≤ ¼): beyond it one SGD step expands along x, and
the round-off of *any* two orders of a dot product (the loop's and numpy's BLAS) grows
exponentially — the two would both be right and still disagree. (η = 0.5 on rows of
‖x‖² ≈ 36 parted them by 1e-7 after 1,100 steps.)"""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsgd import OnlineLogisticRegression, SparseRows
from streamsgd.core.online import lazy_sparse_supported
from streamsgd.core.sequential import learn_sequence
from tests.support.online_oracle import assert_same_state, forgetting_oracle, per_sample_oracle

N_STEPS = 2000
DENSE_D = 12
SPARSE_D = 3000


def _stream(rng, n, sparse, hostile):
    """A learnable stream: dense (d = 12) or sparse (d = 3,000, 1–9 entries a row, some
    repeating a column), with a few NaN, inf and 1e200 rows when ``hostile``."""
    if sparse:
        lengths = rng.integers(1, 10, n)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = rng.integers(0, SPARSE_D, indptr[-1]).astype(np.int64)
        indices[rng.random(indptr[-1]) < 0.05] = 7  # repeated cells in some rows
        values = rng.normal(size=indptr[-1]) * rng.choice([0.5, 1.0], indptr[-1])
        truth = rng.normal(size=SPARSE_D)
        scores = np.bincount(np.repeat(np.arange(n), lengths), values * truth[indices], n)
        if hostile:
            rows = rng.choice(n, 6, replace=False)
            values[indptr[rows]] = [np.nan, np.inf, 1e200] * 2
        X = SparseRows(indptr, indices, values, SPARSE_D)
    else:
        X = rng.normal(size=(n, DENSE_D)) * rng.uniform(0.2, 1.5, DENSE_D)
        scores = X @ rng.normal(size=DENSE_D)
        if hostile:
            rows = rng.choice(n, 6, replace=False)
            X[rows[:2], 0] = np.nan
            X[rows[2:4], 1] = np.inf
            X[rows[4:], 2] = 1e200
    y = (scores + rng.normal(size=n) > 0).astype(np.float64)
    return X, y


def _check(options, *, sparse, weighted, warm, hostile, seed):
    rng = np.random.default_rng(seed)
    X, y = _stream(rng, N_STEPS, sparse, hostile)
    d = SPARSE_D if sparse else DENSE_D
    model = OnlineLogisticRegression(d, **options)
    if warm:  # within-batch statistics seen, then m = 1
        Xw, yw = _stream(rng, 64, sparse, False)
        model.learn_batch(Xw, yw)
    weights = rng.uniform(0.0, 2.0, N_STEPS) if weighted else None
    oracle = per_sample_oracle(model, X, y, weights)
    stats = learn_sequence(model, X, y, weights)
    assert stats.fast_path
    assert stats.n_misclassified == oracle.misclassified
    assert stats.n_skipped == oracle.skipped
    assert stats.n_clipped == oracle.clipped
    np.testing.assert_allclose(stats.losses, oracle.losses, rtol=1e-9, atol=1e-12)
    assert stats.learning_rate == pytest.approx(oracle.last_learning_rate, rel=1e-12)
    assert_same_state(oracle.model, model)
    return model


OPTIONS = st.fixed_dictionaries(
    {
        "optimizer": st.sampled_from(["sgd", "adagrad"]),
        "learning_rate": st.sampled_from([0.01, 0.05, 0.2]),
        "l1": st.sampled_from([0.0, 1e-4, 1e-2]),
        "l2": st.sampled_from([0.0, 1e-3, 0.05]),
        "learning_rate_schedule": st.sampled_from(["constant", "inverse_scaling"]),
        "decay": st.sampled_from([0.01, 1.0]),
        "clip_norm_ratio": st.sampled_from([0.0, 1.2, 10.0]),
        "gradient_statistics": st.booleans(),
        "stats_smoothing": st.sampled_from([0.05, 0.3]),
        "reduction": st.sampled_from(["mean", "sum"]),
        "adagrad_half_life_samples": st.sampled_from([0.0, 0.0, 30.0, 400.0]),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    options=OPTIONS,
    sparse=st.booleans(),
    weighted=st.booleans(),
    warm=st.booleans(),
    hostile=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_compiled_loop_equals_the_oracle(options, sparse, weighted, warm, hostile, seed):
    _check(options, sparse=sparse, weighted=weighted, warm=warm, hostile=hostile, seed=seed)


@pytest.mark.parametrize(
    "optimizer, l1, l2, sparse",
    list(itertools.product(["sgd", "adagrad"], [0.0, 1e-3], [0.0, 1e-2], [False, True])),
)
def test_every_optimiser_and_penalty(optimizer, l1, l2, sparse):
    """Each optimiser × penalty × row kind, with every other option on (weights, a decaying
    η, frequent clipping, statistics) — which sparse loop runs is named in its check."""
    options = {
        "optimizer": optimizer,
        "l1": l1,
        "l2": l2,
        "learning_rate": 0.2,
        "learning_rate_schedule": "inverse_scaling",
        "decay": 0.01,
        "clip_norm_ratio": 1.2,
    }
    model = OnlineLogisticRegression(SPARSE_D, **options)
    assert lazy_sparse_supported(model) == (not l2 or (optimizer == "sgd" and not l1))
    _check(options, sparse=sparse, weighted=True, warm=False, hostile=True, seed=11)


def test_same_input_same_bits():
    """Restart exactness rests on determinism: the same run twice gives identical bits."""
    rng = np.random.default_rng(5)
    X, y = _stream(rng, 3000, True, True)
    models = []
    for _ in range(2):
        model = OnlineLogisticRegression(SPARSE_D, l2=1e-3, learning_rate=0.2)
        learn_sequence(model, X, y)
        models.append(model)
    a, b = models
    assert pickle.dumps(a.get_state()) == pickle.dumps(b.get_state())


def test_lazy_scale_folds_back_when_tiny():
    """ηλ₂ = 0.5: σ halves every step and is folded back into v (below 1e-100) about every
    330 steps; the result is still the oracle's."""
    options = {"l2": 5.0, "learning_rate": 0.1}
    _check(options, sparse=True, weighted=False, warm=False, hostile=False, seed=3)


def test_sparse_row_scale_is_bit_identical():
    """s depends on the row norms only, computed in the oracle's order: the same bits."""
    rng = np.random.default_rng(8)
    X, y = _stream(rng, 2000, True, False)
    model = OnlineLogisticRegression(SPARSE_D, clip_norm_ratio=1.2)
    oracle = per_sample_oracle(model, X, y)
    learn_sequence(model, X, y)
    assert model.row_scale == oracle.model.row_scale


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"l2": 1e-3},
        {"l1": 1e-3},
        {"optimizer": "adagrad", "l1": 1e-3},
        {"l2": 1e-3, "l1": 1e-3, "gradient_statistics": False},
        {"optimizer": "adagrad", "l2": 1e-3},
    ],
)
@pytest.mark.parametrize("sparse", [False, True])
def test_blocks_give_the_same_bits_however_calls_group_them(options, sparse):
    """The service cuts the stream into aligned blocks of K and learns several in one call
    (block_size=K); a restart or another poll size groups them otherwise: the state must be
    the same bits (the SIGKILL + restart guarantee)."""
    rng = np.random.default_rng(4)
    X, y = _stream(rng, 640, sparse, True)
    d = SPARSE_D if sparse else DENSE_D
    grouped = OnlineLogisticRegression(d, learning_rate=0.1, **options)
    learn_sequence(grouped, X, y, block_size=64)
    single = OnlineLogisticRegression(d, learning_rate=0.1, **options)
    for lo in range(0, 640, 64):
        rows = X.slice_rows(lo, lo + 64) if sparse else X[lo : lo + 64]
        learn_sequence(single, rows, y[lo : lo + 64], block_size=64)
    assert pickle.dumps(grouped.get_state()) == pickle.dumps(single.get_state())


@pytest.mark.parametrize("half_life", [0.0, 25.0, 300.0])
@pytest.mark.parametrize("sparse", [False, True])
def test_adagrad_forgets_as_the_oracle(half_life, sparse):
    """AdaGrad with a forgetting accumulator, G ← γ G + g² (γ = 2^(−1/h)), over 2,000 steps:
    the compiled loop equals learn_batch per sample (the sparse rows go through the
    scattered O(d) loop: the lazy one cannot decay every coordinate)."""
    options = {
        "optimizer": "adagrad",
        "adagrad_half_life_samples": half_life,
        "learning_rate": 0.2,
        "clip_norm_ratio": 1.2,
    }
    model = OnlineLogisticRegression(SPARSE_D, **options)
    assert lazy_sparse_supported(model) == (half_life == 0.0)
    _check(options, sparse=sparse, weighted=True, warm=True, hostile=True, seed=13)


@pytest.mark.parametrize("half_life", [0.0, 25.0, 300.0])
def test_forgetting_accumulator_equals_its_numpy_model(half_life):
    """The compiled loop's G against the numpy recursion G ← γ G + g² written out
    (tests/support/online_oracle.forgetting_oracle): rtol 1e-9, the dot products of the two
    are summed in different orders. With h = 25 the final G is far below the never-forget
    G, so a loop that ignores h fails here."""
    rng = np.random.default_rng(21)
    X, y = _stream(rng, N_STEPS, False, False)
    options = {"optimizer": "adagrad", "adagrad_half_life_samples": half_life}
    model = OnlineLogisticRegression(DENSE_D, clip_norm_ratio=0.0, **options)
    expected = forgetting_oracle(model, X, y)
    learn_sequence(model, X, y)
    np.testing.assert_allclose(model._squared_gradient_sum, expected, rtol=1e-9)
