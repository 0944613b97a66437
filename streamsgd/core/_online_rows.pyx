# cython: language_level=3
"""One sparse row read for the compiled m = 1 loops, in O(nnz) whatever d.

Entries that repeat a column add up (the model sees their sum, as in
:meth:`SparseRows.to_dense`), so that every column occurs once in the row read (AdaGrad
squares the summed gradient of a column, not each entry's); a small open-addressing table
(2^k ≥ 2 × the longest row slots, cleared after each row) finds a column again. ‖x‖² is
summed in the order of :meth:`SparseRows.row_squared_norms` for a single row — the entries'
order, or ascending columns in a row that repeats a column — so that the row scale s, which
depends on these norms only, is the one of ``learn_batch`` bit for bit.
"""

from libc.math cimport fabs, isinf, sqrt
from libc.stdlib cimport calloc, free, malloc


cdef Py_ssize_t SHORT_ROW = 32   # rows up to this long are checked pair by pair
cdef enum:
    SEEN_BITS = 12               # the filter of _distinct: 2^12 bits


cdef inline Py_ssize_t _home(long long j, Py_ssize_t size) noexcept nogil:
    return <Py_ssize_t>((<unsigned long long>j * 0x9E3779B97F4A7C15ULL) >> 32) & (size - 1)


cdef Py_ssize_t longest_row(const long long[::1] indptr) noexcept:
    cdef Py_ssize_t i, longest = 1
    for i in range(indptr.shape[0] - 1):
        longest = max(longest, indptr[i + 1] - indptr[i])
    return longest


cdef int table_open(Table* t, Py_ssize_t longest) except -1:
    cdef Py_ssize_t slot
    t.size = 2
    while t.size < 2 * longest:
        t.size *= 2
    t.column = <long long*>malloc(t.size * sizeof(long long))
    t.where = <Py_ssize_t*>malloc(t.size * sizeof(Py_ssize_t))
    t.seen = <unsigned long long*>calloc((1 << SEEN_BITS) // 64, sizeof(unsigned long long))
    if t.column == NULL or t.where == NULL or t.seen == NULL:
        table_close(t)
        raise MemoryError()
    for slot in range(t.size):
        t.column[slot] = -1
    return 0


cdef void table_close(Table* t) noexcept:
    free(t.column)
    free(t.where)
    free(t.seen)
    t.column, t.where, t.seen = NULL, NULL, NULL


cdef void _sort_row(long long* cols, double* xs, Py_ssize_t n) noexcept nogil:
    """Insertion sort by column (only rows that repeat a column: rare)."""
    cdef Py_ssize_t a, b
    cdef long long j
    cdef double v
    for a in range(1, n):
        j, v = cols[a], xs[a]
        b = a - 1
        while b >= 0 and cols[b] > j:
            cols[b + 1], xs[b + 1] = cols[b], xs[b]
            b -= 1
        cols[b + 1], xs[b + 1] = j, v


cdef inline Py_ssize_t _seen_bit(long long j) noexcept nogil:
    """j's bit in the filter of _distinct: the top SEEN_BITS bits of a multiplicative hash."""
    return <Py_ssize_t>((<unsigned long long>j * 0x9E3779B97F4A7C15ULL) >> (64 - SEEN_BITS))


cdef inline bint _distinct(Table* t, const long long* indices, Py_ssize_t n) noexcept nogil:
    """Whether the n columns are distinct, found without the table for the rows that are
    cheap to check: strictly increasing ones (the codec's rows), rows whose columns fall on
    distinct bits of a 2^12-bit filter (distinct bits: distinct columns; 21 random columns
    share a bit about once in 20 rows), and short ones (all pairs, branch-free within a
    pair of loops); False (use the table) for the others. A False for a row without a
    repeat costs time only: the table reads such a row in the same order."""
    cdef Py_ssize_t a, b, bit
    cdef unsigned long long mask
    cdef bint increasing = True, same = False
    for a in range(1, n):
        increasing = increasing and indices[a] > indices[a - 1]
    if increasing:
        return True
    for a in range(n):
        bit = _seen_bit(indices[a])
        mask = 1ULL << (bit & 63)
        same = same | ((t.seen[bit >> 6] & mask) != 0)
        t.seen[bit >> 6] |= mask
    for a in range(n):  # the filter is empty between rows
        t.seen[_seen_bit(indices[a]) >> 6] = 0
    if not same:
        return True
    if n > SHORT_ROW:
        return False
    same = False
    for a in range(1, n):
        for b in range(a):
            same = same | (indices[a] == indices[b])
    return not same


cdef Py_ssize_t read_row(Table* t, const long long* indices, const double* values, Py_ssize_t n,
                         long long* cols, double* xs, double* squared) noexcept nogil:
    """The row's distinct columns and their summed values into ``cols``, ``xs``; returns
    their number; ``squared`` = ‖x‖² (module docstring)."""
    cdef Py_ssize_t e, slot, nnz = 0
    cdef long long j
    cdef bint repeats = False
    cdef double total = 0.0
    if _distinct(t, indices, n):  # the usual row: no column to merge, no table to fill
        for e in range(n):
            cols[e] = indices[e]
            xs[e] = values[e]
            total += xs[e] * xs[e]
        squared[0] = total
        return n
    for e in range(n):
        j = indices[e]
        slot = _home(j, t.size)
        while t.column[slot] != -1 and t.column[slot] != j:
            slot = (slot + 1) & (t.size - 1)
        if t.column[slot] == j:
            xs[t.where[slot]] += values[e]
            repeats = True
        else:
            t.column[slot] = j
            t.where[slot] = nnz
            cols[nnz] = j
            xs[nnz] = values[e]
            nnz += 1
    for e in range(nnz):  # clear the row's slots: the table is empty between rows
        slot = _home(cols[e], t.size)
        while t.column[slot] != -1:
            t.column[slot] = -1
            slot = (slot + 1) & (t.size - 1)
    if repeats:
        _sort_row(cols, xs, nnz)
    for e in range(nnz):
        total += xs[e] * xs[e]
    squared[0] = total
    return nnz


cdef double augmented_norm(const double* xs, Py_ssize_t nnz, double augmented_squared) noexcept nogil:
    """‖[x ; 1]‖ from ‖x‖² + 1, or M ‖[x ; 1] / M‖ when that overflowed (row_scale.magnitudes)."""
    cdef double norm = sqrt(augmented_squared), big = 0.0, total = 0.0, u
    cdef Py_ssize_t e
    if not isinf(norm):
        return norm
    for e in range(nnz):
        if fabs(xs[e]) > big:
            big = fabs(xs[e])
    if 1.0 > big:
        big = 1.0
    for e in range(nnz):
        u = xs[e] / big
        total += u * u
    u = 1.0 / big
    return big * sqrt(total + u * u)
