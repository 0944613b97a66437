# cython: language_level=3
"""One applied minibatch (m ≥ 2) folded into the running noise statistics, compiled.

The formulas are those of :mod:`.gradient_stats` (the within-batch estimates, the window
rule) and :mod:`.drift` (the CUSUM on the batch loss), in the same order of operations;
the numpy/Python implementation they replaced is the oracle of
tests/unit/core/test_noise_update.py. In Python the fold cost ≈ 6 µs a step, as much as
the whole m = 32 kernel: this is the "statistics cost" of a minibatch step. The rare
branches (a change-point candidate, an alarm) call the Python methods they share with the
rest of :mod:`.drift`.
"""

from libc.math cimport isnan, isfinite, sqrt

import math

from .drift import StepEstimates

# math.nan itself for the "undefined" fields (a state document compares NaN by identity).
cdef object UNDEFINED = math.nan

# The constants of .gradient_stats and .drift (test_noise_update checks they agree).
cdef double TRUST_Z = 2.0
cdef Py_ssize_t MEAN_STEPS_CAP = 1 << 20
cdef double LEVEL_SMOOTHING = 0.01
cdef double ALLOWANCE = 1.0
cdef double THRESHOLD = 8.0
cdef double CLIP = 6.0
cdef double ROBUST_CLIP = 3.0
cdef Py_ssize_t WARMUP_STEPS = 20

CONSTANTS = {
    "TRUST_Z": TRUST_Z, "MEAN_STEPS_CAP": MEAN_STEPS_CAP, "LEVEL_SMOOTHING": LEVEL_SMOOTHING,
    "ALLOWANCE": ALLOWANCE, "THRESHOLD": THRESHOLD, "CLIP": CLIP, "ROBUST_CLIP": ROBUST_CLIP,
    "WARMUP_STEPS": WARMUP_STEPS,
}


cdef inline double ewma(double previous, double value, double alpha) noexcept:
    """q ← q + α (v − q); the first value when q is NaN (undefined)."""
    return value if isnan(previous) else previous + alpha * (value - previous)


cdef inline double next_weight(double v, double alpha) noexcept:
    """v after one more EWMA step: (1 − α)² v + α², or 1 for the first value."""
    return 1.0 if isnan(v) else (1.0 - alpha) * (1.0 - alpha) * v + alpha * alpha


cdef inline double larger(double a, double b) noexcept:
    """Python's max(a, b): a unless b > a (so a NaN first argument stays)."""
    return b if b > a else a


cdef inline double smaller(double a, double b) noexcept:
    """Python's min(a, b): a unless b < a."""
    return b if b < a else a


def fold_within_batch(stats, sums, regularization):
    """:meth:`RunningGradientStatistics.update` of an applied batch with m ≥ 2 and a finite
    Σ‖g_i‖² (formulas: the module docstrings of .gradient_stats and .drift)."""
    cdef double a = stats.window_smoothing
    cdef Py_ssize_t m = sums.n_samples
    cdef double mm = <double>(m * m)
    cdef double squares = sums.gradient_squared_norm_sum
    cdef double mean_squared = sums.mean_gradient_squared_norm
    cdef double trace, objective, estimate, previous, v, u, deviation_alpha, t
    cdef Py_ssize_t n
    stats.last_batch_size = m
    stats.mean_squared_norm = ewma(stats.mean_squared_norm, squares / m, a)
    stats.mean_gradient_squared_norm = ewma(stats.mean_gradient_squared_norm, mean_squared, a)
    if not stats._within_batch_seen:
        stats._within_batch_seen = True
        stats.per_sample_variance = stats.estimator_variance = UNDEFINED
        stats.true_gradient_squared_norm = stats.objective_gradient_squared_norm = UNDEFINED
        stats.weight_square_sum = stats.squared_deviation = UNDEFINED
        stats.deviation_weight_square_sum = stats.scaled_weight_square_sum = UNDEFINED
        stats.within_batch_steps = 0
    n = stats.within_batch_steps + 1
    n = n if n < MEAN_STEPS_CAP else MEAN_STEPS_CAP
    stats.within_batch_steps = n
    a = larger(a, 1.0 / n)
    deviation_alpha = larger(a, 1.0 / (n - 1)) if n >= 2 else a
    trace = larger(squares - m * mean_squared, 0.0) / (m - 1)  # BatchSums.gradient_variance
    objective = (
        mean_squared
        if regularization is None
        else sums.objective_gradient_squared_norm(regularization)
    )
    estimate = objective - trace / m
    previous = stats.true_gradient_squared_norm
    v = stats.weight_square_sum
    u = stats.scaled_weight_square_sum
    if not isnan(previous):
        t = estimate - previous
        deviation = mm * (t * t) / (1.0 + mm * u)
        stats.squared_deviation = ewma(stats.squared_deviation, deviation, deviation_alpha)
        stats.deviation_weight_square_sum = next_weight(
            stats.deviation_weight_square_sum, deviation_alpha
        )
    stats.per_sample_variance = ewma(stats.per_sample_variance, trace, a)
    stats.estimator_variance = ewma(stats.estimator_variance, trace / m, a)
    stats.objective_gradient_squared_norm = ewma(
        stats.objective_gradient_squared_norm, objective, a
    )
    stats.true_gradient_squared_norm = ewma(previous, estimate, a)
    stats.weight_square_sum = next_weight(v, a)
    stats.scaled_weight_square_sum = (
        1.0 / mm if isnan(u) else (1.0 - a) * (1.0 - a) * u + a * a / mm
    )
    stats.window_batch_size = m
    observe(stats, trace, mean_squared, objective, estimate, sums.loss_sum / m, m)
    choose_window(stats, m, stats.true_gradient_squared_norm)


