# cython: language_level=3
"""One applied minibatch (m ≥ 2) folded into the running noise statistics, compiled.

The formulas are those of :mod:`.gradient_stats` (the within-batch estimates, the window
rule) and :mod:`.drift` (the CUSUM on the batch loss), in the same order of operations;
the numpy/Python implementation they replaced is the oracle of
tests/unit/core/test_noise_update.py. In Python the fold cost ≈ 6 µs a step, as much as
the whole m = 32 kernel: this is the "statistics cost" of a minibatch step.

The statistics are loaded into a C struct (:c:type:`Noise`), folded with no Python object
touched — the change detector's candidate estimates and its alarm included, ports of
``LossChangeDetector._fold_candidate`` / ``alarm`` and ``RunningGradientStatistics._restart``
— and stored back, so that the multi-step loop (:mod:`._multi_step`) folds many steps in
one call with the same code.
"""

from libc.math cimport isnan, isfinite, pow, sqrt, NAN

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


cdef inline double ewma(double previous, double value, double alpha) noexcept nogil:
    """q ← q + α (v − q); the first value when q is NaN (undefined)."""
    return value if isnan(previous) else previous + alpha * (value - previous)


cdef inline double next_weight(double v, double alpha) noexcept nogil:
    """v after one more EWMA step: (1 − α)² v + α², or 1 for the first value."""
    return 1.0 if isnan(v) else (1.0 - alpha) * (1.0 - alpha) * v + alpha * alpha


cdef inline double larger(double a, double b) noexcept nogil:
    """Python's max(a, b): a unless b > a (so a NaN first argument stays)."""
    return b if b > a else a


cdef inline double smaller(double a, double b) noexcept nogil:
    """Python's min(a, b): a unless b < a."""
    return b if b < a else a


cdef inline object py_float(double value):
    """A Python float of ``value``; NaN as math.nan itself (state documents compare NaN by
    identity)."""
    return UNDEFINED if isnan(value) else value


cdef void load_noise(Noise* n, object stats) except *:
    """The struct of a :class:`~.gradient_stats.RunningGradientStatistics`."""
    cdef Py_ssize_t k
    change = stats.change
    n.smoothing = stats.smoothing
    n.min_smoothing = stats.min_smoothing
    n.window_smoothing = stats.window_smoothing
    n.mean_squared_norm = stats.mean_squared_norm
    n.mean_gradient_squared_norm = stats.mean_gradient_squared_norm
    n.per_sample_variance = stats.per_sample_variance
    n.estimator_variance = stats.estimator_variance
    n.true_gradient_squared_norm = stats.true_gradient_squared_norm
    n.objective_gradient_squared_norm = stats.objective_gradient_squared_norm
    n.weight_square_sum = stats.weight_square_sum
    n.squared_deviation = stats.squared_deviation
    n.deviation_weight_square_sum = stats.deviation_weight_square_sum
    n.scaled_weight_square_sum = stats.scaled_weight_square_sum
    n.last_batch_size = stats.last_batch_size
    n.window_batch_size = stats.window_batch_size
    n.single_steps = stats.single_steps
    n.within_batch_steps = stats.within_batch_steps
    n.within_batch_seen = stats._within_batch_seen
    n.level = change.level
    n.spread = change.spread
    n.cusum = change.cusum
    n.n_steps = change.n_steps
    n.n_changes = change.n_changes
    candidate = change.candidate
    n.has_candidate = candidate is not None
    if candidate is not None:
        values = candidate.as_list()
        for k in range(6):
            n.candidate[k] = values[k]
    n.candidate_weight_square_sum = change.candidate_weight_square_sum


cdef void store_noise(const Noise* n, object stats) except *:
    """Write what a fold changes back into ``stats`` (the struct of :func:`load_noise`)."""
    change = stats.change
    stats.window_smoothing = py_float(n.window_smoothing)
    stats.mean_squared_norm = py_float(n.mean_squared_norm)
    stats.mean_gradient_squared_norm = py_float(n.mean_gradient_squared_norm)
    stats.per_sample_variance = py_float(n.per_sample_variance)
    stats.estimator_variance = py_float(n.estimator_variance)
    stats.true_gradient_squared_norm = py_float(n.true_gradient_squared_norm)
    stats.objective_gradient_squared_norm = py_float(n.objective_gradient_squared_norm)
    stats.weight_square_sum = py_float(n.weight_square_sum)
    stats.squared_deviation = py_float(n.squared_deviation)
    stats.deviation_weight_square_sum = py_float(n.deviation_weight_square_sum)
    stats.scaled_weight_square_sum = py_float(n.scaled_weight_square_sum)
    stats.last_batch_size = n.last_batch_size
    stats.window_batch_size = n.window_batch_size
    stats.single_steps = n.single_steps
    stats.within_batch_steps = n.within_batch_steps
    stats._within_batch_seen = n.within_batch_seen
    change.level = py_float(n.level)
    change.spread = py_float(n.spread)
    change.cusum = py_float(n.cusum)
    change.n_steps = n.n_steps
    change.n_changes = n.n_changes
    change.candidate = (
        StepEstimates(*[n.candidate[k] for k in range(6)]) if n.has_candidate else None
    )
    change.candidate_weight_square_sum = py_float(n.candidate_weight_square_sum)


