"""The Python implementation of the minibatch noise-statistics update, kept as the oracle of
the compiled one (``streamsgd/core/_noise_update.pyx``): the methods
``RunningGradientStatistics._update_within_batch`` / ``_choose_window`` and
``LossChangeDetector.observe`` as they were before the kernel replaced them, as functions
of the same objects."""

from __future__ import annotations

import math

from streamsgd.core.batch_sums import BatchSums, next_weight_square_sum
from streamsgd.core.drift import (
    ALLOWANCE,
    CLIP,
    LEVEL_SMOOTHING,
    ROBUST_CLIP,
    THRESHOLD,
    WARMUP_STEPS,
    LossChangeDetector,
    Restart,
    StepEstimates,
)
from streamsgd.core.gradient_stats import (
    MEAN_STEPS_CAP,
    TRUST_Z,
    RunningGradientStatistics,
    _ewma,
)
from streamsgd.core.types import FloatArray


def update(
    stats: RunningGradientStatistics, sums: BatchSums, regularization: FloatArray | None
) -> None:
    """``RunningGradientStatistics.update`` of a batch with m ≥ 2."""
    a = stats.window_smoothing
    m = sums.n_samples
    stats.last_batch_size = m
    stats.mean_squared_norm = _ewma(stats.mean_squared_norm, sums.gradient_squared_norm_sum / m, a)
    stats.mean_gradient_squared_norm = _ewma(
        stats.mean_gradient_squared_norm, sums.mean_gradient_squared_norm, a
    )
    update_within_batch(stats, sums, regularization, a)
    choose_window(stats, m, stats.true_gradient_squared_norm)


def _significant(alpha: float, g2: float, se: float, v: float) -> bool:
    return g2 > 0.0 and alpha / (2.0 - alpha) * (2.0 * TRUST_Z * se) ** 2 <= v * g2 * g2


def update_within_batch(
    self: RunningGradientStatistics, sums: BatchSums, regularization: FloatArray | None, a: float
) -> None:
    m = sums.n_samples
    if not self._within_batch_seen:
        # The within-batch estimates start afresh (the across-step ones are another
        # estimator, with other weights).
        self._within_batch_seen = True
        self.per_sample_variance = self.estimator_variance = math.nan
        self.true_gradient_squared_norm = self.objective_gradient_squared_norm = math.nan
        self.weight_square_sum = self.squared_deviation = math.nan
        self.deviation_weight_square_sum = self.scaled_weight_square_sum = math.nan
        self.within_batch_steps = 0
    # The plain mean of the first steps (α_n = 1/n), then the EWMA: a first value
    # (a warming-up standardiser's, say) does not weigh as 1/α steps.
    n = self.within_batch_steps = min(self.within_batch_steps + 1, MEAN_STEPS_CAP)
    a = max(a, 1.0 / n)
    deviation_smoothing = max(a, 1.0 / (n - 1)) if n >= 2 else a
    trace = sums.gradient_variance
    objective = sums.objective_gradient_squared_norm(regularization)
    estimate = objective - trace / m
    previous, v = self.true_gradient_squared_norm, self.weight_square_sum
    u = self.scaled_weight_square_sum
    if not math.isnan(previous):
        # E m²(e_t − ē)² = D̃ (1 + m² u) under Var e_t = D̃/m² (noise-dominated): the
        # scale makes steps of different m comparable (m grows while D̃ averages).
        deviation = m * m * (estimate - previous) ** 2 / (1.0 + m * m * u)
        self.squared_deviation = _ewma(self.squared_deviation, deviation, deviation_smoothing)
        self.deviation_weight_square_sum = next_weight_square_sum(
            self.deviation_weight_square_sum, deviation_smoothing
        )
    self.per_sample_variance = _ewma(self.per_sample_variance, trace, a)
    self.estimator_variance = _ewma(self.estimator_variance, trace / m, a)
    self.objective_gradient_squared_norm = _ewma(self.objective_gradient_squared_norm, objective, a)
    self.true_gradient_squared_norm = _ewma(previous, estimate, a)
    self.weight_square_sum = next_weight_square_sum(v, a)
    self.scaled_weight_square_sum = (
        1.0 / (m * m) if math.isnan(u) else (1.0 - a) ** 2 * u + a * a / (m * m)
    )
    self.window_batch_size = m
    step = StepEstimates(
        trace,
        trace / m,
        sums.mean_gradient_squared_norm,
        objective,
        estimate,
        sums.loss_sum / m,
    )
    restart = observe(self.change, step, m, self.smoothing)
    if restart is not None:
        self._restart(restart)


