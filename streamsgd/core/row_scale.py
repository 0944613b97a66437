"""Bounded influence of one sample: Mallows-type gradient weights and a robust row scale s.

A sample enters the model through its augmented row v_i = [x_i ; 1]. It is scored as it is
(z_i = θᵀv_i, the same raw row ``/predict`` and ``evaluate`` score), and with
κ = ``clip_norm_ratio`` > 0 its gradient is weighted by a function of ‖v_i‖/s only::

    g_i = w_i (σ(θᵀv_i) − y_i) v_i,
    w_i = min(1, 3κs/‖v_i‖) · min(1, 100κs/‖v_i‖)      (GRADIENT_RATIO, DESCEND_RATIO)

w_i depends on x only (a Mallows-type weight), so the weighted score equations are still
solved by the true θ* of a well-specified logistic model (Fisher-consistent): the weight
changes how much a sample counts, not what the model fits. (Scaling the row inside the
score, z = c_i θᵀv_i as before, fitted a model of radially squashed features instead: a tail
coefficient 0.073 / 0.136 at κ = 10 / 3 against a true 0.05, issue 19.) Three parts:

* ‖v_i‖ ≤ 3κs: the whole gradient, w_i = 1;
* 3κs < ‖v_i‖ ≤ 100κs: ‖g_i‖ = |r_i| 3κs, the bound of one record's step (η 3κs);
* beyond 100κs the weight descends like ‖v_i‖⁻² (‖g_i‖ = |r_i| 300 κ²s²/‖v_i‖), so rows
  thousands of times the typical norm, which no real data set of ours holds, barely count.

Measured (``bench.influence_bias``, ``bench.quality_auto``, κ = 10, auto): with the weight
c_i = min(1, κs/‖v_i‖) alone, 11 % of rows at norm 1e6 moved the model 77 % from the clean
one, and River's Shuttle, whose largest standardised rows are real, lost 0.0744 in log loss;
the descending part alone brought the first to 4.6 % (dropping those rows: 5.3 %) and left
Shuttle at 0.0744; the 3κs band brought Shuttle to 0.041 (6κs: 0.039, but 5.6 % on the
model). (c_i², descending from κs, gave 4.8 % but Shuttle 0.118.)

In the kernels the row is still bounded at κs: c_i v_i with c_i = min(1, κs/‖v_i‖) (norm κs,
built without overflow) carries the raw residual times ``influence_factor(c_i)`` =
min(3, 1/c_i) min(1, 100 c_i), so that g_i above; the sums that bound the curvature and feed
the standardiser use that bounded row (κs: one record adds at most (κsσ_j)² to M2_j). The
progressive loss of such a record is its true loss under θ (it may be large).

s tracks the median row norm, updated after every applied step of m samples::

    log s ← log s + γ min(m, 16) (#{i : ‖v_i‖ > s}/m − ½),    γ = SCALE_SMOOTHING

a stochastic-approximation step towards the point where half the rows are above s. The count
is a sum over samples (replicas add theirs, see ``BatchSums``), an integer, so the reduction
is exact and a restart replays it bit for bit. It breaks down only when half the rows are
hostile: with a fraction ε of rows at any larger norm, s settles at the (1/2 − ε)/(1 − ε)
quantile of the clean norms (ε = 11 %: their 44th percentile from the top), while the mean of
capped norms it replaces was captured at ε ≈ 1/κ. One record moves log s by γ at most
(e^γ = 1.05), so one record cannot capture it, and a stream of a genuinely larger scale is
followed in ln(ratio)/(γ min(m, 16)/2) steps (10⁴ × the start: 370 steps at m = 1, 22 at
m ≥ 16; rows are learned, weighted down, meanwhile). s starts at √(d + 1), the norm of a
row whose d features are of unit scale. A skipped step (non-finite weights) leaves s unchanged.

Norms never overflow for finite input: ‖v_i‖ comes from the row sums of squares the step
computes anyway, and a row whose sum of squares overflows is measured as M ‖v_i / M‖ with
M = max(‖x_i‖_∞, 1) (its norm can still exceed the largest float, and is then +inf, which
only ever compares and clips). The bounded row is built as κ s (v_i / M) / ‖v_i / M‖ and the
raw score taken from it, θᵀv_i = θᵀ(c_i v_i)/c_i, so no partial sum overflows either (the
score may be ±inf, the residual stays in [−1, 1]). Rows with a NaN or infinite value are
not made finite: their step is not finite and is skipped, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._vector import finite_norm
from .sparse import SparseRows
from .types import FloatArray, IndexArray
from .validation import Features

SCALE_SMOOTHING = 0.05
"""γ of the median tracker of s, per sample of a step up to ``SCALE_BATCH_CAP``."""

SCALE_BATCH_CAP = 16
"""A step of m samples moves log s by γ min(m, 16) (#above/m − ½): the count of a larger
batch is a more precise fraction, so it may take a larger step (at m = 32, 0.8 (#/m − ½):
a 10⁴ larger stream is followed in about 22 steps, not 370), while one record still moves
log s by at most γ."""


GRADIENT_RATIO = 3.0
"""Rows up to GRADIENT_RATIO κs keep their whole gradient (the kernels' ``influence_factor``)."""

DESCEND_RATIO = 100.0
"""Beyond DESCEND_RATIO κs a row's weight descends like ‖v‖⁻² (the kernels' constant)."""


def influence_factor(c: FloatArray, ratio: float = GRADIENT_RATIO) -> FloatArray:
    """The residual multiplier of rows clipped to c v (0 ≤ c < 1, c = κs/‖v‖), shape of c:
    min(ratio, 1/c) · min(1, 100 c), so that the gradient (r · factor)(c v) is w r v of the
    module docstring (``_rows.influence_factor``, the same formula and order; ratio is 1
    while a standardiser warms up, ``Standardizer.settled``)."""
    up = np.where(c * ratio < 1.0, ratio, 1.0 / np.maximum(c, 1e-300))
    return up * np.minimum(DESCEND_RATIO * c, 1.0)


def initial_scale(n_features: int) -> float:
    """s₀ = √(d + 1): the norm of [x ; 1] when the d features are of unit scale."""
    return math.sqrt(n_features + 1.0)


def next_scale(scale: float, n_above: int, n_samples: int) -> float:
    """s ← s · exp(γ min(m, 16) (#{‖v_i‖ > s}/m − ½)); the one formula of every learning
    path (the compiled m = 1 loops: ``_online_math.schedule_and_scale``, bit for bit)."""
    rate = SCALE_SMOOTHING * min(n_samples, SCALE_BATCH_CAP)
    return scale * math.exp(rate * (n_above / n_samples - 0.5))


def vector_norm(vector: FloatArray) -> float:
    """‖v‖ without overflow for any finite v (M ‖v / M‖ with M = max |v_j|; the plain sum of
    squares overflows above 1e154); NaN when v is not finite. Two passes over v, no
    temporaries (compiled: it runs after every poll on θ of up to 2^22 buckets)."""
    return finite_norm(np.ascontiguousarray(vector, dtype=np.float64))


def squared_row_norms(X: Features) -> FloatArray:
    """‖x_i‖², shape (m,) (+inf where the sum of squares overflows: expected for extreme
    rows, which :func:`augmented_norms` measures again without overflow; the caller
    silences that overflow, once per step)."""
    return X.row_squared_norms() if isinstance(X, SparseRows) else np.vecdot(X, X)


def _row_values(X: Features, i: int) -> FloatArray:
    """The values of row i (sparse: repeated cells added up, as the model sees them)."""
    if not isinstance(X, SparseRows):
        return X[i]
    lo, hi = int(X.indptr[i]), int(X.indptr[i + 1])
    columns, inverse = np.unique(X.indices[lo:hi], return_inverse=True)
    return np.bincount(  # type: ignore[return-value]  # float64 with weights
        inverse.reshape(-1), weights=X.values[lo:hi], minlength=len(columns)
    )


def magnitudes(X: Features, rows: IndexArray) -> tuple[FloatArray, FloatArray]:
    """M_i = max(‖x_i‖_∞, 1) and ν_i = ‖v_i / M_i‖ ∈ [1, √(d + 1)] for the given rows.

    ‖v_i‖ = M_i ν_i without any intermediate overflow (NaN for a row holding NaN or inf).
    """
    big = np.empty(len(rows))
    relative = np.empty(len(rows))
    for k, i in enumerate(rows.tolist()):
        values = _row_values(X, i)
        scale = max(float(np.max(np.abs(values), initial=0.0)), 1.0)
        u = values / scale
        big[k] = scale
        relative[k] = math.sqrt(float(u @ u) + (1.0 / scale) ** 2)
    return big, relative


def augmented_norms(X: Features, squared_norms: FloatArray) -> FloatArray:
    """‖v_i‖ = ‖[x_i ; 1]‖, shape (m,), from ``squared_norms`` = ‖x_i‖² + 1.

    Rows whose sum of squares overflowed are measured as M_i ν_i (see :func:`magnitudes`).
    """
    norms = np.sqrt(squared_norms)
    overflowed = np.flatnonzero(np.isinf(norms))
    if len(overflowed):
        big, relative = magnitudes(X, overflowed)
        norms[overflowed] = big * relative
    return norms


@dataclass(frozen=True)
class RowClip:
    """The down-weighted rows of one batch (rows with ‖v_i‖ > κ s).

    Attributes
    ----------
    rows : ndarray of shape (k,)
        Their indices in the batch.
    cap : float
        κ s, the norm every clipped row is scaled to.
    magnitude, relative_norm : ndarray of shape (k,)
        M_i and ν_i of :func:`magnitudes`; c_i v_i = cap · (v_i / M_i) / ν_i, the bounded
        row the gradient and the curvature and moment sums use.
    """

    rows: IndexArray
    cap: float
    magnitude: FloatArray
    relative_norm: FloatArray

    def scaled_features(self, X: Features) -> Features:
        """X with every clipped row replaced by c_i x_i = cap (x_i / M_i) / ν_i."""
        factor = self.cap / self.relative_norm  # = c_i M_i, finite
        if isinstance(X, SparseRows):
            row_of_entry = X.entry_rows
            entry_factor = np.ones(X.n_samples)
            inverse_big = np.ones(X.n_samples)
            entry_factor[self.rows] = factor
            inverse_big[self.rows] = self.magnitude
            values = X.values / inverse_big[row_of_entry] * entry_factor[row_of_entry]
            return SparseRows(X.indptr, X.indices, values, X.n_features)
        scaled = X.copy()
        scaled[self.rows] = X[self.rows] / self.magnitude[:, None] * factor[:, None]
        return scaled

    def intercept_inputs(self, n_samples: int) -> FloatArray:
        """The intercept's input per sample, shape (m,): c_i = cap / (M_i ν_i), 1 elsewhere."""
        inputs = np.ones(n_samples)
        inputs[self.rows] = self.cap / self.relative_norm / self.magnitude
        return inputs


def clip_rows(
    X: Features, squared_norms: FloatArray, scale: float, ratio: float
) -> tuple[RowClip | None, int]:
    """Find the rows whose gradient is weighted down, and the median tracker's count.

    Parameters
    ----------
    X : ndarray of shape (m, d), or SparseRows
    squared_norms : ndarray of shape (m,)
        ‖x_i‖² + 1 (+inf where it overflowed).
    scale, ratio : float
        s and κ > 0.

    Returns
    -------
    clip : RowClip or None
        None when no row exceeds κ s.
    n_above_scale : int
        #{i : ‖v_i‖ > s} (a NaN row is not counted; its step is skipped).
    """
    cap = ratio * scale
    norms = augmented_norms(X, squared_norms)
    n_above_scale = int(np.count_nonzero(norms > scale))
    rows = np.flatnonzero(norms > cap)
    if not len(rows):
        return None, n_above_scale
    big, relative = magnitudes(X, rows)
    return RowClip(rows, cap, big, relative), n_above_scale