cdef void observe(
    stats, double trace, double mean_squared, double objective, double estimate, double loss,
    Py_ssize_t m,
):
    """:meth:`LossChangeDetector.observe` and, on an alarm, the statistics' restart."""
    change = stats.change
    cdef double previous_level, previous_spread, deviation, alpha, squared, sd, z, robust, s
    cdef Py_ssize_t n_steps
    if not isfinite(loss):
        return
    previous_level, previous_spread = change.level, change.spread
    n_steps = change.n_steps + 1
    change.n_steps = n_steps
    if isnan(previous_level):
        change.level = loss
        return
    deviation = loss - previous_level
    if n_steps <= WARMUP_STEPS or not previous_spread > 0.0:
        alpha = larger(1.0 / n_steps, LEVEL_SMOOTHING)
        squared = m * deviation * deviation
        change.spread = squared if isnan(previous_spread) else (
            previous_spread
            + larger(1.0 / (n_steps - 1), LEVEL_SMOOTHING) * (squared - previous_spread)
        )
        change.level = previous_level + alpha * deviation
        return
    sd = sqrt(previous_spread / m)
    z = deviation / sd if sd > 0.0 else 0.0
    robust = smaller(larger(z, -ROBUST_CLIP), ROBUST_CLIP)
    change.spread = previous_spread * (1.0 + LEVEL_SMOOTHING * (robust * robust - 1.0))
    change.level = previous_level + LEVEL_SMOOTHING * robust * sd
    s = larger(0.0, change.cusum + smaller(z, CLIP) - ALLOWANCE)
    change.cusum = s
    if s == 0.0:
        change.candidate, change.candidate_weight_square_sum = None, UNDEFINED
        return
    step = StepEstimates(trace, trace / m, mean_squared, objective, estimate, loss)
    change._fold_candidate(step, stats.smoothing)
    if s <= THRESHOLD:
        return
    restart = change.alarm()
    stats._restart(restart)


def choose_window(stats, Py_ssize_t m, double g2):
    """:meth:`RunningGradientStatistics._choose_window`: α ← the largest α₀/2^k ≥ α_min
    whose window covers B̂ = T̄/(g2 + z·SE) and would make g2 significant with a margin
    of 2 (the window rule of .gradient_stats)."""
    cdef double trace = stats.per_sample_variance
    cdef double alpha = stats.smoothing
    cdef double minimum = stats.min_smoothing
    cdef double se, v, upper, bound, scaled
    cdef bint known
    stats.single_steps = 0
    if not (isnan(trace) or isnan(g2)):
        v = stats.weight_square_sum
        se = stats.standard_error
        known = isfinite(se) and isfinite(v)
        upper = g2 + TRUST_Z * se if known else g2
        bound = 2.0 * m * upper / (trace + m * upper) if upper > 0.0 else 0.0
        while alpha / 2.0 >= minimum:
            scaled = 2.0 * TRUST_Z * se
            if not (
                alpha > bound
                or (known and not (g2 > 0.0 and alpha / (2.0 - alpha) * scaled * scaled <= v * g2 * g2))
            ):
                break
            alpha /= 2.0
    stats.window_smoothing = alpha
