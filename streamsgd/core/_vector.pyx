# cython: language_level=3
"""Whole-vector reductions over θ in one or two passes without temporaries.

The health check and the weight-norm gauge read ‖w‖ after every poll; on a hashed model of
2^18–2^22 buckets numpy's version (isfinite, abs, max, a scaled copy, a dot) allocated four
arrays of θ's size per call and dominated the m = 1 loop.
"""

from libc.math cimport fabs, isfinite, sqrt, NAN


cdef double _finite_norm(const double* vector, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef double largest = 0.0, magnitude, scaled, total = 0.0
    for j in range(n):
        magnitude = fabs(vector[j])
        if not isfinite(magnitude):
            return NAN
        if magnitude > largest:
            largest = magnitude
    if largest == 0.0:
        return 0.0
    for j in range(n):
        scaled = vector[j] / largest
        total += scaled * scaled
    return largest * sqrt(total)


def finite_norm(const double[::1] vector) -> float:
    """‖v‖ without overflow for any finite v: M·√(Σ_j (v_j/M)²) with M = max_j |v_j|.

    Parameters
    ----------
    vector : ndarray of shape (n,), float64, contiguous

    Returns
    -------
    float
        The norm; NaN when any v_j is NaN or infinite; 0.0 for an empty or zero vector.
    """
    cdef Py_ssize_t n = vector.shape[0]
    cdef double result
    if n == 0:
        return 0.0
    with nogil:
        result = _finite_norm(&vector[0], n)
    return result


def sum_of_squares(const double[::1] vector) -> float:
    """Σ_j v_j², added in the order of j (one definition of the sum, shared with the
    multi-step loop's ‖ḡ + ρ‖², :mod:`._multi_step`; numpy's dot orders it by its BLAS).

    Parameters
    ----------
    vector : ndarray of shape (n,), float64, contiguous
    """
    cdef Py_ssize_t j, n = vector.shape[0]
    cdef double total = 0.0
    for j in range(n):
        total += vector[j] * vector[j]
    return total
