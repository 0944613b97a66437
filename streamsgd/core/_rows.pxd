# cython: language_level=3
# The per-sample arithmetic shared by the dense and sparse minibatch kernels (_batch_dense,
# _batch_sparse): inline, so each kernel's loop compiles it in place.

from libc.math cimport INFINITY, exp, fabs, log1p, sqrt


cdef struct SampleTerms:
    double residual      # σ(z) − y
    double loss          # ℓ(z, y) = log1p(e^{−|z|}) + max((1 − 2y) z, 0)
    int misclassified    # (z ≥ 0) ≠ y


cdef inline SampleTerms logistic_sample(double z, double y) noexcept nogil:
    """σ(z) − y, ℓ and the misclassification of one score, from e = exp(−|z|) ≤ 1, so that
    nothing overflows: σ(z) = [z ≥ 0 ? 1 : e]/(1 + e). (1 − 2y) z ≥ 0 never computes
    inf − inf, so an overflowed score z = ±inf gives a loss 0 or inf, never NaN."""
    cdef SampleTerms out
    cdef double e = exp(-fabs(z))
    cdef double positive = 1.0 if z >= 0.0 else 0.0
    cdef double margin = (1.0 - 2.0 * y) * z
    out.residual = (1.0 if z >= 0.0 else e) / (1.0 + e) - y
    out.loss = log1p(e) + (margin if margin > 0.0 else 0.0)
    out.misclassified = 1 if positive - y != 0.0 else 0
    return out


cdef inline double unclipped_score(double clipped_score, double c) noexcept nogil:
    """θᵀv from θᵀ(c v) of a clipped row (0 < c < 1): the raw row's score, computed from the
    bounded row so that no partial sum overflows (±inf when θᵀv exceeds the largest float,
    never NaN for a finite row; c underflowed to 0: the sign, at ±inf)."""
    if c > 0.0:
        return clipped_score / c
    if clipped_score == 0.0:
        return 0.0
    return INFINITY if clipped_score > 0.0 else -INFINITY


cdef extern from "_simd.h" nogil:
    # aᵀb and (aᵀb, ‖a‖²) with eight partial sums in a fixed order (see _simd.h).
    double dot "ssgd_dot"(const double* a, const double* b, Py_ssize_t n) noexcept
    double dot_and_squares "ssgd_dot_and_squares"(
        const double* a, const double* b, Py_ssize_t n, double* squares
    ) noexcept
    # The same for four rows (scores into z[4], squares into q[4]; the next rows ``ahead``
    # prefetched, or NULL); four rank-one updates.
    void dot4_and_squares "ssgd_dot4_and_squares"(
        const double** x, const double* w, Py_ssize_t n, double* z, double* q,
        const double* ahead
    ) noexcept
    void axpy4 "ssgd_axpy4"(const double* a, const double** x, double* y, Py_ssize_t n) noexcept


cdef inline void axpy(double alpha, const double* x, double* y, Py_ssize_t n) noexcept nogil:
    """y ← y + αx (element-wise: vectorised by the compiler without reordering a sum)."""
    cdef Py_ssize_t j
    for j in range(n):
        y[j] += alpha * x[j]
