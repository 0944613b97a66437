"""The arithmetic of one minibatch step: the batch's sums, and the proposed new weights.

The estimator (:mod:`.model`) owns the state and decides whether a proposal is adopted;
the functions here only compute (see docs/design.md, The math)::

    ḡ = (1/m) Σ_i s_i c_i (σ(z_i) − y_i) [x_i ; 1],    z_i = θᵀ[x_i ; 1]
    w ← prox_{η λ₁}( w − η (ḡ_w + λ₂ w) ),             b ← b − η ḡ_b

with c_i the influence weight of :mod:`.row_scale` (1 for an ordinary row): the raw row is
scored, the gradient weighted.

The arithmetic is compiled (Cython): :mod:`._batch_dense` and :mod:`._batch_sparse` compute
every sum of a batch in one pass over its rows (O(nnz) for sparse rows), :mod:`._step` the
step; the numpy implementation they replaced is their oracle in tests/support/batch_oracle.py.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from ._batch_dense import dense_batch_sums
from ._batch_sparse import sparse_batch_sums
from ._step import propose
from .batch_sums import BatchSums
from .curvature import CurvatureDirection
from .row_scale import GRADIENT_RATIO
from .sparse import SparseRows
from .standardize import Frame, InputFrame, MomentSums
from .types import FloatArray, IndexArray
from .validation import Features

# A sparse minibatch keeps its gradient at the columns it touches while nnz < this × d;
# measured at d = 2^18 with the numpy kernels: O(nnz) column sums cost ≈ 6 ns per entry,
# the dense step ≈ 1.5 ns per column.
SPARSE_STEP_MAX_DENSITY = 0.125


class BatchStats:
    """What one call of :meth:`OnlineLogisticRegression.learn_batch` measured.

    Everything is derived from the batch's sums on demand (a step that nobody asks about
    costs no derived statistic; the object is built once per step).

    Attributes
    ----------
    sums : BatchSums
        The additive per-batch sums everything below is derived from.
    learning_rate : float
        η_t used by the step.
    skipped : bool
        True when the step would have made the weights non-finite and was not applied
        (its m samples are then not learned; see ``n_samples_skipped``).
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
    n_clipped : int
        Samples whose row norm exceeded κ s and that were scaled down to it.
    """

    __slots__ = ("learning_rate", "skipped", "sums")

    def __init__(self, sums: BatchSums, learning_rate: float, skipped: bool) -> None:
        self.sums = sums
        self.learning_rate = learning_rate
        self.skipped = skipped

    @classmethod
    def of(cls, sums: BatchSums, learning_rate: float, skipped: bool) -> BatchStats:
        """The statistics of a step taken (or skipped) on ``sums`` (m ≥ 1) with η_t."""
        return cls(sums, learning_rate, skipped)

    def __repr__(self) -> str:
        return (
            f"BatchStats(n_samples={self.n_samples}, loss={self.loss!r}, "
            f"learning_rate={self.learning_rate!r}, skipped={self.skipped})"
        )

    @property
    def n_samples(self) -> int:
        return self.sums.n_samples

    @property
    def loss(self) -> float:
        return self.sums.loss_sum / self.sums.n_samples

    @property
    def n_misclassified(self) -> int:
        return self.sums.n_misclassified

    @property
    def gradient_norm(self) -> float:
        return math.sqrt(self.sums.mean_gradient_squared_norm)

    @property
    def gradient_variance(self) -> float:
        return self.sums.gradient_variance

    @property
    def n_clipped(self) -> int:
        return self.sums.n_clipped

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
    inputs: InputFrame | None = None,
    row_workspace: NDArray[np.intp] | None = None,
) -> BatchSums:
    """Per-batch sums under the weights θ (see :class:`BatchSums`), by the fused kernels:
    O(m·d) for dense rows, O(nnz) for sparse ones (:mod:`._batch_dense`, :mod:`._batch_sparse`).

    Parameters
    ----------
    theta : ndarray of shape (d + 1,)
        [w ; b].
    X, y, sample_weight
        A validated batch of m samples (X raw: ``inputs`` standardises it).
    row_scale, clip_norm_ratio : float
        s and κ of :mod:`.row_scale` (κ = 0: no clipping).
    gradient_statistics : bool
        Whether to compute Σ‖g_i‖² and Σ s_i‖v_i‖² (NaN otherwise).
    column_workspace : int ndarray of shape (d,), optional
        Given when a sparse batch may keep its gradient at the columns it touches (no
        regulariser): scratch space of any content (a sparse set, see :mod:`._batch_sparse`).
    curvature_direction : CurvatureDirection, optional
        The controller's unit vector u: also sum P = ¼ Σ_i s_i v_i (v_iᵀ u)
        (:mod:`.curvature`; at the gradient's columns when those are kept); None: not computed.
    inputs : InputFrame, optional
        The model's input frame: a :class:`~.standardize.Standardizer` standardises the rows
        in the same pass and adds their moment sums (``BatchSums.moments``).
    row_workspace : int ndarray of shape (d,), optional
        Scratch space of any content for a sparse batch's row norms (allocated when None).
    """
    cap = clip_norm_ratio * row_scale if clip_norm_ratio > 0.0 else 0.0
    norms = gradient_statistics or cap > 0.0
    frame = None if inputs is None else inputs.learning_frame(X)
    settled = inputs is None or inputs.settled
    if isinstance(X, SparseRows):
        return _sparse_sums(
            theta,
            X,
            y,
            sample_weight,
            cap,
            row_scale,
            norms,
            gradient_statistics,
            column_workspace,
            curvature_direction,
            row_workspace,
        )
    return _dense_sums(
        theta,
        X,
        y,
        sample_weight,
        cap,
        row_scale,
        norms,
        gradient_statistics,
        curvature_direction,
        frame,
        GRADIENT_RATIO if settled else 1.0,
    )


def _dense_sums(
    theta: FloatArray,
    X: FloatArray,
    y: FloatArray,
    sample_weight: FloatArray | None,
    cap: float,
    scale: float,
    norms: bool,
    statistics: bool,
    curvature_direction: CurvatureDirection | None,
    frame: Frame | None,
    gradient_ratio: float,
) -> BatchSums:
    """:func:`batch_sums` of dense rows (standardised in the kernel when ``frame`` is given;
    an unscaled feature's deviation is bounded by κs, or not at all without clipping)."""
    if not X.flags.c_contiguous:
        X = np.ascontiguousarray(X)
    direction = None if curvature_direction is None else curvature_direction.dense()
    arrays = None if frame is None else frame.arrays()
    moment_cap = cap if cap > 0.0 else math.inf
    gradient, squares, loss, wrong, above, clipped, rows, curvature, moments, g2 = dense_batch_sums(
        X,
        y,
        sample_weight,
        theta,
        cap,
        scale,
        norms,
        statistics,
        direction,
        arrays,
        moment_cap,
        gradient_ratio,
    )
    return BatchSums(
        len(y),
        gradient,
        squares,
        loss,
        wrong,
        None,
        above,
        clipped,
        rows,
        curvature,
        None if moments is None or frame is None else MomentSums(len(y), frame.mean, *moments),
        gradient_sum_squared_norm=g2,
    )


def _sparse_sums(
    theta: FloatArray,
    X: SparseRows,
    y: FloatArray,
    sample_weight: FloatArray | None,
    cap: float,
    scale: float,
    norms: bool,
    statistics: bool,
    column_workspace: NDArray[np.intp] | None,
    curvature_direction: CurvatureDirection | None,
    row_workspace: NDArray[np.intp] | None,
) -> BatchSums:
    """:func:`batch_sums` of sparse rows: in column mode when the batch keeps its gradient
    at the columns it touches (m ≥ 2, a workspace, fewer than ``SPARSE_STEP_MAX_DENSITY``·d
    entries), whose step then costs O(nnz), not O(d)."""
    d = X.n_features
    if not (
        column_workspace is not None
        and X.n_samples >= 2
        and SPARSE_STEP_MAX_DENSITY * d > len(X.indices)
    ):
        column_workspace = None
    if row_workspace is None:
        row_workspace = np.empty(d, dtype=np.intp)
    direction = (
        None
        if curvature_direction is None
        else (curvature_direction.values, curvature_direction.factor)
    )
    columns, gradient, squares, loss, wrong, above, clipped, rows, curvature, g2 = (
        sparse_batch_sums(
            _int64(X.indptr),
            _int64(X.indices),
            _float64(X.values),
            d,
            y,
            sample_weight,
            theta,
            cap,
            scale,
            norms,
            statistics,
            direction,
            column_workspace,
            row_workspace,
        )
    )
    return BatchSums(
        len(y),
        gradient,
        squares,
        loss,
        wrong,
        columns,
        above,
        clipped,
        rows,
        curvature,
        gradient_sum_squared_norm=g2,
    )


def _int64(a: NDArray[np.integer]) -> IndexArray:
    """``a`` as a C-contiguous int64 array (itself when it is one)."""
    if a.dtype == np.int64 and a.flags.c_contiguous:
        return a  # type: ignore[return-value]
    return np.ascontiguousarray(a, dtype=np.int64)


def _float64(a: FloatArray) -> FloatArray:
    """``a`` as a C-contiguous float64 array (itself when it is one)."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a, dtype=np.float64)


class StepProposal(NamedTuple):
    """The entries of θ after one step, before the model adopts them (a named tuple: built
    once per step, at a third of a frozen dataclass's cost).

    Attributes
    ----------
    active : ndarray of shape (k + 1,), or None
        The entries of θ that move (a sparse batch's columns and the intercept); None: all.
    values : ndarray of shape (d + 1,) or (k + 1,)
        New θ, or new θ[active].
    accumulated : ndarray, or None
        The new AdaGrad accumulator (at ``active`` when set); None for plain SGD.
    finite : bool
        Every new value is finite (else the model skips the step).
    """

    active: IndexArray | None
    values: FloatArray
    accumulated: FloatArray | None
    finite: bool = True


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
    accumulator_decay: float = 1.0,
) -> StepProposal:
    """θ after one step on ``sums`` (nothing is modified in place), by :mod:`._step`.

    ``reduction="mean"`` steps on ḡ = Σ g_i / m with λ₁, λ₂; ``"sum"`` on Σ g_i with m λ₁,
    m λ₂. Plain SGD: θ − η (ḡ + λ₂ [w ; 0]), then the L1 prox on w. AdaGrad (when
    ``squared_gradient_sum`` is given) scales each coordinate by 1/(√(γ^m G + ḡ²) + ε), with
    ``accumulator_decay`` = γ^m (1: never forget), and the L1 threshold the same way. A
    gradient kept at a sparse batch's columns (no L1, no L2) moves only those columns and
    the intercept: the same arithmetic on the only entries the dense step would change (the
    other entries of G decay by γ^m in :meth:`.optimizer.Optimizer.adopt`).
    """
    columns = sums.gradient_columns
    if columns is not None:
        assert not (l1 or l2)
        columns = _int64(columns)
    active, values, accumulated, finite = propose(
        theta,
        sums.gradient_sum,
        columns,
        sums.n_samples,
        eta,
        reduction == "mean",
        l1,
        l2,
        squared_gradient_sum,
        adagrad_epsilon,
        accumulator_decay,
    )
    return StepProposal(active, values, accumulated, finite)
