# cython: language_level=3
# The sparse minibatch kernel's structs and loop, shared with the multi-step loop
# (_multi_step.pyx), so that both run the same compiled code.

from libc.stdint cimport int64_t

cdef struct Batch:
    const int64_t* indptr
    const int64_t* indices
    const double* values
    Py_ssize_t m
    Py_ssize_t d
    const double* y
    const double* weights     # NULL: all 1
    const double* theta
    const double* u           # NULL: no curvature product; else u_j = u[j] · u_factor
    double u_factor
    double cap                # κs; 0: no clipping
    double row_scale          # s (rows above it are counted)
    bint norms
    bint statistics
    int64_t* positions        # column workspace; NULL: Σ g_i over all d columns
    int64_t* row_positions    # row workspace
    int64_t* row_columns      # scratch (nnz): a row's distinct columns
    double* row_cells         # scratch (nnz): their added-up values
    int64_t* entry_slots      # column mode, scratch (nnz): each entry's slot
    int64_t* slot_rows        # column mode, scratch (nnz): the last stamp that used a slot
    int64_t* slot_cells       # column mode, scratch (nnz): that call's cell of the slot

cdef struct Sums:
    double* gradient          # (d + 1), or (nnz + 1) in column mode (intercept: own field)
    double* curvature         # the same shape, or NULL
    int64_t* columns          # column mode: the distinct columns, in order of appearance
    Py_ssize_t n_columns
    double gradient_intercept
    double curvature_intercept
    double squared_norm_sum
    double loss_sum
    Py_ssize_t above_scale
    double row_squared_norm_sum
    Py_ssize_t misclassified
    Py_ssize_t clipped


cdef void batch_loop(const Batch* b, Sums* s) noexcept nogil
