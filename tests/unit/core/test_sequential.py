"""learn_sequence must equal the per-sample learn_batch loop (its definition)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression, SparseRows
from streamsgd.core.sequential import fast_path_unsupported, learn_sequence
from streamsgd.datasets.synthetic_stream import SyntheticStream

RTOL = 1e-9


def _reference(model, X, y, w=None):
    """One learn_batch per sample; a skipped step's sample is not learned, so it counts
    neither in the progressive loss (0) nor as misclassified, as for a skipped minibatch."""
    losses, missed, skipped = [], 0, 0
    for i in range(len(y)):
        xi = X.slice_rows(i, i + 1) if isinstance(X, SparseRows) else X[i : i + 1]
        stats = model.learn_batch(xi, y[i : i + 1], None if w is None else w[i : i + 1])
        losses.append(0.0 if stats.skipped else stats.loss)
        missed += 0 if stats.skipped else stats.n_misclassified
        skipped += int(stats.skipped)
    return np.array(losses), missed, skipped


def _close(a, b, scale=None):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if scale is None:
        scale = max(float(np.max(np.abs(a), initial=0.0)), 1e-300)
    np.testing.assert_allclose(b, a, rtol=RTOL, atol=RTOL * scale)


def _assert_same_model(ref: OnlineLogisticRegression, fast: OnlineLogisticRegression):
    # The folded states: the compiled loop may still hold deferred work (core/deferred.py).
    state_ref, state_fast = ref.get_state(), fast.get_state()
    _close(state_ref["theta"], state_fast["theta"])
    assert ref.n_updates == fast.n_updates
    assert ref.n_samples_seen == fast.n_samples_seen
    _same_state(state_ref["gradient_stats"], state_fast["gradient_stats"])
    for attr in ("noise_scale", "norm_test_ratio"):
        va, vb = getattr(ref.gradient_stats, attr), getattr(fast.gradient_stats, attr)
        if math.isnan(va):
            assert math.isnan(vb)
        else:
            _close(va, vb, scale=max(abs(va), 1e-12))


def _same_state(sa: dict, sb: dict) -> None:
    """Every float to rtol 1e-9, nested documents too: the change detector's ``level`` is
    an EWMA of losses that the compiled loop and learn_batch compute in different orders
    (it was compared with ``==`` and failed on AMD CPUs, whose BLAS sums in another order)."""
    assert sa.keys() == sb.keys()
    for key, va in sa.items():
        vb = sb[key]
        if isinstance(va, dict):
            _same_state(va, vb)
            continue
        if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            assert va is not None and vb is not None, key
            _close(va, vb)
        elif isinstance(va, dict):
            _same_state(va, vb)
        elif isinstance(va, float) and math.isnan(va):
            assert math.isnan(vb), key
        elif isinstance(va, float):
            _close(va, vb, scale=max(abs(va), 1e-12))
        else:
            assert va == vb, key


def _data(n=700, d=12, seed=3, noise=0.1):
    return SyntheticStream(d, seed=seed, label_noise=noise).samples(0, n)


CONFIGS = [
    {},
    {"learning_rate": 0.02},
    {"learning_rate": 0.05, "l2": 0.01},
    {"learning_rate": 0.5, "learning_rate_schedule": "inverse_scaling", "decay": 0.01},
    {
        "learning_rate": 0.3,
        "learning_rate_schedule": "inverse_scaling",
        "decay": 0.05,
        "power": 0.75,
        "l2": 0.02,
    },
    {"learning_rate": 0.05, "reduction": "sum", "l2": 0.1},
    {"learning_rate": 0.05, "stats_smoothing": 0.9},
    {"learning_rate": 0.05, "stats_smoothing": 0.3},
]


@pytest.mark.parametrize("params", CONFIGS)
@pytest.mark.parametrize("block_size", [1, 7, 32, 1000])
def test_matches_per_sample_loop(params, block_size):
    X, y = _data()
    ref = OnlineLogisticRegression(X.shape[1], **params)
    fast = OnlineLogisticRegression(X.shape[1], **params)
    losses, missed, skipped = _reference(ref, X, y)
    stats = learn_sequence(fast, X, y, block_size=block_size)
    assert stats.fast_path
    assert stats.n_samples == len(y)
    assert stats.n_misclassified == missed
    assert stats.n_skipped == skipped == 0
    _close(losses, stats.losses)
    _close(losses.sum(), stats.loss_sum)
    assert stats.learning_rate == pytest.approx(ref.schedule(ref.n_updates - 1), rel=1e-12)
    _assert_same_model(ref, fast)


def test_sample_weights_and_dense_d100():
    X, y = SyntheticStream(100, seed=5, label_noise=0.05).samples(0, 1500)
    w = np.random.default_rng(0).uniform(0.0, 2.0, len(y))
    w[::17] = 0.0
    params = {"learning_rate": 0.01, "l2": 1e-3}
    ref = OnlineLogisticRegression(100, **params)
    fast = OnlineLogisticRegression(100, **params)
    losses, missed, _ = _reference(ref, X, y, w)
    stats = learn_sequence(fast, X, y, w, block_size=64)
    assert stats.n_misclassified == missed
    _close(losses, stats.losses)
    _assert_same_model(ref, fast)


def test_continues_from_trained_state_and_in_pieces():
    """Starting after minibatch steps (within-batch statistics already seen) and splitting
    the sequence over several calls changes nothing."""
    X, y = _data(n=900)
    params = {"learning_rate": 0.05, "l2": 0.001}
    ref = OnlineLogisticRegression(X.shape[1], **params)
    fast = OnlineLogisticRegression(X.shape[1], **params)
    for model in (ref, fast):
        model.learn_batch(X[:64], y[:64])
        model.learn_batch(X[64:100], y[64:100])
    _reference(ref, X[100:], y[100:])
    for lo, hi in [(100, 101), (101, 450), (450, 900)]:
        learn_sequence(fast, X[lo:hi], y[lo:hi], block_size=16)
    _assert_same_model(ref, fast)


def test_then_minibatches_again():
    X, y = _data(n=400)
    ref = OnlineLogisticRegression(X.shape[1], learning_rate=0.05)
    fast = OnlineLogisticRegression(X.shape[1], learning_rate=0.05)
    _reference(ref, X[:300], y[:300])
    learn_sequence(fast, X[:300], y[:300])
    for model in (ref, fast):
        model.learn_batch(X[300:], y[300:])
    _assert_same_model(ref, fast)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_steps_are_skipped_as_in_the_loop():
    X, y = _data(n=300)
    X = X.copy()
    X[40, 3] = np.inf
    X[200, 0] = np.nan
    ref = OnlineLogisticRegression(X.shape[1], learning_rate=0.05)
    fast = OnlineLogisticRegression(X.shape[1], learning_rate=0.05)
    losses, missed, skipped = _reference(ref, X, y)
    stats = learn_sequence(fast, X, y, block_size=32)
    assert skipped == 2
    assert stats.n_skipped == 2
    assert stats.n_misclassified == missed
    assert stats.losses[40] == stats.losses[200] == 0.0  # the skipped samples
    assert np.isfinite(stats.losses).all() and math.isfinite(stats.loss_sum)
    _close(losses, stats.losses)
    _assert_same_model(ref, fast)


@pytest.mark.parametrize(
    "params",
    [
        {"optimizer": "adagrad", "learning_rate": 0.1},
        {"l1": 0.001, "learning_rate": 0.05},
        {"l1": 0.001, "l2": 0.01, "learning_rate": 0.05},
    ],
)
def test_adagrad_and_l1_take_the_compiled_loop(params):
    """Once a per-sample fallback (``fast_path`` False, bit-identical by construction); now
    the compiled loop, equal to the definition up to the order of a few sums (rtol 1e-9)."""
    X, y = _data(n=250)
    ref = OnlineLogisticRegression(X.shape[1], **params)
    fast = OnlineLogisticRegression(X.shape[1], **params)
    assert fast_path_unsupported(fast, X) is None
    losses, missed, _ = _reference(ref, X, y)
    stats = learn_sequence(fast, X, y)
    assert stats.fast_path
    assert stats.n_misclassified == missed
    _close(losses, stats.losses)
    _assert_same_model(ref, fast)
    if ref._squared_gradient_sum is not None:
        _close(ref._squared_gradient_sum, fast._squared_gradient_sum)


def test_sparse_rows_take_the_compiled_loop():
    X, y = _data(n=120)
    X[np.abs(X) < 0.8] = 0.0
    rows = [(np.flatnonzero(r), r[np.flatnonzero(r)]) for r in X]
    S = SparseRows.from_rows(rows, X.shape[1])
    ref = OnlineLogisticRegression(X.shape[1], learning_rate=0.05)
    fast = OnlineLogisticRegression(X.shape[1], learning_rate=0.05)
    assert fast_path_unsupported(fast, S) is None
    _reference(ref, S, y)
    stats = learn_sequence(fast, S, y)
    assert stats.fast_path
    _assert_same_model(ref, fast)


def test_large_l2_step_falls_back_per_block():
    """η λ₂ ≥ 1 makes a factor 1 − ηλ₂ ≤ 0 (w changes sign every step): still the same steps."""
    X, y = _data(n=200)
    params = {"learning_rate": 0.5, "l2": 2.5}
    ref = OnlineLogisticRegression(X.shape[1], **params)
    fast = OnlineLogisticRegression(X.shape[1], **params)
    _reference(ref, X, y)
    learn_sequence(fast, X, y)
    _assert_same_model(ref, fast)


def test_validation_leaves_model_untouched():
    X, y = _data(n=50)
    model = OnlineLogisticRegression(X.shape[1])
    bad = y.copy()
    bad[30] = 2.0
    with pytest.raises(ValueError):
        learn_sequence(model, X, bad)
    with pytest.raises(ValueError):
        learn_sequence(model, X, y, -np.ones(len(y)))
    with pytest.raises(ValueError):
        learn_sequence(model, X[:, :3], y)
    with pytest.raises(ValueError):
        learn_sequence(model, X, y, block_size=0)
    assert model.n_updates == 0
    assert not model._theta.any()


def test_empty_sequence_is_a_no_op():
    model = OnlineLogisticRegression(4)
    stats = learn_sequence(model, np.zeros((0, 4)), np.zeros(0))
    assert stats.n_samples == 0
    assert math.isnan(stats.loss)
    assert model.n_updates == 0


def test_overflowing_gradient_norm_is_left_out_of_statistics_as_in_the_loop():
    """A huge but finite row: the step is applied while ‖g‖² overflows; like apply_step,
    the running statistics leave that step out."""
    X, y = _data(n=200)
    X = X.copy()
    X[70, 2] = 1e160
    ref = OnlineLogisticRegression(X.shape[1], learning_rate=1e-170)
    fast = OnlineLogisticRegression(X.shape[1], learning_rate=1e-170)
    with np.errstate(over="ignore", invalid="ignore"):
        _, missed, skipped = _reference(ref, X, y)
    stats = learn_sequence(fast, X, y, block_size=16)
    assert skipped == stats.n_skipped
    assert stats.n_misclassified == missed
    _assert_same_model(ref, fast)


def test_a_controller_keeps_the_per_sample_loop():
    """A NoiseController chooses η from every step's statistics in Python: learn_sequence
    runs learn_batch per sample there (the definition itself, so the same bits)."""
    from streamsgd.core.controller import NoiseController

    X, y = _data(n=200)
    ref = OnlineLogisticRegression(
        X.shape[1], controller=NoiseController(adaptive_batch_size=False)
    )
    fast = OnlineLogisticRegression(
        X.shape[1], controller=NoiseController(adaptive_batch_size=False)
    )
    assert fast_path_unsupported(fast, X) == "controller"
    losses, missed, _ = _reference(ref, X, y)
    stats = learn_sequence(fast, X, y)
    assert not stats.fast_path
    assert stats.n_misclassified == missed
    np.testing.assert_array_equal(ref._theta, fast._theta)
    np.testing.assert_array_equal(losses, stats.losses)
