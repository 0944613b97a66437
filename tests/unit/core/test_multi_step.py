"""Many minibatch steps in one compiled call (streamsgd/core/multi_step.py), and
``learn_batch`` (one such call), take the same steps as ``batch_sums`` + ``apply_step`` per
batch (the path a replica takes, in Python between the kernels), for every option, dense
and sparse.

Bit-equality is right: both run the same compiled batch sums, step and statistics fold
in the same order; the loop only removes the Python between them."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsgd.core import _multi_step, row_scale, step
from streamsgd.core.controller import NoiseController
from streamsgd.core.model import BatchStats, OnlineLogisticRegression
from streamsgd.core.multi_step import compiled, learn_batches
from streamsgd.core.sparse import SparseRows
from streamsgd.core.types import FloatArray
from streamsgd.core.validation import Features


def _same(a: Any, b: Any, key: str = "state") -> None:
    """Equal bit for bit (NaN equal to NaN)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), key
        for k in a:
            _same(a[k], b[k], f"{key}.{k}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.array_equal(a, b, equal_nan=True), key
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), key
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{key}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), key
    else:
        assert a == b, (key, a, b)


def _stream(
    rng: np.random.Generator, n: int, d: int, sparse: bool, drift: bool, extreme: bool
) -> tuple[Features, FloatArray]:
    """n labelled rows; with ``drift`` the labels flip halfway (the change detector's alarm);
    with ``extreme`` a few rows of norm 1e6 (clipped) and one infinite value (a skipped
    step)."""
    if sparse:
        lengths = rng.integers(1, 30, n)
        indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        indices = rng.integers(0, d, int(indptr[-1])).astype(np.int64)  # repeats included
        values = rng.normal(size=int(indptr[-1]))
        if extreme:
            values[rng.integers(0, len(values), 5)] = 1e6
            values[len(values) // 3] = math.inf
        X: Features = SparseRows(indptr, indices, values, d)
        truth = rng.normal(size=d)
        z = X.matvec(truth)  # type: ignore[union-attr]
    else:
        X = rng.normal(size=(n, d)) + rng.normal(size=d)
        if extreme:
            X[rng.integers(0, n, 5)] *= 1e6
            X[n // 3, 0] = math.inf
        z = np.nan_to_num(X @ rng.normal(size=d), posinf=0.0)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float64)
    if drift:
        y[n // 2 :] = 1.0 - y[n // 2 :]
    return X, y


def _rows(X: Features, start: int, stop: int) -> Features:
    return X.slice_rows(start, stop) if isinstance(X, SparseRows) else X[start:stop]


def _composed(
    model: OnlineLogisticRegression, X: Features, y: FloatArray, w: FloatArray | None
) -> BatchStats:
    """One step as a replica takes it: the batch's sums, then the step (Python between)."""
    with np.errstate(over="ignore", invalid="ignore"):
        sums = model.batch_sums(X, y, w)
        eta, skipped = model.apply_step(sums)
    return BatchStats(sums, eta, skipped)


def _same_step(got: BatchStats, expected: BatchStats, key: str) -> None:
    a, b = got.sums, expected.sums
    assert got.skipped == expected.skipped, key
    _same(
        [got.learning_rate, a.loss_sum, a.n_misclassified, a.n_clipped, a.n_above_scale],
        [expected.learning_rate, b.loss_sum, b.n_misclassified, b.n_clipped, b.n_above_scale],
        key,
    )
    _same(a.gradient_squared_norm_sum, b.gradient_squared_norm_sum, f"{key} Σ‖g_i‖²")
    _same(a.row_squared_norm_sum, b.row_squared_norm_sum, f"{key} Σ‖v_i‖²")
    _same(got.gradient_norm, expected.gradient_norm, f"{key} ‖ḡ‖")


OPTIONS = st.fixed_dictionaries(
    {
        "optimizer": st.sampled_from(["sgd", "adagrad"]),
        "adagrad_half_life_samples": st.sampled_from([0.0, 500.0]),
        "l1": st.sampled_from([0.0, 1e-4]),
        "l2": st.sampled_from([0.0, 0.0, 1e-3]),
        "reduction": st.sampled_from(["mean", "sum"]),
        "learning_rate_schedule": st.sampled_from(["constant", "inverse_scaling"]),
        "clip_norm_ratio": st.sampled_from([0.0, 1.5, 10.0]),
        "gradient_statistics": st.booleans(),
        "stats_smoothing": st.sampled_from([0.05, 0.5]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32 - 1),
    OPTIONS,
    st.booleans(),
    st.sampled_from([2, 3, 32]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_many_steps_in_one_call_equal_one_call_per_batch(
    seed: int,
    options: dict[str, Any],
    sparse: bool,
    m: int,
    weighted: bool,
    drift: bool,
    extreme: bool,
    standardize: bool,
) -> None:
    rng = np.random.default_rng(seed)
    d = 64 if sparse else 7
    n_steps = 2400 // m
    X, y = _stream(rng, n_steps * m, d, sparse, drift, extreme)
    weights = rng.uniform(0.0, 3.0, len(y)) if weighted else None
    if options["reduction"] == "sum":
        options = options | {"learning_rate": 0.1 / m}
    params = options | {"standardize": standardize and not sparse}
    one_call = OnlineLogisticRegression(d, **params)
    per_batch = OnlineLogisticRegression(d, **params)
    single = OnlineLogisticRegression(d, **params)  # learn_batch per batch
    # The compiled calls cut the stream at random whole batches, as polls do.
    cuts = sorted({0, n_steps, *rng.integers(1, n_steps, 3).tolist()})
    fast = []
    for lo, hi in itertools.pairwise(cuts):
        w = None if weights is None else weights[lo * m : hi * m]
        stats = learn_batches(one_call, _rows(X, lo * m, hi * m), y[lo * m : hi * m], w, m)
        fast.append(stats.fast_path)
        for k in range(stats.n_steps):
            t = lo + k
            batch = (
                _rows(X, t * m, (t + 1) * m),
                y[t * m : (t + 1) * m],
                None if weights is None else weights[t * m : (t + 1) * m],
            )
            expected = _composed(per_batch, *batch)
            _same_step(stats.step(k), expected, f"step {t}")
            alone = single.learn_batch(*batch)
            _same_step(alone, expected, f"learn_batch {t}")
            _same(alone.sums.gradient_sum, expected.sums.gradient_sum, f"{t} Σ g_i")
            _same(alone.sums.gradient_columns, expected.sums.gradient_columns, f"{t} columns")
    _same(one_call.get_state(), per_batch.get_state())
    _same(single.get_state(), per_batch.get_state())
    assert all(fast) == compiled(one_call, m)


def test_the_loop_covers_alarms_skips_and_clipping() -> None:
    """One stream where the compiled loop restarts its statistics at a change, skips a
    non-finite step and clips rows, on sparse rows in column mode (AdaGrad forgetting):
    the same bits as one call per batch (the hypothesis test may not draw all at once)."""
    rng = np.random.default_rng(7)
    m, d = 16, 1 << 12
    X, y = _stream(rng, 4000 * m // 16, d, sparse=True, drift=True, extreme=True)
    params = {"optimizer": "adagrad", "adagrad_half_life_samples": 300.0, "clip_norm_ratio": 1.5}
    one_call = OnlineLogisticRegression(d, **params)
    per_batch = OnlineLogisticRegression(d, **params)
    stats = learn_batches(one_call, X, y, None, m)
    for t in range(len(y) // m):
        _composed(per_batch, _rows(X, t * m, (t + 1) * m), y[t * m : (t + 1) * m], None)
    assert stats.fast_path and stats.n_steps_skipped >= 1 and stats.n_clipped >= 1
    assert one_call.gradient_stats.change.n_changes >= 1
    _same(one_call.get_state(), per_batch.get_state())


def test_settings_that_need_python_step_one_batch_at_a_time() -> None:
    controller = NoiseController()
    assert compiled(OnlineLogisticRegression(3), 2)
    assert not compiled(OnlineLogisticRegression(3), 1)
    assert not compiled(OnlineLogisticRegression(3, l2=1e-3), 2)
    assert not compiled(OnlineLogisticRegression(3, standardize=True), 2)
    assert not compiled(OnlineLogisticRegression(3, controller=controller), 2)


def test_a_call_takes_whole_batches_only() -> None:
    with pytest.raises(ValueError, match="whole batches"):
        learn_batches(OnlineLogisticRegression(2), np.zeros((5, 2)), np.zeros(5), None, 2)


def test_the_constants_are_those_of_the_python_modules() -> None:
    assert _multi_step.CONSTANTS == {
        "SCALE_SMOOTHING": row_scale.SCALE_SMOOTHING,
        "SCALE_BATCH_CAP": row_scale.SCALE_BATCH_CAP,
        "SPARSE_STEP_MAX_DENSITY": step.SPARSE_STEP_MAX_DENSITY,
    }
