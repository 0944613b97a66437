# cython: language_level=3
# The dense minibatch kernel's structs and loop, shared with the multi-step loop
# (_multi_step.pyx), so that both run the same compiled code.

from libc.stdint cimport int64_t

cdef struct Batch:
    const double* X
    Py_ssize_t m
    Py_ssize_t d
    const double* y
    const double* weights     # NULL: all 1
    const double* theta
    const double* u           # NULL: no curvature product
    double cap                # κs; 0: no clipping
    double row_scale          # s (rows above it are counted)
    bint norms                # compute ‖x_i‖² (statistics or clipping)
    bint statistics
    const double* mean        # NULL: no standardisation
    const double* inverse_scale
    const double* scale
    const int64_t* unscaled
    Py_ssize_t n_unscaled
    double moment_cap         # the ± bound of an unscaled feature's deviation

cdef struct Sums:
    double* gradient          # (d + 1)
    double* curvature         # (d + 1), or NULL
    double* s1                # (d), standardize only
    double* s2
    double* unscaled_s1       # (n_unscaled)
    double* unscaled_s2
    double* row               # scratch (4 d): a block's standardised rows
    double* scaled            # scratch (4 d): a block's clipped rows
    double squared_norm_sum
    double loss_sum
    double row_squared_norm_sum
    Py_ssize_t above_scale
    Py_ssize_t misclassified
    Py_ssize_t clipped


cdef void batch_loop(const Batch* b, Sums* s) noexcept nogil
