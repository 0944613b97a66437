# cython: language_level=3
"""The fused minibatch kernel of sparse rows (:class:`~.sparse.SparseRows`): every sum of
:class:`~.batch_sums.BatchSums` in O(nnz), never O(d) per row.

Per row, two reads of its entries (the second from the L1 cache)::

    z_i = Σ_e x_e w_{j(e)},  ‖x_i‖² (repeated cells added up first),  x_iᵀu
    clip, r_i, ℓ_i, the scalar sums as in the dense kernel
    Σ g_i += r_i v_i,  P += ¼ s_i (v_iᵀu) v_i     at the entries' columns

Column mode (``column_workspace`` given: no L1/L2 term, few entries): Σ g_i and P are
kept at the k distinct columns the batch touches, in the order they first appear, so the
whole batch costs O(nnz) whatever d. Both workspaces (int64, shape (d,)) may hold anything:
they are sparse sets (Briggs and Torczon 1993), where ``workspace[j] = t`` counts only when
t is a live slot whose column is j, so they never need an O(d) reset. The row workspace
adds up a row's repeated cells before its norm is taken.
"""

cimport numpy as cnp
from libc.math cimport fabs, isinf, isnan, sqrt, NAN
from libc.stdint cimport int64_t
from libc.string cimport memset

from ._arrays cimport doubles, int64s
from ._rows cimport SampleTerms, logistic_sample, unclipped_score

import numpy as np

cnp.import_array()






cdef Py_ssize_t SHORT_ROW = 32  # rows up to this long find repeated cells by a scan


cdef Py_ssize_t add_row_cells(
    const Batch* b, Py_ssize_t stamp, Py_ssize_t lo, Py_ssize_t hi
) noexcept nogil:
    """Add a row's repeated cells up into ``row_cells``; the number of distinct cells.

    Column mode: by the entries' slots (arrays of nnz, in the cache), a slot counting as
    seen when it holds this call's ``stamp`` (distinct for every call of a batch). Otherwise a short row
    is scanned (≤ 32² / 2 comparisons in the L1 cache); a longer one uses the row
    workspace, one random access per entry into an array of d (a cache miss each at
    d = 2^18, ≈ 50–100 ns, more than the scan of a short row)."""
    cdef Py_ssize_t e, n = 0, t, k
    cdef int64_t j
    cdef bint short = hi - lo <= SHORT_ROW
    if b.positions != NULL:
        for e in range(lo, hi):
            k = b.entry_slots[e]
            if b.slot_rows[k] == stamp:
                b.row_cells[b.slot_cells[k]] += b.values[e]
            else:
                b.slot_rows[k] = stamp
                b.slot_cells[k] = n
                b.row_cells[n] = b.values[e]
                n += 1
        return n
    for e in range(lo, hi):
        j = b.indices[e]
        if short:
            t = 0
            while t < n and b.row_columns[t] != j:
                t += 1
        else:
            t = b.row_positions[j]
            if not (0 <= t < n and b.row_columns[t] == j):
                t = n
        if t < n:
            b.row_cells[t] += b.values[e]
        else:
            if not short:
                b.row_positions[j] = n
            b.row_columns[n] = j
            b.row_cells[n] = b.values[e]
            n += 1
    return n


cdef double row_squares(
    const Batch* b, Py_ssize_t i, Py_ssize_t lo, Py_ssize_t hi
) noexcept nogil:
    """‖x_i‖² with repeated cells added up first (Σ over cells of (Σ entries)²)."""
    cdef Py_ssize_t t, n = add_row_cells(b, 3 * i, lo, hi)
    cdef double q = 0.0
    for t in range(n):
        q += b.row_cells[t] * b.row_cells[t]
    return q


