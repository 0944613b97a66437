"""The running statistics of m = 1 steps: their across-step estimates (formulas: the
m = 1 paragraph of :mod:`.gradient_stats`), and the fold of a run of them at once (the block
path of :mod:`.sequential`): the same result as one
:meth:`RunningGradientStatistics.update` per step, up to round-off, in O(n d) numpy work."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from .batch_sums import (
    BatchSums,
    SingleSteps,
    ewma_closed_form,
    weight_square_sum_after,
)
from .types import FloatArray

__all__ = ["across_step_estimates", "fold_single_steps", "window_estimate"]

SINGLE_STEP_REFRESH = 32  # m = 1: α is re-chosen every this many steps


class RunningGradientStatistics(Protocol):
    """What the fold reads and writes of :class:`.gradient_stats.RunningGradientStatistics`
    (a protocol: that module imports this one)."""

    window_smoothing: float
    mean_gradient: FloatArray | None
    weight_square_sum: float
    mean_squared_norm: float
    mean_gradient_squared_norm: float
    single_steps: int
    per_sample_variance: float
    estimator_variance: float
    true_gradient_squared_norm: float
    objective_gradient_squared_norm: float
    window_batch_size: int

    @property
    def within_batch_seen(self) -> bool: ...

    def update(self, sums: BatchSums, regularization: FloatArray | None = None) -> None: ...


def across_step_estimates(
    stats: RunningGradientStatistics, regularization: FloatArray | None
) -> None:
    """m = 1: tr Σ and |G|² from the EWMAs of g and ‖g‖² (ρ = ``regularization``)."""
    assert stats.mean_gradient is not None
    v, mean = stats.weight_square_sum, stats.mean_gradient
    shifted = mean if regularization is None else mean + regularization
    # At v = 1 (α = 1, or one step so far) there is no variance across steps to see.
    spread = max(stats.mean_squared_norm - float(mean @ mean), 0.0)
    trace = spread / (1.0 - v) if v < 1.0 else math.nan
    stats.per_sample_variance = stats.estimator_variance = trace
    stats.true_gradient_squared_norm = float(shifted @ shifted) - v * trace
    stats.objective_gradient_squared_norm = stats.true_gradient_squared_norm + trace
    stats.window_batch_size = 1


def window_estimate(stats: RunningGradientStatistics) -> float:
    """|G|² for the window of m = 1 steps: without ρ (known to a block of steps only at its
    end), so that :func:`fold_single_steps` chooses the windows ``update`` would choose."""
    if stats.within_batch_seen or stats.mean_gradient is None:
        return stats.true_gradient_squared_norm
    mean = stats.mean_gradient
    return float(mean @ mean) - stats.weight_square_sum * stats.per_sample_variance


def fold_single_steps(
    stats: RunningGradientStatistics, steps: SingleSteps, regularization: FloatArray | None
) -> None:
    """Fold n consecutive applied m = 1 steps into ``stats``. The steps are cut where α is
    re-chosen (every 32nd step); in each piece all but the last step are folded in closed
    form (:func:`ewma_closed_form`, α constant), the last through ``stats.update`` itself,
    so that every derived quantity is the one that method computes. ``regularization``: ρ
    at the weights after the n steps."""
    kept = np.isfinite(steps.squared_norms)
    X, scales, squared_norms = steps.features, steps.gradient_scales, steps.squared_norms
    losses, missed = steps.losses, steps.misclassified
    if not kept.all():
        X, scales, squared_norms = X[kept], scales[kept], squared_norms[kept]
        losses, missed = losses[kept], missed[kept]
    start, n = 0, len(scales)
    while start < n:
        stop = min(n, start + SINGLE_STEP_REFRESH - stats.single_steps)
        piece = SingleSteps(
            X[start:stop],
            scales[start:stop],
            squared_norms[start:stop],
            losses[start:stop],
            missed[start:stop],
        )
        _fold_piece(stats, piece, regularization)
        start = stop


def _fold_piece(
    stats: RunningGradientStatistics, steps: SingleSteps, regularization: FloatArray | None
) -> None:
    alpha = stats.window_smoothing
    X, scales, squared_norms = steps.features, steps.gradient_scales, steps.squared_norms
    head = steps.n_steps - 1
    if head > 0:
        # As in update: the across-step mean gradient is only kept until a batch with
        # m ≥ 2 has been seen.
        if not stats.within_batch_seen:
            gradients = np.empty((head, X.shape[1] + 1))
            np.multiply(X[:head], scales[:head, None], out=gradients[:, :-1])
            gradients[:, -1] = scales[:head]
            stats.mean_gradient = np.asarray(
                ewma_closed_form(stats.mean_gradient, gradients, alpha), dtype=np.float64
            )
            stats.weight_square_sum = weight_square_sum_after(stats.weight_square_sum, alpha, head)
        stats.mean_squared_norm = float(
            ewma_closed_form(stats.mean_squared_norm, squared_norms[:head], alpha)
        )
        stats.mean_gradient_squared_norm = float(
            ewma_closed_form(stats.mean_gradient_squared_norm, squared_norms[:head], alpha)
        )
        stats.single_steps += head
    # The last step through the method itself: it also sets last_batch_size, the
    # across-step estimates and α, which depend only on the state after the step.
    last = float(scales[-1])
    gradient = np.empty(X.shape[1] + 1)
    gradient[:-1] = last * X[-1]
    gradient[-1] = last
    stats.update(
        BatchSums(
            n_samples=1,
            gradient_sum=gradient,
            gradient_squared_norm_sum=float(squared_norms[-1]),
            loss_sum=float(steps.losses[-1]),
            n_misclassified=int(steps.misclassified[-1]),
        ),
        regularization,
    )
