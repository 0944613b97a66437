"""The compiled minibatch kernels equal the numpy oracle (tests/support/batch_oracle.py).

Per batch: every field of :class:`BatchSums` (and the step proposed from it) on random dense
and sparse batches for every option combination, extreme rows included. Over a stream:
≥ 2,000 ``learn_batch`` steps of a model on the kernels against the same model on the
oracle, compared after every step. Tolerance: rtol 1e-9 (the two differ only in the order
of the additions inside a sum), counts exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsgd import BatchSums, SparseRows
from streamsgd.core.curvature import CurvatureDirection
from streamsgd.core.row_scale import GRADIENT_RATIO
from streamsgd.core.standardize import Standardizer
from streamsgd.core.step import batch_sums, propose_step
from tests.support import batch_oracle as oracle

RTOL = 1e-9
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _close(actual: Any, expected: Any, scale: float = 0.0, what: str = "") -> None:
    """Equal to RTOL, with an absolute floor RTOL·scale for entries that cancel."""
    if actual is None or expected is None:
        assert actual is None and expected is None, what
        return
    a, e = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    finite = e[np.isfinite(e)]
    floor = max(float(np.max(np.abs(finite), initial=0.0)), scale)
    np.testing.assert_allclose(a, e, rtol=RTOL, atol=RTOL * floor, err_msg=what)


def _dense_gradient(sums: BatchSums, d: int) -> np.ndarray:
    return sums.dense_gradient_sum(d)


def assert_same_sums(actual: BatchSums, expected: BatchSums, d: int, scale: float) -> None:
    """Every field of two batches' sums (Σ g_i and P compared over all d columns)."""
    assert actual.n_samples == expected.n_samples
    assert actual.n_misclassified == expected.n_misclassified
    assert actual.n_clipped == expected.n_clipped
    assert actual.n_above_scale == expected.n_above_scale
    assert (actual.gradient_columns is None) == (expected.gradient_columns is None)
    if actual.gradient_columns is not None:
        assert expected.gradient_columns is not None
        assert np.array_equal(np.sort(actual.gradient_columns), expected.gradient_columns)
    _close(actual.dense_gradient_sum(d), expected.dense_gradient_sum(d), scale, "Σ g_i")
    with np.errstate(over="ignore"):
        g2 = float(expected.gradient_sum @ expected.gradient_sum)
    _close(actual.gradient_sum_squared_norm, g2, 0.0, "‖Σ g_i‖²")
    for name in ("gradient_squared_norm_sum", "loss_sum"):
        _close(getattr(actual, name), getattr(expected, name), 0.0, name)
    _close(actual.row_squared_norm_sum, expected.row_squared_norm_sum, 0.0, "Σ s‖v‖²")
    _close(
        actual.dense_curvature_product_sum(d),
        expected.dense_curvature_product_sum(d),
        scale,
        "curvature",
    )
    if expected.moments is None:
        assert actual.moments is None
    else:
        assert actual.moments is not None
        assert actual.moments.n_samples == expected.moments.n_samples
        assert actual.moments.shift is expected.moments.shift
        _close(actual.moments.deviation_sum, expected.moments.deviation_sum, scale, "S₁")
        _close(
            actual.moments.squared_deviation_sum, expected.moments.squared_deviation_sum, 0, "S₂"
        )


def _standardizer(rng: np.random.Generator, d: int, n_seen: int) -> Standardizer:
    """A standardiser after ``n_seen`` rows of random scales, two features constant."""
    standardizer = Standardizer(d)
    if n_seen:
        rows = rng.standard_normal((n_seen, d)) * rng.uniform(0.1, 10.0, d) + rng.normal(0, 3, d)
        rows[:, : min(2, d)] = 4.0
        standardizer.fold(standardizer.deviation_sums(rows))
    standardizer.restarted = n_seen >= 50  # settled: the 3κs band (row_scale) applies
    return standardizer


def _sparse(rng: np.random.Generator, m: int, d: int, per_row: int) -> SparseRows:
    """Rows of ``per_row`` entries, columns drawn with repetition (repeated cells)."""
    rows = []
    for _ in range(m):
        k = int(rng.integers(0, per_row + 1))
        rows.append((rng.integers(0, d, k), rng.normal(0.0, 2.0, k)))
    return SparseRows.from_rows(rows, d)


OPTIONS = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "m": st.integers(1, 40),
        "d": st.integers(1, 30),
        "weights": st.booleans(),
        "ratio": st.sampled_from([0.0, 0.3, 1.0, 10.0]),
        "statistics": st.booleans(),
        "curvature": st.booleans(),
        "extreme": st.sampled_from([0.0, 1e160, 1e300]),
    }
)


@SETTINGS
@given(OPTIONS, st.sampled_from([None, 0, 1, 50]))
def test_dense_sums_equal_the_oracle(options: dict[str, Any], standardized: int | None) -> None:
    rng = np.random.default_rng(options["seed"])
    m, d = options["m"], options["d"]
    X = rng.standard_normal((m, d)) * rng.uniform(0.1, 5.0, d)
    if options["extreme"] and m > 1:
        X[0] *= options["extreme"]  # a row whose ‖x‖² overflows (or nearly)
    y = (rng.random(m) < 0.5).astype(float)
    weights = rng.uniform(0.0, 3.0, m) if options["weights"] else None
    theta = rng.normal(0.0, 0.5, d + 1)
    direction = None
    if options["curvature"]:
        direction = CurvatureDirection(rng.standard_normal(d + 1), 0.3)
    inputs = None if standardized is None else _standardizer(rng, d, standardized)
    common = {
        "row_scale": math.sqrt(d + 1.0) * rng.uniform(0.5, 2.0),
        "clip_norm_ratio": options["ratio"],
        "gradient_statistics": options["statistics"],
        "curvature_direction": direction,
    }
    with np.errstate(over="ignore", invalid="ignore"):
        actual = batch_sums(theta, X, y, weights, column_workspace=None, inputs=inputs, **common)
        expected = oracle.batch_sums(
            theta,
            X,
            y,
            weights,
            columns=False,
            frame=None if inputs is None else inputs.frame,
            gradient_ratio=GRADIENT_RATIO if inputs is None or inputs.settled else 1.0,
            **common,
        )
    assert_same_sums(actual, expected, d, scale=0.0)


