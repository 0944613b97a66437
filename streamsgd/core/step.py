"""The arithmetic of one minibatch step: the batch's sums, and the proposed new weights.

The estimator (:mod:`.model`) owns the state and decides whether a proposal is adopted;
the functions here only compute (see docs/design.md, The math)::

    ḡ = (1/m) Σ_i s_i (σ(z_i) − y_i) c_i [x_i ; 1],    z_i = θᵀ(c_i [x_i ; 1])
    w ← prox_{η λ₁}( w − η (ḡ_w + λ₂ w) ),             b ← b − η ḡ_b

with c_i the clipping factor of :mod:`.row_scale` (1 for an ordinary row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .curvature import CurvatureDirection, curvature_product_sum, sparse_curvature_product_sum
from .gradient_stats import BatchSums
from .losses import logistic_terms
from .row_scale import clip_rows, squared_row_norms
from .sparse import SparseRows
from .types import FloatArray, IndexArray
from .validation import Features

# A sparse minibatch keeps its gradient at the columns it touches while nnz < this × d;
# measured at d = 2^18: O(nnz) column sums cost ≈ 6 ns per entry, the dense step ≈ 1.5 ns
# per column.
SPARSE_STEP_MAX_DENSITY = 0.125


@dataclass(frozen=True)
class BatchStats:
    """What one call of :meth:`OnlineLogisticRegression.learn_batch` measured.

    Attributes
    ----------
    n_samples : int
        m, the number of samples in the minibatch.
    loss : float
        Mean log loss of the batch under the pre-step weights (progressive validation).
    n_misclassified : int
        Samples whose pre-step prediction (z ≥ 0 ↔ class 1) differs from the label.
    gradient_norm : float
        ‖ḡ‖ over (w, b), the loss part only (no regulariser).
    gradient_variance : float
        tr Σ̂ of the per-sample loss gradients over (w, b), ddof = 1; NaN when m = 1.
    learning_rate : float
        η_t used by the step.
    skipped : bool
        True when the step would have made the weights non-finite and was not applied
        (its m samples are then not learned; see ``n_samples_skipped``).
    sums : BatchSums
        The additive per-batch sums everything above is derived from.
    n_clipped : int
        Samples whose row norm exceeded κ s and that were scaled down to it.
    """

    n_samples: int
    loss: float
    n_misclassified: int
    gradient_norm: float
    gradient_variance: float
    learning_rate: float
    skipped: bool
    sums: BatchSums
    n_clipped: int = 0

    @classmethod
    def of(cls, sums: BatchSums, learning_rate: float, skipped: bool) -> BatchStats:
        """The statistics of a step taken (or skipped) on ``sums`` (m ≥ 1) with η_t."""
        m = sums.n_samples
        return cls(
            n_samples=m,
            loss=sums.loss_sum / m,
            n_misclassified=sums.n_misclassified,
            gradient_norm=math.sqrt(sums.mean_gradient_squared_norm),
            gradient_variance=sums.gradient_variance,
            learning_rate=learning_rate,
            skipped=skipped,
            sums=sums,
            n_clipped=sums.n_clipped,
        )

    @property
    def estimator_variance(self) -> float:
        """tr Σ̂ / m: variance of the averaged gradient ḡ that the step uses."""
        return self.gradient_variance / self.n_samples

    @property
    def n_steps_skipped(self) -> int:
        """1 when the step was skipped, else 0 (as :attr:`SequenceStats.n_skipped`)."""
        return int(self.skipped)

    @property
    def n_samples_skipped(self) -> int:
        """m when the step was skipped (its samples were not learned), else 0."""
        return self.n_samples if self.skipped else 0


def batch_sums(
    theta: FloatArray,
    X: Features,
    y: FloatArray,
    sample_weight: FloatArray | None,
    *,
    row_scale: float,
    clip_norm_ratio: float,
    gradient_statistics: bool,
    column_workspace: NDArray[np.intp] | None,
    curvature_direction: CurvatureDirection | None = None,
) -> BatchSums:
    """Per-batch sums under the weights θ (see :class:`BatchSums`). O(m·d).

    Parameters
    ----------
    theta : ndarray of shape (d + 1,)
        [w ; b].
    X, y, sample_weight
        A validated batch of m samples.
    row_scale, clip_norm_ratio : float
        s and κ of :mod:`.row_scale` (κ = 0: no clipping).
    gradient_statistics : bool
        Whether to compute Σ‖g_i‖² (NaN otherwise).
    column_workspace : int ndarray of shape (d,), optional
        Given when a sparse batch may keep its gradient at the columns it touches (no
        regulariser): scratch space of :meth:`SparseRows.rmatvec_columns`.
    curvature_direction : CurvatureDirection, optional
        The controller's unit vector u: also sum ¼ Σ_i s_i v_i (v_iᵀ u)
        (:mod:`.curvature`; at the gradient's columns when those are kept, in O(nnz));
        None: not computed.
    """
    m = len(y)
    augmented_sq = None
    if gradient_statistics or clip_norm_ratio > 0.0:
        augmented_sq = squared_row_norms(X) + 1.0  # ‖[x_i ; 1]‖², one pass over X
    clip = None
    capped_norm_sum = 0.0
    if clip_norm_ratio > 0.0:
        assert augmented_sq is not None
        clip, capped_norm_sum = clip_rows(X, augmented_sq, row_scale, clip_norm_ratio)
    intercept_inputs = None
    if clip is not None:
        X = clip.scaled_features(X)
        intercept_inputs = clip.intercept_inputs(m)
    z = X.matvec(theta[:-1]) if isinstance(X, SparseRows) else X @ theta[:-1]
    z += theta[-1] if intercept_inputs is None else theta[-1] * intercept_inputs
    r, loss_sum, n_misclassified = logistic_terms(z, y)
    column_index = _column_index(X, column_workspace)
    curvature = None
    if curvature_direction is not None:
        curvature = _curvature_sum(
            X, intercept_inputs, sample_weight, curvature_direction, column_index
        )
    if sample_weight is not None:
        r *= sample_weight
    columns, gradient_sum = _gradient_sum(X, r, column_index)
    gradient_sum[-1] = r.sum() if intercept_inputs is None else r @ intercept_inputs
    squared_norm_sum = row_squared_norm_sum = math.nan
    if gradient_statistics:
        assert augmented_sq is not None
        if clip is not None:
            augmented_sq[clip.rows] = clip.cap * clip.cap  # ‖c_i [x_i ; 1]‖² = (κ s)²
        squared_norm_sum = float((r * r) @ augmented_sq)  # ‖g_i‖² = r_i² ‖[x_i ; 1]‖²
        row_squared_norm_sum = float(
            augmented_sq.sum() if sample_weight is None else sample_weight @ augmented_sq
        )
    return BatchSums(
        n_samples=m,
        gradient_sum=gradient_sum,
        gradient_squared_norm_sum=squared_norm_sum,
        loss_sum=loss_sum,
        n_misclassified=n_misclassified,
        gradient_columns=columns,
        capped_norm_sum=capped_norm_sum,
        n_clipped=0 if clip is None else len(clip.rows),
        row_squared_norm_sum=row_squared_norm_sum,
        curvature_product_sum=curvature,
    )


def _curvature_sum(
    X: Features,
    intercept_inputs: FloatArray | None,
    sample_weight: FloatArray | None,
    direction: CurvatureDirection,
    column_index: tuple[IndexArray, NDArray[np.intp]] | None,
) -> FloatArray:
    """P = ¼ Σ_i s_i v_i (v_iᵀ u) (:mod:`.curvature`), at the batch's columns when it keeps
    its gradient there (O(nnz)), else over all d + 1 parameters."""
    # ¼ s_i, the largest σ'(z) = σ(z)(1 − σ(z)): a bound for every w (see .curvature).
    m = len(X)
    hessian_weights = np.full(m, 0.25) if sample_weight is None else 0.25 * sample_weight
    if column_index is None:
        return curvature_product_sum(X, intercept_inputs, hessian_weights, direction.dense())
    assert isinstance(X, SparseRows)
    columns, entry_columns = column_index
    return sparse_curvature_product_sum(
        X, intercept_inputs, hessian_weights, direction, entry_columns, len(columns)
    )


def _column_index(
    X: Features, column_workspace: NDArray[np.intp] | None
) -> tuple[IndexArray, NDArray[np.intp]] | None:
    """:meth:`SparseRows.column_index` when the batch keeps its gradient at the columns it
    touches: only a sparse batch (m ≥ 2) with a workspace and few entries, whose step then
    costs O(nnz), not O(n_features); else None."""
    if (
        column_workspace is not None
        and isinstance(X, SparseRows)
        and X.n_samples >= 2
        and SPARSE_STEP_MAX_DENSITY * X.n_features > len(X.indices)
    ):
        return X.column_index(column_workspace)
    return None


def _gradient_sum(
    X: Features, r: FloatArray, column_index: tuple[IndexArray, NDArray[np.intp]] | None
) -> tuple[IndexArray | None, FloatArray]:
    """(columns, Σ_i r_i x_i at those columns + a slot for the intercept), or (None, Xᵀr
    over all d columns + the slot)."""
    if column_index is not None:
        assert isinstance(X, SparseRows)
        columns, entry_columns = column_index
        gradient_sum = np.empty(len(columns) + 1)
        gradient_sum[:-1] = X.rmatvec_at(r, entry_columns, len(columns))
        return columns, gradient_sum
    gradient_sum = np.empty(X.shape[1] + 1)
    if isinstance(X, SparseRows):
        gradient_sum[:-1] = X.rmatvec(r)
    else:
        np.matmul(r, X, out=gradient_sum[:-1])
    return None, gradient_sum


@dataclass(frozen=True)
class StepProposal:
    """The entries of θ after one step, before the model adopts them.

    Attributes
    ----------
    active : ndarray of shape (k + 1,), or None
        The entries of θ that move (a sparse batch's columns and the intercept); None: all.
    values : ndarray of shape (d + 1,) or (k + 1,)
        New θ, or new θ[active].
    accumulated : ndarray, or None
        The new AdaGrad accumulator (at ``active`` when set); None for plain SGD.
    """

    active: IndexArray | None
    values: FloatArray
    accumulated: FloatArray | None


def propose_step(
    theta: FloatArray,
    sums: BatchSums,
    eta: float,
    *,
    reduction: str,
    l1: float,
    l2: float,
    squared_gradient_sum: FloatArray | None,
    adagrad_epsilon: float,
) -> StepProposal:
    """θ after one step on ``sums`` (nothing is modified in place).

    ``reduction="mean"`` steps on ḡ = Σ g_i / m with λ₁, λ₂; ``"sum"`` on Σ g_i with m λ₁,
    m λ₂. Plain SGD: θ − η (ḡ + λ₂ [w ; 0]), then the L1 prox on w. AdaGrad (when
    ``squared_gradient_sum`` is given) scales each coordinate by 1/(√(G + ḡ²) + ε) and the
    L1 threshold the same way. A gradient kept at a sparse batch's columns (no L1, no L2)
    moves only those columns and the intercept: the same arithmetic on the only entries
    the dense step would change.
    """
    m = sums.n_samples
    if reduction == "mean":
        direction = sums.gradient_sum / m
    else:
        direction = sums.gradient_sum.copy() if l2 else sums.gradient_sum
        l1, l2 = l1 * m, l2 * m
    active = None
    if sums.gradient_columns is not None:
        assert not (l1 or l2)
        active = np.append(sums.gradient_columns, len(theta) - 1)
        theta = theta[active]
        if squared_gradient_sum is not None:
            squared_gradient_sum = squared_gradient_sum[active]
    elif l2:
        direction[:-1] += l2 * theta[:-1]
    if squared_gradient_sum is not None:
        accumulated = squared_gradient_sum + direction * direction
        step_size: FloatArray | float = eta / (np.sqrt(accumulated) + adagrad_epsilon)
    else:
        accumulated = None
        step_size = eta
    new_theta = theta - step_size * direction
    if l1:
        threshold = (step_size[:-1] if isinstance(step_size, np.ndarray) else step_size) * l1
        w = new_theta[:-1]
        new_theta[:-1] = np.sign(w) * np.maximum(np.abs(w) - threshold, 0.0)
    return StepProposal(active, new_theta, accumulated)
