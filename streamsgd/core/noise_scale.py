"""The noise scale and its evidence, derived from the running estimates: SE of Ḡ², the
trusted gate, B, the lower bound B̂ and the norm test (formulas: :mod:`.gradient_stats`).

Pure functions of a :class:`.noise_state.NoiseStatistics`: O(1), nothing is modified.
"""

from __future__ import annotations

import math

from .noise_state import NoiseStatistics

TRUST_Z = 2.0  # z of the trusted gate: Ḡ² > z·SE
MIN_EFFECTIVE_STEPS = 10.0  # 1/v at least this before anything is trusted


def window_samples(stats: NoiseStatistics) -> float:
    """W = m/v, the samples the |G|² estimate effectively averages (NaN before any)."""
    v = stats.weight_square_sum
    if not (v > 0.0 and stats.window_batch_size):
        return math.nan
    return stats.window_batch_size / v


def standard_error(stats: NoiseStatistics) -> float:
    """SE of Ḡ²: √(D̃ u) within batches, else the Gaussian bound of the m = 1 estimates;
    NaN until defined (or for a state that is not)."""
    v, g2, trace = (
        stats.weight_square_sum,
        stats.true_gradient_squared_norm,
        stats.per_sample_variance,
    )
    if stats.within_batch_seen:
        variance = stats.squared_deviation * stats.scaled_weight_square_sum
    else:
        variance = 2.0 * v * v * trace * trace + 4.0 * v * max(g2, 0.0) * trace
    return math.sqrt(variance) if variance >= 0.0 else math.nan


def evidence(stats: NoiseStatistics) -> tuple[float, float, float] | None:
    """(T̄, Ḡ², SE) once T̄ > 0 and SE rests on 1/v ≥ 10 effective steps, else None."""
    trace, g2 = stats.per_sample_variance, stats.true_gradient_squared_norm
    v, se = stats.weight_square_sum, standard_error(stats)
    if math.isnan(trace) or math.isnan(g2) or math.isnan(se) or not v > 0.0:
        return None
    # Effective steps behind SE: those of D (a restart at a change keeps D).
    weight = min(v, stats.deviation_weight_square_sum)  # > 0 unless a state says otherwise
    enough = weight > 0.0 and 1.0 / weight >= MIN_EFFECTIVE_STEPS
    return (trace, g2, se) if trace > 0.0 and enough else None


def trusted(stats: NoiseStatistics) -> bool:
    """Ḡ² > z·SE, T̄ > 0, 1/v ≥ 10 and W ≥ B."""
    trace, g2, se = evidence(stats) or (math.nan,) * 3
    return g2 > TRUST_Z * se and window_samples(stats) >= trace / g2


def noise_scale_lower_bound(stats: NoiseStatistics) -> float:
    """B̂ = T̄/(Ḡ² + z·SE) when the evidence holds and the window covers B̂ (else NaN)."""
    trace, g2, se = evidence(stats) or (math.nan,) * 3
    upper = g2 + TRUST_Z * se
    bound = trace / upper if upper > 0.0 else math.nan
    return bound if window_samples(stats) >= bound else math.nan


def noise_scale(stats: NoiseStatistics) -> float:
    """B = T̄/Ḡ² when trusted (then finite and > 0), else NaN."""
    if not trusted(stats):
        return math.nan
    return stats.per_sample_variance / stats.true_gradient_squared_norm


def norm_test_ratio(stats: NoiseStatistics) -> float:
    """smoothed(tr Σ̂/m) / smoothed(‖ḡ + ρ‖²); NaN until defined or when the denominator
    is 0 (never infinite)."""
    num, den = stats.estimator_variance, stats.objective_gradient_squared_norm
    if math.isnan(num) or math.isnan(den) or not den > 0.0:
        return math.nan
    ratio = num / den
    return ratio if math.isfinite(ratio) else math.nan
