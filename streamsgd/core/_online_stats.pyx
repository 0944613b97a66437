# cython: language_level=3
"""The running gradient statistics of m = 1 steps, folded one step at a time in compiled code.

The same arithmetic, in the same order, as :meth:`RunningGradientStatistics.update` with
m = 1 (:mod:`.gradient_stats`) and its m = 1 helpers (:mod:`.single_steps`): the EWMAs
S of ‖g_t‖² and of ‖ḡ_t‖², the weight sum v = Σ ω², the across-step estimates from
‖M‖² and ‖M + ρ‖² (M the EWMA of g_t, which the calling loop keeps, ρ = λ₂ [w ; 0]), and the
window rule every 32nd step. Python's ``max(x, 0.0)`` is spelt ``0.0 if 0.0 > x else x`` so
that NaN propagates as it does there.
"""

from libc.math cimport NAN, isfinite, isnan, sqrt

cdef double TRUST_Z = 2.0  # gradient_stats.TRUST_Z
cdef double SINGLE_STEP_REFRESH = 32.0  # single_steps.SINGLE_STEP_REFRESH


def n_stats_slots() -> int:
    """The length of the vector :func:`load_stats` reads (for the Python side)."""
    return N_STATS_SLOTS


cdef void load_stats(Stats* st, const double* s) noexcept nogil:
    st.window_smoothing = s[0]
    st.smoothing = s[1]
    st.min_smoothing = s[2]
    st.weight_square_sum = s[3]
    st.mean_squared_norm = s[4]
    st.mean_gradient_squared_norm = s[5]
    st.per_sample_variance = s[6]
    st.estimator_variance = s[7]
    st.true_gradient_squared_norm = s[8]
    st.objective_gradient_squared_norm = s[9]
    st.squared_deviation = s[10]
    st.scaled_weight_square_sum = s[11]
    st.single_steps = s[12]
    st.window_batch_size = s[13]
    st.last_batch_size = s[14]
    st.within_batch_seen = s[15] != 0.0
    st.has_mean = s[16] != 0.0


cdef void store_stats(const Stats* st, double* s) noexcept nogil:
    s[0] = st.window_smoothing
    s[1] = st.smoothing
    s[2] = st.min_smoothing
    s[3] = st.weight_square_sum
    s[4] = st.mean_squared_norm
    s[5] = st.mean_gradient_squared_norm
    s[6] = st.per_sample_variance
    s[7] = st.estimator_variance
    s[8] = st.true_gradient_squared_norm
    s[9] = st.objective_gradient_squared_norm
    s[10] = st.squared_deviation
    s[11] = st.scaled_weight_square_sum
    s[12] = st.single_steps
    s[13] = st.window_batch_size
    s[14] = st.last_batch_size
    s[15] = 1.0 if st.within_batch_seen else 0.0
    s[16] = 1.0 if st.has_mean else 0.0


cdef inline double _max0(double x) noexcept nogil:
    return 0.0 if 0.0 > x else x


cdef inline double _ewma(double previous, double value, double a) noexcept nogil:
    return value if isnan(previous) else previous + a * (value - previous)


cdef double next_weight_square_sum(double v, double a) noexcept nogil:
    """v ← (1 − α)² v + α² (1 for the first value)."""
    if isnan(v):
        return 1.0
    return (1.0 - a) * (1.0 - a) * v + a * a


cdef void fold_norms(Stats* st, double squared_norm, double gradient_squared_norm) noexcept nogil:
    """The two EWMAs every m = 1 step moves: of Σ‖g_i‖² and of ‖ḡ‖² (m = 1)."""
    cdef double a = st.window_smoothing
    st.last_batch_size = 1.0
    st.mean_squared_norm = _ewma(st.mean_squared_norm, squared_norm, a)
    st.mean_gradient_squared_norm = _ewma(st.mean_gradient_squared_norm, gradient_squared_norm, a)


cdef void across_step(Stats* st, double mean_squared, double shifted_squared) noexcept nogil:
    """tr Σ and |G|² across steps from ‖M‖² and ‖M + ρ‖² (single_steps.across_step_estimates)."""
    cdef double v = st.weight_square_sum
    cdef double spread = _max0(st.mean_squared_norm - mean_squared)
    cdef double trace = spread / (1.0 - v) if v < 1.0 else NAN
    st.per_sample_variance = trace
    st.estimator_variance = trace
    st.true_gradient_squared_norm = shifted_squared - v * trace
    st.objective_gradient_squared_norm = st.true_gradient_squared_norm + trace
    st.window_batch_size = 1.0


cdef double _standard_error(const Stats* st) noexcept nogil:
    cdef double v = st.weight_square_sum
    cdef double trace = st.per_sample_variance
    cdef double variance
    if st.within_batch_seen:
        variance = st.squared_deviation * st.scaled_weight_square_sum
    else:
        variance = (2.0 * v * v * trace * trace
                    + 4.0 * v * _max0(st.true_gradient_squared_norm) * trace)
    return sqrt(variance) if variance >= 0.0 else NAN


cdef bint _significant(double alpha, double g2, double se, double v) noexcept nogil:
    return g2 > 0.0 and alpha / (2.0 - alpha) * (2.0 * TRUST_Z * se) * (2.0 * TRUST_Z * se) <= v * g2 * g2


cdef void _choose_window(Stats* st, double m, double g2) noexcept nogil:
    """RunningGradientStatistics._choose_window."""
    cdef double trace = st.per_sample_variance
    cdef double alpha = st.smoothing
    cdef double se, v, upper, bound
    cdef bint known
    st.single_steps = 0.0
    if not (isnan(trace) or isnan(g2)):
        se = _standard_error(st)
        v = st.weight_square_sum
        known = isfinite(se) and isfinite(v)
        upper = g2 + TRUST_Z * se if known else g2
        bound = 2.0 * m * upper / (trace + m * upper) if upper > 0.0 else 0.0
        while alpha / 2.0 >= st.min_smoothing and (
            alpha > bound or (known and not _significant(alpha, g2, se, v))
        ):
            alpha /= 2.0
    st.window_smoothing = alpha


cdef void count_step(Stats* st, double mean_squared) noexcept nogil:
    """One more m = 1 step; every 32nd re-chooses α from single_steps.window_estimate."""
    cdef double g2
    st.single_steps += 1.0
    if st.single_steps >= SINGLE_STEP_REFRESH:
        if st.within_batch_seen or not st.has_mean:
            g2 = st.true_gradient_squared_norm
        else:
            g2 = mean_squared - st.weight_square_sum * st.per_sample_variance
        _choose_window(st, st.window_batch_size if st.window_batch_size > 0.0 else 1.0, g2)