cdef double magnitude(
    const Batch* b, Py_ssize_t stamp, Py_ssize_t lo, Py_ssize_t hi, double* relative
) noexcept nogil:
    """M = max(‖x_i‖_∞, 1) over the added-up cells (NaN when one is NaN) and, into
    ``relative``, ν = ‖[x_i ; 1] / M‖ (:func:`.row_scale.magnitudes`)."""
    cdef Py_ssize_t t, n = add_row_cells(b, stamp, lo, hi)
    cdef double big = 0.0, a, u, s = 0.0
    cdef bint nan = False
    for t in range(n):
        a = fabs(b.row_cells[t])
        if a > big:
            big = a
        elif isnan(a):
            nan = True
    big = NAN if nan else (big if big > 1.0 else 1.0)
    for t in range(n):
        u = b.row_cells[t] / big
        s += u * u
    u = 1.0 / big
    relative[0] = sqrt(s + u * u)
    return big


cdef inline Py_ssize_t slot(const Batch* b, Sums* s, int64_t j) noexcept nogil:
    """Where column j's sums go: j itself, or its slot among the batch's columns."""
    cdef int64_t k
    if b.positions == NULL:
        return j
    k = b.positions[j]
    if not (0 <= k < s.n_columns and s.columns[k] == j):
        k = b.positions[j] = s.n_columns
        s.columns[k] = j
        s.n_columns += 1
    return k


cdef void batch_loop(const Batch* b, Sums* s) noexcept nogil:
    cdef Py_ssize_t i, e, lo, hi, k
    cdef double zw, pu, q = 0.0, sq, sqn, norm, big = 1.0, relative, divisor, factor, c
    cdef double weight, r, projection, value, z
    cdef bint clipped
    cdef SampleTerms terms
    for i in range(b.m):
        lo, hi = b.indptr[i], b.indptr[i + 1]
        zw = pu = 0.0
        for e in range(lo, hi):
            zw += b.values[e] * b.theta[b.indices[e]]
            if b.positions != NULL:
                b.entry_slots[e] = slot(b, s, b.indices[e])
        if b.norms:
            q = row_squares(b, i, lo, hi)
        sq = q + 1.0
        sqn, c, clipped, divisor, factor = sq, 1.0, False, 1.0, 1.0
        if b.cap > 0.0:
            norm = sqrt(sq)
            if isinf(norm):
                big = magnitude(b, 3 * i + 1, lo, hi, &relative)
                norm = big * relative
            if norm > b.row_scale:
                s.above_scale += 1
            if norm > b.cap:  # c_i x_e = κs (x_e / M) / ν
                clipped = True
                divisor = magnitude(b, 3 * i + 2, lo, hi, &relative)
                factor = b.cap / relative
                c = b.cap / relative / divisor
                zw = 0.0
                for e in range(lo, hi):
                    zw += b.values[e] / divisor * factor * b.theta[b.indices[e]]
                sqn = b.cap * b.cap
                s.clipped += 1
        z = zw + b.theta[b.d] * c
        terms = logistic_sample(unclipped_score(z, c) if clipped else z, b.y[i])
        s.loss_sum += terms.loss
        s.misclassified += terms.misclassified
        weight = b.weights[i] if b.weights != NULL else 1.0
        r = terms.residual * weight if b.weights != NULL else terms.residual
        projection = 0.0
        if b.u != NULL:
            for e in range(lo, hi):
                value = b.values[e] / divisor * factor if clipped else b.values[e]
                pu += value * (b.u[b.indices[e]] * b.u_factor)
            projection = (0.25 * weight) * (pu + (b.u[b.d] * b.u_factor) * c)
            s.curvature_intercept += projection * c
        for e in range(lo, hi):
            value = b.values[e] / divisor * factor if clipped else b.values[e]
            k = b.entry_slots[e] if b.positions != NULL else b.indices[e]
            s.gradient[k] += r * value
            if b.u != NULL:
                s.curvature[k] += projection * value
        s.gradient_intercept += r * c
        if b.statistics:
            s.squared_norm_sum += r * r * sqn
            s.row_squared_norm_sum += weight * sqn if b.weights != NULL else sqn