def choose_window(self: RunningGradientStatistics, m: int, g2: float) -> None:
    """α ← the largest α₀/2^k ≥ α_min whose window covers B̂ = T̄/(g2 + z·SE) and
    would make g2 significant with a margin of 2 (module docstring)."""
    trace, alpha = self.per_sample_variance, self.smoothing
    self.single_steps = 0
    if not (math.isnan(trace) or math.isnan(g2)):
        se, v = self.standard_error, self.weight_square_sum
        known = math.isfinite(se) and math.isfinite(v)
        upper = g2 + TRUST_Z * se if known else g2
        bound = 2.0 * m * upper / (trace + m * upper) if upper > 0.0 else 0.0
        while alpha / 2.0 >= self.min_smoothing and (
            alpha > bound or (known and not _significant(alpha, g2, se, v))
        ):
            alpha /= 2.0
    self.window_smoothing = alpha


def observe(
    self: LossChangeDetector, step: StepEstimates, batch_size: int, smoothing: float
) -> Restart | None:
    """Fold in one applied step (m = ``batch_size`` ≥ 2); the candidate estimates to
    restart from when this step raises an alarm, else None. ``smoothing`` is α₀, the
    step of the candidate EWMAs."""
    loss = step.loss
    if not math.isfinite(loss):
        return None
    previous_level, previous_spread = self.level, self.spread
    self.n_steps += 1
    if math.isnan(previous_level):
        self.level = loss
        return None
    deviation = loss - previous_level
    if self.n_steps <= WARMUP_STEPS or not previous_spread > 0.0:
        # Plain means of the first steps (α_n = 1/n), so that L̄ and V̄ are settled
        # before they are used.
        alpha = max(1.0 / self.n_steps, LEVEL_SMOOTHING)
        squared = batch_size * deviation * deviation
        self.spread = (
            squared
            if math.isnan(previous_spread)
            else (
                previous_spread
                + max(1.0 / (self.n_steps - 1), LEVEL_SMOOTHING) * (squared - previous_spread)
            )
        )
        self.level = previous_level + alpha * deviation
        return None
    # Winsorised at c standard deviations: a change must not inflate the scale it is
    # measured against (nor drag the level) before it is detected.
    sd = math.sqrt(previous_spread / batch_size)
    u = deviation / sd if sd > 0.0 else 0.0
    robust = min(max(u, -ROBUST_CLIP), ROBUST_CLIP)
    self.spread = previous_spread * (1.0 + LEVEL_SMOOTHING * (robust * robust - 1.0))
    self.level = previous_level + LEVEL_SMOOTHING * robust * sd
    self.cusum = max(0.0, self.cusum + min(u, CLIP) - ALLOWANCE)
    if self.cusum == 0.0:
        self.candidate, self.candidate_weight_square_sum = None, math.nan
        return None
    self._fold_candidate(step, smoothing)
    if self.cusum <= THRESHOLD:
        return None
    assert self.candidate is not None  # set by _fold_candidate
    restart = Restart(self.candidate, self.candidate_weight_square_sum)
    self.n_changes += 1
    self.level = self.candidate.loss
    self.cusum = 0.0
    self.candidate, self.candidate_weight_square_sum = None, math.nan
    return restart
