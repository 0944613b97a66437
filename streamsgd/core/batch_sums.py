"""Additive per-minibatch sums of per-sample gradients (:class:`BatchSums`).

Notation (docs/design.md, The math): g_i = s_i r_i c_i [x_i ; 1] ∈ R^(d+1) is the per-sample
gradient of the loss with respect to (w, b) (s_i the importance weight, 1 without weights;
c_i the clipping factor), m the batch size, ḡ = (1/m) Σ_i g_i. Importance weights are
normalised by m, not by Σ s_i (as River's ``learn_many``): the statistics are those of the
weighted per-sample gradients s_i g_i.

Every field is a sum over the batch's samples, so the sums of several replicas' batches
add up to exactly the sums of the union batch (``+``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._vector import sum_of_squares
from .standardize import MomentSums
from .types import FloatArray, IndexArray


@dataclass
class BatchSums:
    """Additive sums over the samples of one minibatch.

    Attributes
    ----------
    n_samples : int
        m.
    gradient_sum : ndarray of shape (d + 1,), or (k + 1,) with ``gradient_columns``
        Σ_i g_i; the last entry is the intercept component Σ_i r_i.
    gradient_squared_norm_sum : float
        Σ_i ‖g_i‖² = Σ_i r_i² (‖x_i‖² + 1) (with a clipped row: r_i² (κ s)²).
    loss_sum : float
        Σ_i ℓ_i (unweighted, pre-step weights).
    n_misclassified : int
        Number of samples with (z_i ≥ 0) ≠ y_i.
    gradient_columns : ndarray of shape (k,), optional
        Sparse batches (m ≥ 2, few entries): the distinct feature columns the batch touches;
        ``gradient_sum[:-1]`` then holds Σ_i g_i at these columns only (every other column
        of Σ_i g_i is exactly 0), so that a step costs O(k), not O(d).
    n_above_scale : int
        #{i : ‖[x_i ; 1]‖ > s}, the batch's count for the median tracker of the row scale s
        (:mod:`.row_scale`); 0 when clipping is disabled.
    n_clipped : int
        Samples whose row was scaled down to norm κ s.
    row_squared_norm_sum : float
        Σ_i s_i ‖c_i [x_i ; 1]‖², the curvature bound of the step (logistic loss:
        ∇²ℓ_i ⪯ ¼ s_i ‖c_i [x_i ; 1]‖² I); NaN when the row norms were not computed.
    curvature_product_sum : ndarray of shape (d + 1,), or (k + 1,) with ``gradient_columns``
        Σ_i ¼ s_i v_i (v_iᵀ u) with v_i = c_i [x_i ; 1] (¼ bounds σ'(z) = σ(z)(1 − σ(z))):
        m times the curvature bound ¼ M of the batch applied to the controller's unit
        vector u (:mod:`.curvature`); None without a controller. Like ``gradient_sum`` it
        is kept at ``gradient_columns`` (and the intercept, last) when those are set: it is
        0 at every other column. Batches scored with the same u (replicas share it) add
        exactly.
    moments : MomentSums, optional
        The standardiser's sums of the rows as learned (:mod:`.standardize`), folded once
        the step is applied; None without standardisation.
    """

    n_samples: int
    gradient_sum: FloatArray
    gradient_squared_norm_sum: float
    loss_sum: float
    n_misclassified: int
    gradient_columns: IndexArray | None = None
    n_above_scale: int = 0
    n_clipped: int = 0
    row_squared_norm_sum: float = math.nan
    curvature_product_sum: FloatArray | None = None
    moments: MomentSums | None = None
    # ‖Σ g_i‖², computed once (by the kernel, or on first use): a plain attribute, as
    # functools.cached_property takes a lock per access on Python 3.11 (≈ 1 µs).
    gradient_sum_squared_norm: float | None = field(
        default=None, repr=False, compare=False, kw_only=True
    )

    def __add__(self, other: BatchSums) -> BatchSums:
        columns = None
        curvature = None
        has_curvature = not (
            self.curvature_product_sum is None or other.curvature_product_sum is None
        )
        if self.gradient_columns is None and other.gradient_columns is None:
            gradient = self.gradient_sum + other.gradient_sum
            if has_curvature:
                curvature = self.curvature_product_sum + other.curvature_product_sum  # type: ignore[operator]
        elif self.gradient_columns is not None and other.gradient_columns is not None:
            both = np.concatenate((self.gradient_columns, other.gradient_columns))
            columns, inverse = np.unique(both, return_inverse=True)
            gradient = _merge_columns(self.gradient_sum, other.gradient_sum, inverse, len(columns))
            if has_curvature:
                curvature = _merge_columns(
                    self.curvature_product_sum,  # type: ignore[arg-type]
                    other.curvature_product_sum,  # type: ignore[arg-type]
                    inverse,
                    len(columns),
                )
        else:
            dense = other if self.gradient_columns is not None else self
            d = len(dense.gradient_sum) - 1
            gradient = self.dense_gradient_sum(d) + other.dense_gradient_sum(d)
            mine, theirs = self.dense_curvature_product_sum(d), other.dense_curvature_product_sum(d)
            if mine is not None and theirs is not None:
                curvature = mine + theirs
        return BatchSums(
            self.n_samples + other.n_samples,
            gradient,
            self.gradient_squared_norm_sum + other.gradient_squared_norm_sum,
            self.loss_sum + other.loss_sum,
            self.n_misclassified + other.n_misclassified,
            columns,
            self.n_above_scale + other.n_above_scale,
            self.n_clipped + other.n_clipped,
            self.row_squared_norm_sum + other.row_squared_norm_sum,
            curvature,
            _add_moments(self.moments, other.moments),
        )

    def dense_gradient_sum(self, n_features: int) -> FloatArray:
        """Σ_i g_i over all d = ``n_features`` columns and the intercept, shape (d + 1,)."""
        if self.gradient_columns is None:
            return self.gradient_sum
        dense = np.zeros(n_features + 1)
        dense[self.gradient_columns] = self.gradient_sum[:-1]
        dense[-1] = self.gradient_sum[-1]
        return dense

    def dense_curvature_product_sum(self, n_features: int) -> FloatArray | None:
        """P over all d = ``n_features`` columns and the intercept, shape (d + 1,)."""
        product = self.curvature_product_sum
        if product is None or self.gradient_columns is None:
            return product
        dense = np.zeros(n_features + 1)
        dense[self.gradient_columns] = product[:-1]
        dense[-1] = product[-1]
        return dense

    @property
    def mean_gradient(self) -> FloatArray:
        """ḡ = (1/m) Σ g_i, shape (d + 1,) (at ``gradient_columns`` and the intercept
        when those are set)."""
        return self.gradient_sum / self.n_samples

    @property
    def mean_gradient_squared_norm(self) -> float:
        """‖ḡ‖² = ‖Σ g_i‖² / m²."""
        squared = self.gradient_sum_squared_norm
        if squared is None:
            g = self.gradient_sum
            squared = self.gradient_sum_squared_norm = float(g @ g)
        return squared / (self.n_samples * self.n_samples)

    def objective_gradient_squared_norm(self, regularization: FloatArray | None) -> float:
        """‖ḡ + ρ‖² with ρ = λ₂ [w ; 0] the gradient of the L2 term at the weights the batch
        was scored with (None: no L2 term, the loss part ‖ḡ‖² itself).

        ρ is the same for every sample (a function of the replicated w), so this is still a
        function of the sums; it needs the dense gradient (an L2 term never keeps columns).
        The squares are added in order (:func:`._vector.sum_of_squares`), as the compiled
        multi-step loop adds them.
        """
        if regularization is None:
            return self.mean_gradient_squared_norm
        return sum_of_squares(self.gradient_sum / self.n_samples + regularization)

    @property
    def gradient_variance(self) -> float:
        """tr Σ̂ = (1/(m−1)) (Σ‖g_i‖² − m‖ḡ‖²), the unbiased (ddof = 1) trace of the
        per-sample gradient covariance; NaN for m = 1. Clipped at 0 against round-off.

        The same for the objective's gradients g_i + λ₂ [w ; 0]: a deterministic L2 term
        shifts every g_i by the same vector, which leaves the covariance unchanged."""
        m = self.n_samples
        if m < 2:
            return math.nan
        centred = self.gradient_squared_norm_sum - m * self.mean_gradient_squared_norm
        return max(centred, 0.0) / (m - 1)


def _add_moments(first: MomentSums | None, second: MomentSums | None) -> MomentSums | None:
    """The moment sums of both batches (either may have none)."""
    if first is None or second is None:
        return first if second is None else second
    return first + second


def _merge_columns(
    first: FloatArray, second: FloatArray, inverse: NDArray[np.intp], n_columns: int
) -> FloatArray:
    """Column-indexed sums of two batches (each: values at its columns, then the
    intercept) on the union of their columns; ``inverse`` maps their concatenated columns
    to the union's (``np.unique(..., return_inverse=True)``)."""
    merged = np.empty(n_columns + 1)
    merged[:-1] = np.bincount(
        inverse.reshape(-1), weights=np.concatenate((first[:-1], second[:-1])), minlength=n_columns
    )
    merged[-1] = first[-1] + second[-1]
    return merged


def ewma_closed_form(
    previous: FloatArray | float | None, values: FloatArray, alpha: float
) -> FloatArray | float:
    """EWMA q ← q + α (v_t − q) over the rows of ``values`` (shape (n,) or (n, k)), n ≥ 1.

    ``previous`` None or NaN means undefined: the average then starts at ``values[0]``.
    Result: (1 − α)^n q₀ + Σ_t α (1 − α)^(n−1−t) v_t, or without q₀ the first weight is
    (1 − α)^(n−1).
    """
    n = values.shape[0]
    decay = 1.0 - alpha
    weights = alpha * np.power(decay, np.arange(n - 1, -1, -1, dtype=np.float64))
    undefined = previous is None or (np.ndim(previous) == 0 and math.isnan(float(previous)))
    if undefined:
        weights[0] = decay ** (n - 1)
        return weights @ values
    return decay**n * previous + weights @ values


def next_weight_square_sum(weight_square_sum: float, alpha: float) -> float:
    """v after one more EWMA step: (1 − α)² v + α², or 1 for the first value."""
    if math.isnan(weight_square_sum):
        return 1.0
    return (1.0 - alpha) ** 2 * weight_square_sum + alpha * alpha


def state_count(value: Any) -> int:
    """A count read from a state document: a non-negative integer (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"expected a count, got {value!r}")
    if not float(value).is_integer():
        raise ValueError(f"expected a count, got {value!r}")
    return int(value)