def fold_within_batch(stats, sums, regularization):
    """:meth:`RunningGradientStatistics.update` of an applied batch with m ≥ 2 and a finite
    Σ‖g_i‖² (formulas: the module docstrings of .gradient_stats and .drift)."""
    cdef Noise n
    cdef Py_ssize_t m = sums.n_samples
    cdef double mean_squared = sums.mean_gradient_squared_norm
    cdef double objective = (
        mean_squared
        if regularization is None
        else sums.objective_gradient_squared_norm(regularization)
    )
    load_noise(&n, stats)
    fold_noise(&n, m, sums.gradient_squared_norm_sum, mean_squared, objective, sums.loss_sum)
    store_noise(&n, stats)


cdef void fold_noise(
    Noise* n, Py_ssize_t m, double squares, double mean_squared, double objective, double loss_sum
) noexcept nogil:
    """One applied batch of m ≥ 2 samples: Σ‖g_i‖² = ``squares``, ‖ḡ‖² = ``mean_squared``,
    ‖ḡ + ρ‖² = ``objective``, Σ ℓ_i = ``loss_sum``."""
    cdef double a = n.window_smoothing
    cdef double mm = <double>(m * m)
    cdef double trace, estimate, previous, v, u, deviation_alpha, t, deviation
    cdef Py_ssize_t steps
    n.last_batch_size = m
    n.mean_squared_norm = ewma(n.mean_squared_norm, squares / m, a)
    n.mean_gradient_squared_norm = ewma(n.mean_gradient_squared_norm, mean_squared, a)
    if not n.within_batch_seen:
        n.within_batch_seen = True
        n.per_sample_variance = n.estimator_variance = NAN
        n.true_gradient_squared_norm = n.objective_gradient_squared_norm = NAN
        n.weight_square_sum = n.squared_deviation = NAN
        n.deviation_weight_square_sum = n.scaled_weight_square_sum = NAN
        n.within_batch_steps = 0
    steps = n.within_batch_steps + 1
    steps = steps if steps < MEAN_STEPS_CAP else MEAN_STEPS_CAP
    n.within_batch_steps = steps
    a = larger(a, 1.0 / steps)
    deviation_alpha = larger(a, 1.0 / (steps - 1)) if steps >= 2 else a
    trace = larger(squares - m * mean_squared, 0.0) / (m - 1)  # BatchSums.gradient_variance
    estimate = objective - trace / m
    previous = n.true_gradient_squared_norm
    v = n.weight_square_sum
    u = n.scaled_weight_square_sum
    if not isnan(previous):
        t = estimate - previous
        deviation = mm * (t * t) / (1.0 + mm * u)
        n.squared_deviation = ewma(n.squared_deviation, deviation, deviation_alpha)
        n.deviation_weight_square_sum = next_weight(
            n.deviation_weight_square_sum, deviation_alpha
        )
    n.per_sample_variance = ewma(n.per_sample_variance, trace, a)
    n.estimator_variance = ewma(n.estimator_variance, trace / m, a)
    n.objective_gradient_squared_norm = ewma(n.objective_gradient_squared_norm, objective, a)
    n.true_gradient_squared_norm = ewma(previous, estimate, a)
    n.weight_square_sum = next_weight(v, a)
    n.scaled_weight_square_sum = (
        1.0 / mm if isnan(u) else (1.0 - a) * (1.0 - a) * u + a * a / mm
    )
    n.window_batch_size = m
    observe(n, trace, mean_squared, objective, estimate, loss_sum / m, m)
    window(n, m, n.true_gradient_squared_norm)