def sparse_batch_sums(
    indptr, indices, values, Py_ssize_t n_features, y, sample_weight, theta, double cap,
    double scale, bint norms, bint statistics, direction, column_workspace, row_workspace,
):
    """The sums of a sparse batch (see the module docstring).

    Parameters
    ----------
    indptr, indices, values : the CSR arrays (int64, int64, float64) of m rows
    n_features : int
        d.
    y, sample_weight, theta, cap, scale, norms, statistics
        As :func:`._batch_dense.dense_batch_sums`.
    direction : (float64 ndarray of shape (d + 1,), factor), or None
        u = values · factor (:class:`~.curvature.CurvatureDirection`), or no product.
    column_workspace : int64 ndarray of shape (d,), or None
        Column mode (see the module docstring); None: sums over all d columns.
    row_workspace : int64 ndarray of shape (d,)

    Returns
    -------
    (columns or None, Σ g_i, Σ‖g_i‖², Σ ℓ_i, misclassified, #{‖v_i‖ > s}, clipped,
    Σ s_i‖v_i‖², P or None, ‖Σ g_i‖²); Σ g_i and P of shape (k + 1,) at ``columns`` in
    column mode.
    """
    cdef Batch b
    cdef Sums s
    cdef Py_ssize_t m = len(indptr) - 1, d = n_features, nnz, width
    b.m, b.d = m, d
    b.indptr = int64s(indptr, m + 1, "indptr")
    nnz = b.indptr[m]
    b.indices = int64s(indices, nnz, "indices")
    b.values = doubles(values, nnz, "values")
    b.y = doubles(y, m, "y")
    b.weights = NULL if sample_weight is None else doubles(sample_weight, m, "sample_weight")
    b.theta = doubles(theta, d + 1, "theta")
    b.u, b.u_factor = NULL, 1.0
    if direction is not None:
        b.u = doubles(direction[0], d + 1, "direction")
        b.u_factor = direction[1]
    b.cap, b.row_scale, b.norms, b.statistics = cap, scale, norms, statistics
    b.positions = (
        NULL if column_workspace is None else int64s(column_workspace, d, "column_workspace")
    )
    b.row_positions = int64s(row_workspace, d, "row_workspace")
    row_columns, row_values = np.empty(nnz, dtype=np.int64), np.empty(nnz)
    slots = None
    b.entry_slots = b.slot_rows = b.slot_cells = NULL
    if column_workspace is not None:  # entry slots; slot rows (all −1), slot cells
        slots = np.empty((3, nnz), dtype=np.int64)
        slots[1] = -1
        b.entry_slots = int64s(slots, 3 * nnz, "")
        b.slot_rows, b.slot_cells = b.entry_slots + nnz, b.entry_slots + 2 * nnz
    b.row_columns = int64s(row_columns, nnz, "")
    b.row_cells = doubles(row_values, nnz, "")
    width = d if column_workspace is None else nnz
    gradient = np.zeros(width + 1)
    curvature = None if direction is None else np.zeros(width + 1)
    columns = None if column_workspace is None else np.empty(nnz, dtype=np.int64)
    memset(&s, 0, sizeof(Sums))
    s.gradient = doubles(gradient, width + 1, "")
    s.curvature = NULL if curvature is None else doubles(curvature, width + 1, "")
    s.columns = NULL if columns is None else int64s(columns, nnz, "")
    with nogil:
        batch_loop(&b, &s)
    if columns is not None:
        columns = columns[: s.n_columns].copy()
        gradient = gradient[: s.n_columns + 1].copy()
        curvature = None if curvature is None else curvature[: s.n_columns + 1].copy()
    width = d if columns is None else s.n_columns  # the intercept's slot
    gradient[width] = s.gradient_intercept
    if curvature is not None:
        curvature[width] = s.curvature_intercept
    if not statistics:
        s.squared_norm_sum = s.row_squared_norm_sum = NAN
    return (
        columns, gradient, s.squared_norm_sum, s.loss_sum, s.misclassified,
        s.above_scale, s.clipped, s.row_squared_norm_sum, curvature,
        squared_norm(gradient),
    )


cdef double squared_norm(object vector):
    """‖v‖² of a float64 vector (its entries in order)."""
    cdef Py_ssize_t j, n = len(vector)
    cdef const double* v = doubles(vector, n, "")
    cdef double total = 0.0
    for j in range(n):
        total += v[j] * v[j]
    return total
