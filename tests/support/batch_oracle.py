"""The numpy implementation of the minibatch step, kept as the oracle of the compiled kernels
(``streamsgd/core/_batch_dense.pyx``, ``_batch_sparse.pyx``, ``_step.pyx``).

This is the product's code before the kernels replaced it (vectorised numpy, one numpy call
per formula of docs/design.md, The math); tests/unit/core/test_batch_kernels.py checks that
the kernels equal it to rtol 1e-9. It uses the product's numpy helpers for the parts the
kernels do not replace (:mod:`streamsgd.core.row_scale`'s clip, :class:`SparseRows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamsgd.core.batch_sums import BatchSums
from streamsgd.core.curvature import CurvatureDirection
from streamsgd.core.row_scale import (
    GRADIENT_RATIO,
    clip_rows,
    influence_factor,
    squared_row_norms,
)
from streamsgd.core.sparse import SparseRows
from streamsgd.core.standardize import SCORE_LIMIT, Frame, MomentSums

SPARSE_STEP_MAX_DENSITY = 0.125


def logistic_terms(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, int]:
    """(σ(z) − y, Σ ℓ_i, misclassified) with e = exp(−|z|) shared by σ and ℓ."""
    e = np.exp(-np.abs(z))
    positive = z >= 0.0
    r = np.where(positive, 1.0, e) / (e + 1.0) - y
    wrong = positive - y
    loss_sum = float(np.log1p(e).sum() + np.maximum((1.0 - 2.0 * y) * z, 0.0).sum())
    return r, loss_sum, int(np.count_nonzero(wrong))


def unclipped_scores(clipped: np.ndarray, c: np.ndarray) -> np.ndarray:
    """θᵀv_i from θᵀ(c_i v_i): divided by c_i; c_i underflowed to 0: ±inf by the sign, 0 at 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = clipped / c
    zero = c == 0.0
    z[zero] = np.where(clipped[zero] == 0.0, 0.0, np.copysign(np.inf, clipped[zero]))
    return z


def standardise(X: np.ndarray, frame: Frame) -> np.ndarray:
    """z = (x − μ)/σ, a finite x whose z overflows capped at ±SCORE_LIMIT."""
    with np.errstate(over="ignore", invalid="ignore"):
        Z = (X - frame.mean) * frame.inverse_scale
    overflowed = np.isinf(Z) & np.isfinite(X)
    Z[overflowed] = np.copysign(SCORE_LIMIT, Z[overflowed])
    return Z


def moment_sums(
    X: np.ndarray, learned: np.ndarray, frame: Frame, row_scale: float, ratio: float
) -> MomentSums:
    """(m, K = μ, S₁, S₂) of the learned rows σ ⊙ c_i z_i (unscaled features: x − μ
    clipped to ± κ s)."""
    deviations = learned * frame.scale
    if len(frame.unscaled):
        cap = ratio * row_scale if ratio > 0.0 else math.inf
        raw = X[:, frame.unscaled] - frame.mean[frame.unscaled]
        deviations[:, frame.unscaled] = np.clip(raw, -cap, cap)
    return MomentSums(
        len(X), frame.mean, deviations.sum(axis=0), np.einsum("ij,ij->j", deviations, deviations)
    )


