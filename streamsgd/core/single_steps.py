"""The running statistics of m = 1 steps: their across-step estimates (formulas: the
m = 1 paragraph of :mod:`.gradient_stats`), and the statistics as the flat vector the
compiled m = 1 loops fold step by step (:mod:`._online_stats`, :mod:`.online`)."""

from __future__ import annotations

import math

import numpy as np

from .batch_sums import BatchSums, next_weight_square_sum
from .noise_state import NoiseStatistics
from .types import FloatArray

__all__ = [
    "across_step_estimates",
    "adopt_statistics",
    "ewma",
    "fold_single_step",
    "statistics_vector",
    "window_estimate",
]

SINGLE_STEP_REFRESH = 32  # m = 1: α is re-chosen every this many steps

# The scalar fields of the statistics in the slot order of ``_online_stats.load_stats``
# (after them: within_batch_seen, then whether M is defined).
_SLOTS = (
    "window_smoothing",
    "smoothing",
    "min_smoothing",
    "weight_square_sum",
    "mean_squared_norm",
    "mean_gradient_squared_norm",
    "per_sample_variance",
    "estimator_variance",
    "true_gradient_squared_norm",
    "objective_gradient_squared_norm",
    "squared_deviation",
    "scaled_weight_square_sum",
)
_COUNTS = ("single_steps", "window_batch_size", "last_batch_size")


def ewma(previous: float, value: float, smoothing: float) -> float:
    """q̄ + α (q − q̄), or q itself for the first value (q̄ NaN)."""
    return value if math.isnan(previous) else previous + smoothing * (value - previous)


def fold_single_step(
    stats: NoiseStatistics, sums: BatchSums, regularization: FloatArray | None
) -> None:
    """Fold one m = 1 step into the EWMAs (ρ = ``regularization`` at the weights after it).

    The across-step mean gradient M only serves m = 1 before any larger batch: an O(d)
    vector update per step, made only while it can still be used.
    """
    a = stats.window_smoothing
    stats.last_batch_size = 1
    stats.mean_squared_norm = ewma(stats.mean_squared_norm, sums.gradient_squared_norm_sum, a)
    stats.mean_gradient_squared_norm = ewma(
        stats.mean_gradient_squared_norm, sums.mean_gradient_squared_norm, a
    )
    if not stats.within_batch_seen:
        g_mean = sums.mean_gradient
        stats.mean_gradient = (
            g_mean
            if stats.mean_gradient is None
            else stats.mean_gradient + a * (g_mean - stats.mean_gradient)
        )
        stats.weight_square_sum = next_weight_square_sum(stats.weight_square_sum, a)
        across_step_estimates(stats, regularization)
    stats.single_steps += 1


def across_step_estimates(stats: NoiseStatistics, regularization: FloatArray | None) -> None:
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


def window_estimate(stats: NoiseStatistics) -> float:
    """|G|² for the window of m = 1 steps: without ρ, so that a run of steps chooses the
    windows whatever its L2 term."""
    if stats.within_batch_seen or stats.mean_gradient is None:
        return stats.true_gradient_squared_norm
    mean = stats.mean_gradient
    return float(mean @ mean) - stats.weight_square_sum * stats.per_sample_variance


def statistics_vector(stats: NoiseStatistics, n_features: int) -> tuple[FloatArray, FloatArray]:
    """(the statistics' scalars as ``_online_stats`` reads them, M of shape (d + 1,)): M is
    ``mean_gradient`` itself, which the loop updates in place (no O(d) copy per call; the
    statistics' get_state copies it), or zeros while it is undefined."""
    mean = stats.mean_gradient
    vector = [float(getattr(stats, name)) for name in _SLOTS + _COUNTS]
    vector += [float(stats.within_batch_seen), float(mean is not None)]
    if mean is None:
        m = np.zeros(n_features + 1)
    elif mean.dtype == np.float64 and mean.flags.c_contiguous and mean.flags.writeable:
        m = mean
    else:
        m = np.array(mean, dtype=np.float64)
    return np.array(vector), m


def adopt_statistics(stats: NoiseStatistics, vector: FloatArray, mean: FloatArray) -> None:
    """Write back what a compiled loop folded (the inverse of :func:`statistics_vector`;
    M only once it is defined: it stays None, or untouched, otherwise)."""
    values = vector.tolist()
    for name, value in zip(_SLOTS, values, strict=False):
        setattr(stats, name, value)
    for name, value in zip(_COUNTS, values[len(_SLOTS) :], strict=False):
        setattr(stats, name, int(value))
    if values[-1] and not stats.within_batch_seen:
        stats.mean_gradient = mean
