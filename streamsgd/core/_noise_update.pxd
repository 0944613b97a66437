# cython: language_level=3
# The running noise statistics as a C struct, and their fold of one applied minibatch:
# shared by fold_within_batch (one step) and the multi-step loop (_multi_step.pyx), so
# that both run the same compiled code.

cdef struct Noise:
    # RunningGradientStatistics (.noise_state.NoiseStatistics)
    double smoothing
    double min_smoothing
    double window_smoothing
    double mean_squared_norm
    double mean_gradient_squared_norm
    double per_sample_variance
    double estimator_variance
    double true_gradient_squared_norm
    double objective_gradient_squared_norm
    double weight_square_sum
    double squared_deviation
    double deviation_weight_square_sum
    double scaled_weight_square_sum
    Py_ssize_t last_batch_size
    Py_ssize_t window_batch_size
    Py_ssize_t single_steps
    Py_ssize_t within_batch_steps
    bint within_batch_seen
    # its LossChangeDetector (.drift)
    double level
    double spread
    double cusum
    Py_ssize_t n_steps
    Py_ssize_t n_changes
    bint has_candidate
    double candidate[6]         # StepEstimates, in the order of its fields
    double candidate_weight_square_sum


cdef void load_noise(Noise* n, object stats) except *
cdef void store_noise(const Noise* n, object stats) except *
cdef void fold_noise(
    Noise* n, Py_ssize_t m, double squares, double mean_squared, double objective, double loss
) noexcept nogil