def batch_sums(
    theta: np.ndarray,
    X: np.ndarray | SparseRows,
    y: np.ndarray,
    sample_weight: np.ndarray | None,
    *,
    row_scale: float,
    clip_norm_ratio: float,
    gradient_statistics: bool,
    columns: bool,
    curvature_direction: CurvatureDirection | None = None,
    frame: Frame | None = None,
    gradient_ratio: float = GRADIENT_RATIO,
) -> BatchSums:
    """The sums of :class:`BatchSums` by numpy, one formula at a time (``gradient_ratio``:
    1 while a standardiser warms up, ``Standardizer.settled``)."""
    raw = X
    if frame is not None:
        assert isinstance(X, np.ndarray)
        X = standardise(X, frame)
    m = len(y)
    augmented_sq = None
    if gradient_statistics or clip_norm_ratio > 0.0:
        augmented_sq = squared_row_norms(X) + 1.0
    clip, n_above_scale = None, 0
    if clip_norm_ratio > 0.0:
        assert augmented_sq is not None
        clip, n_above_scale = clip_rows(X, augmented_sq, row_scale, clip_norm_ratio)
    c = np.ones(m)
    if clip is not None:
        X = clip.scaled_features(X)
        c = clip.intercept_inputs(m)
    moments = None
    if frame is not None:
        assert isinstance(X, np.ndarray) and isinstance(raw, np.ndarray)
        moments = moment_sums(raw, X, frame, row_scale, clip_norm_ratio)
    z = (X.matvec(theta[:-1]) if isinstance(X, SparseRows) else X @ theta[:-1]) + theta[-1] * c
    if clip is not None:  # the raw row's score θᵀv = θᵀ(c v)/c (gradient weighting)
        z[clip.rows] = unclipped_scores(z[clip.rows], c[clip.rows])
    r, loss_sum, n_misclassified = logistic_terms(z, y)
    s = np.ones(m) if sample_weight is None else sample_weight
    r = r * s
    if clip is not None:  # the influence weight beyond c_i (row_scale.influence_factor)
        r[clip.rows] *= influence_factor(c[clip.rows], gradient_ratio)
    gradient = np.append(X.rmatvec(r) if isinstance(X, SparseRows) else r @ X, r @ c)
    curvature = None
    if curvature_direction is not None:
        u = curvature_direction.dense()
        projection = (X.matvec(u[:-1]) if isinstance(X, SparseRows) else X @ u[:-1]) + u[-1] * c
        projection *= 0.25 * s
        product = X.rmatvec(projection) if isinstance(X, SparseRows) else projection @ X
        curvature = np.append(product, projection @ c)
    squared_norm_sum = row_squared_norm_sum = math.nan
    if gradient_statistics:
        assert augmented_sq is not None
        if clip is not None:
            augmented_sq[clip.rows] = clip.cap * clip.cap
        squared_norm_sum = float((r * r) @ augmented_sq)
        row_squared_norm_sum = float(s @ augmented_sq)
    kept = None
    if columns:  # keep Σ g_i (and P) at the touched columns only
        assert isinstance(X, SparseRows)
        kept = np.unique(X.indices)
        gradient = np.append(gradient[kept], gradient[-1])
        if curvature is not None:
            curvature = np.append(curvature[kept], curvature[-1])
    return BatchSums(
        m,
        gradient,
        squared_norm_sum,
        loss_sum,
        n_misclassified,
        kept,
        n_above_scale,
        0 if clip is None else len(clip.rows),
        row_squared_norm_sum,
        curvature,
        moments,
    )


@dataclass(frozen=True)
class Proposal:
    active: np.ndarray | None
    values: np.ndarray
    accumulated: np.ndarray | None


def propose_step(
    theta: np.ndarray,
    sums: BatchSums,
    eta: float,
    *,
    reduction: str,
    l1: float,
    l2: float,
    squared_gradient_sum: np.ndarray | None,
    adagrad_epsilon: float,
    accumulator_decay: float = 1.0,
) -> Proposal:
    """θ − η (ḡ + λ₂ [w ; 0]) (AdaGrad: per-coordinate η from G ← γ^m G + δ², γ^m =
    ``accumulator_decay``), then the L1 prox on w."""
    m = sums.n_samples
    if reduction == "mean":
        direction = sums.gradient_sum / m
    else:
        direction = sums.gradient_sum.copy()
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
    accumulated = None
    step_size: np.ndarray | float = eta
    if squared_gradient_sum is not None:
        accumulated = accumulator_decay * squared_gradient_sum + direction * direction
        step_size = eta / (np.sqrt(accumulated) + adagrad_epsilon)
    new_theta = theta - step_size * direction
    if l1:
        threshold = (step_size[:-1] if isinstance(step_size, np.ndarray) else step_size) * l1
        w = new_theta[:-1]
        new_theta[:-1] = np.sign(w) * np.maximum(np.abs(w) - threshold, 0.0)
    return Proposal(active, new_theta, accumulated)
