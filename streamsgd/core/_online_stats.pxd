# The running statistics of m = 1 steps, as the compiled loops of _online_dense and
# _online_sparse fold them (the formulas: streamsgd/core/gradient_stats.py, m = 1 paragraph).

cdef struct Stats:
    double window_smoothing
    double smoothing
    double min_smoothing
    double weight_square_sum
    double mean_squared_norm
    double mean_gradient_squared_norm
    double per_sample_variance
    double estimator_variance
    double true_gradient_squared_norm
    double objective_gradient_squared_norm
    double squared_deviation
    double scaled_weight_square_sum
    double single_steps
    double window_batch_size
    double last_batch_size
    bint within_batch_seen
    bint has_mean


cdef enum:
    # Slots of the float64 vector that carries Stats between Python and the loops.
    N_STATS_SLOTS = 17


cdef void load_stats(Stats* st, const double* slots) noexcept nogil
cdef void store_stats(const Stats* st, double* slots) noexcept nogil
cdef double next_weight_square_sum(double v, double a) noexcept nogil
cdef void fold_norms(Stats* st, double squared_norm, double gradient_squared_norm) noexcept nogil
cdef void across_step(Stats* st, double mean_squared, double shifted_squared) noexcept nogil
cdef void count_step(Stats* st, double mean_squared) noexcept nogil