@SETTINGS
@given(OPTIONS, st.booleans(), st.integers(1, 6))
def test_sparse_sums_equal_the_oracle(options: dict[str, Any], columns: bool, per_row: int) -> None:
    rng = np.random.default_rng(options["seed"])
    m, d = options["m"], options["d"] * 40  # wide enough for the column mode
    X = _sparse(rng, m, d, per_row)
    if options["extreme"] and len(X.values):
        X.values[0] *= options["extreme"]
    y = (rng.random(m) < 0.5).astype(float)
    weights = rng.uniform(0.0, 3.0, m) if options["weights"] else None
    theta = rng.normal(0.0, 0.5, d + 1)
    direction = None
    if options["curvature"]:
        direction = CurvatureDirection(rng.standard_normal(d + 1), 0.3)
    common = {
        "row_scale": 2.0 * rng.uniform(0.5, 2.0),
        "clip_norm_ratio": options["ratio"],
        "gradient_statistics": options["statistics"],
        "curvature_direction": direction,
    }
    # The workspaces hold anything (sparse sets): garbage must not matter.
    workspace = rng.integers(-5, 2 * d, (2, d)).astype(np.intp)
    with np.errstate(over="ignore", invalid="ignore"):
        actual = batch_sums(
            theta,
            X,
            y,
            weights,
            column_workspace=workspace[0] if columns else None,
            row_workspace=workspace[1],
            **common,
        )
        kept = columns and m >= 2 and 0.125 * d > len(X.indices)
        expected = oracle.batch_sums(theta, X, y, weights, columns=kept, **common)
    assert_same_sums(actual, expected, d, scale=0.0)


def test_a_sparse_row_with_repeated_cells_is_measured_after_adding_them() -> None:
    """‖x‖² of a row with the cell (0, 3) given twice (1 + 2): 3² + 4², not 1 + 4 + 16."""
    X = SparseRows(np.array([0, 3]), np.array([3, 3, 5]), np.array([1.0, 2.0, 4.0]), 8)
    sums = batch_sums(
        np.zeros(9),
        X,
        np.array([1.0]),
        None,
        row_scale=1.0,
        clip_norm_ratio=0.0,
        gradient_statistics=True,
        column_workspace=None,
    )
    assert sums.row_squared_norm_sum == 9.0 + 16.0 + 1.0


PROPOSALS = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "m": st.integers(1, 300),
        "d": st.integers(1, 40),
        "reduction": st.sampled_from(["mean", "sum"]),
        "l1": st.sampled_from([0.0, 1e-4, 0.05]),
        "l2": st.sampled_from([0.0, 1e-3, 0.1]),
        "adagrad": st.booleans(),
        "half_life": st.sampled_from([0.0, 7.0, 1000.0]),
        "columns": st.booleans(),
        "eta": st.floats(1e-4, 2.0),
    }
)


@SETTINGS
@given(PROPOSALS)
def test_the_step_equals_the_oracle(options: dict[str, Any]) -> None:
    rng = np.random.default_rng(options["seed"])
    m, d = options["m"], options["d"]
    theta = rng.normal(0.0, 1.0, d + 1)
    l1, l2 = options["l1"], options["l2"]
    columns = None
    if options["columns"]:  # a sparse batch's columns: no regulariser on that path
        l1 = l2 = 0.0
        columns = rng.choice(d, int(rng.integers(0, d + 1)), replace=False).astype(np.int64)
    width = d if columns is None else len(columns)
    sums = BatchSums(m, rng.normal(0.0, m, width + 1), 1.0, 1.0, 0, gradient_columns=columns)
    accumulator = rng.uniform(0.0, 5.0, d + 1) if options["adagrad"] else None
    common = {
        "reduction": options["reduction"],
        "l1": l1,
        "l2": l2,
        "squared_gradient_sum": accumulator,
        "adagrad_epsilon": 1e-8,
        "accumulator_decay": 2.0 ** (-m / options["half_life"]) if options["half_life"] else 1.0,
    }
    actual = propose_step(theta, sums, options["eta"], **common)
    expected = oracle.propose_step(theta, sums, options["eta"], **common)
    if expected.active is None:
        assert actual.active is None
    else:
        assert actual.active is not None and np.array_equal(actual.active, expected.active)
    _close(actual.values, expected.values, 0.0, "θ")
    _close(actual.accumulated, expected.accumulated, 0.0, "G")
    assert actual.finite == bool(np.isfinite(expected.values).all())


def test_a_non_finite_step_is_reported() -> None:
    sums = BatchSums(2, np.array([np.inf, 1.0]), 1.0, 1.0, 0)
    proposal = propose_step(
        np.zeros(2),
        sums,
        0.1,
        reduction="mean",
        l1=0.01,
        l2=0.0,
        squared_gradient_sum=None,
        adagrad_epsilon=1e-8,
    )
    assert not proposal.finite
