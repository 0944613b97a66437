"""Bounded influence of one sample: a robust running row scale s and the clipping it drives.

A sample enters the model through its augmented row v_i = [x_i ; 1] (the score is θᵀv_i, the
gradient r_i v_i). With κ = ``clip_norm_ratio`` > 0, each sample is scaled by::

    c_i = min(1, κ s / ‖v_i‖)

before it is scored and learned: the model sees c_i v_i = [c_i x_i ; c_i] (the intercept's
input is scaled with the features, so the scaled row has norm exactly min(‖v_i‖, κ s)).
Its score, its loss, its gradient r_i c_i v_i and its ‖g_i‖² = r_i² min(‖v_i‖, κ s)² all use
the scaled row, so no single sample moves θ by more than η |r_i| κ s ≤ η κ s, whatever its
values, and its progressive loss is at most log(1 + exp(κ s ‖θ‖)).

s is a running typical row norm, updated after every applied step of m samples::

    s ← (1 − α) s + α · (1/m) Σ_i min(‖v_i‖, κ s),    α = SCALE_SMOOTHING

so it is a sum over samples (replicas add their Σ_i min(‖v_i‖, κ s), see ``BatchSums``) and
robust: one step multiplies s by at most 1 − α + α κ (1.45 at κ = 10), so one record cannot
capture it while a stream of a genuinely larger scale is followed within tens of steps
(10⁴ × the start in about 25 steps). s starts at √(d + 1), the norm of a row whose d
features are of unit scale. A skipped step (non-finite weights) leaves s unchanged.

Norms never overflow for finite input: ‖v_i‖ comes from the row sums of squares the step
computes anyway, and a row whose sum of squares overflows is measured as M ‖v_i / M‖ with
M = max(‖x_i‖_∞, 1) (its norm can still exceed the largest float, and is then +inf, which
only ever compares and clips). A clipped row is built as κ s (v_i / M) / ‖v_i / M‖, so no
intermediate overflows either. Rows with a NaN or infinite value are not clipped into
something finite: their step is not finite and is skipped, as before.
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
"""α of the running row scale, per step."""


def initial_scale(n_features: int) -> float:
    """s₀ = √(d + 1): the norm of [x ; 1] when the d features are of unit scale."""
    return math.sqrt(n_features + 1.0)


def next_scale(scale: float, mean_capped_norm: float) -> float:
    """s ← (1 − α) s + α · mean_i min(‖v_i‖, κ s); the one formula of both learning paths."""
    return (1.0 - SCALE_SMOOTHING) * scale + SCALE_SMOOTHING * mean_capped_norm


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
    """The clipped rows of one batch (rows with ‖v_i‖ > κ s).

    Attributes
    ----------
    rows : ndarray of shape (k,)
        Their indices in the batch.
    cap : float
        κ s, the norm every clipped row is scaled to.
    magnitude, relative_norm : ndarray of shape (k,)
        M_i and ν_i of :func:`magnitudes`; c_i v_i = cap · (v_i / M_i) / ν_i.
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
) -> tuple[RowClip | None, float]:
    """Find the rows to clip and the step's contribution to s.

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
    capped_norm_sum : float
        Σ_i min(‖v_i‖, κ s) (NaN when a row holds NaN; such a step is skipped).
    """
    cap = ratio * scale
    # The usual batch has no row near κ s: three numpy calls. (The margin makes every
    # √ below cap, so the sum is the one of the general path bit for bit; NaN and inf
    # fail the test and take the general path.)
    if float(squared_norms.max()) <= cap * cap * (1.0 - 1e-12):
        return None, float(np.sqrt(squared_norms).sum())
    norms = augmented_norms(X, squared_norms)
    capped_norm_sum = float(np.minimum(norms, cap).sum())
    rows = np.flatnonzero(norms > cap)
    if not len(rows):
        return None, capped_norm_sum
    big, relative = magnitudes(X, rows)
    return RowClip(rows, cap, big, relative), capped_norm_sum