cdef void observe(
    Noise* n, double trace, double mean_squared, double objective, double estimate,
    double loss, Py_ssize_t m,
) noexcept nogil:
    """:meth:`LossChangeDetector.observe` and, on an alarm, the statistics' restart."""
    cdef double previous_level, previous_spread, deviation, alpha, squared, sd, z, robust, s
    cdef double step[6]
    cdef Py_ssize_t n_steps
    if not isfinite(loss):
        return
    previous_level, previous_spread = n.level, n.spread
    n_steps = n.n_steps + 1
    n.n_steps = n_steps
    if isnan(previous_level):
        n.level = loss
        return
    deviation = loss - previous_level
    if n_steps <= WARMUP_STEPS or not previous_spread > 0.0:
        alpha = larger(1.0 / n_steps, LEVEL_SMOOTHING)
        squared = m * deviation * deviation
        n.spread = squared if isnan(previous_spread) else (
            previous_spread
            + larger(1.0 / (n_steps - 1), LEVEL_SMOOTHING) * (squared - previous_spread)
        )
        n.level = previous_level + alpha * deviation
        return
    sd = sqrt(previous_spread / m)
    z = deviation / sd if sd > 0.0 else 0.0
    robust = smaller(larger(z, -ROBUST_CLIP), ROBUST_CLIP)
    n.spread = previous_spread * (1.0 + LEVEL_SMOOTHING * (robust * robust - 1.0))
    n.level = previous_level + LEVEL_SMOOTHING * robust * sd
    s = larger(0.0, n.cusum + smaller(z, CLIP) - ALLOWANCE)
    n.cusum = s
    if s == 0.0:
        n.has_candidate, n.candidate_weight_square_sum = False, NAN
        return
    step[0], step[1], step[2] = trace, trace / m, mean_squared
    step[3], step[4], step[5] = objective, estimate, loss
    fold_candidate(n, step)
    if s > THRESHOLD:
        alarm(n)


cdef void fold_candidate(Noise* n, const double* step) noexcept nogil:
    """:meth:`LossChangeDetector._fold_candidate`: the candidate EWMAs since the change
    point, α_n = max(1/n, α₀) (the plain mean of the first 1/α₀ steps, then the EWMA)."""
    cdef Py_ssize_t k
    cdef double v, alpha, q
    if not n.has_candidate:
        for k in range(6):
            n.candidate[k] = step[k]
        n.has_candidate, n.candidate_weight_square_sum = True, 1.0
        return
    v = n.candidate_weight_square_sum
    alpha = larger(v / (1.0 + v), n.smoothing)
    for k in range(6):
        q = n.candidate[k]
        n.candidate[k] = q + alpha * (step[k] - q)
    # Python's (1 − α) ** 2 is libm's pow, which this calls too.
    n.candidate_weight_square_sum = pow(1.0 - alpha, 2.0) * v + alpha * alpha


cdef void alarm(Noise* n) noexcept nogil:
    """:meth:`LossChangeDetector.alarm` then :meth:`RunningGradientStatistics._restart`:
    the estimates start again at the estimated change point; D is kept."""
    cdef Py_ssize_t m = n.window_batch_size  # the candidate's steps are recent: of about this m
    n.n_changes += 1
    n.level = n.candidate[5]
    n.cusum = 0.0
    n.per_sample_variance = n.candidate[0]
    n.estimator_variance = n.candidate[1]
    n.mean_gradient_squared_norm = n.candidate[2]
    n.objective_gradient_squared_norm = n.candidate[3]
    n.true_gradient_squared_norm = n.candidate[4]
    n.weight_square_sum = n.candidate_weight_square_sum
    n.scaled_weight_square_sum = n.candidate_weight_square_sum / <double>(m * m)
    n.within_batch_steps = MEAN_STEPS_CAP  # the mean phase starts a run only
    n.has_candidate, n.candidate_weight_square_sum = False, NAN


cdef double standard_error(const Noise* n) noexcept nogil:
    """:func:`.noise_scale.standard_error`: SE of Ḡ² (NaN until defined)."""
    cdef double variance, v = n.weight_square_sum, t = n.per_sample_variance
    if n.within_batch_seen:
        variance = n.squared_deviation * n.scaled_weight_square_sum
    else:
        variance = (
            2.0 * v * v * t * t + 4.0 * v * larger(n.true_gradient_squared_norm, 0.0) * t
        )
    return sqrt(variance) if variance >= 0.0 else NAN


def choose_window(stats, Py_ssize_t m, double g2):
    """:meth:`RunningGradientStatistics._choose_window`: α ← the largest α₀/2^k ≥ α_min
    whose window covers B̂ = T̄/(g2 + z·SE) and would make g2 significant with a margin
    of 2 (the window rule of .gradient_stats)."""
    cdef Noise n
    load_noise(&n, stats)
    window(&n, m, g2)
    stats.single_steps = 0
    stats.window_smoothing = n.window_smoothing


cdef void window(Noise* n, Py_ssize_t m, double g2) noexcept nogil:
    """The window rule (:func:`choose_window`) on the struct."""
    cdef double trace = n.per_sample_variance
    cdef double alpha = n.smoothing
    cdef double minimum = n.min_smoothing
    cdef double se, v, upper, bound, scaled
    cdef bint known
    n.single_steps = 0
    if not (isnan(trace) or isnan(g2)):
        v = n.weight_square_sum
        se = standard_error(n)
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
    n.window_smoothing = alpha
