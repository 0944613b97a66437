# Reading one sparse row for the compiled m = 1 loops (_online_rows.pyx).

cdef struct Table:
    Py_ssize_t size      # a power of two ≥ 2 × the longest row
    long long* column    # −1: empty
    Py_ssize_t* where    # the position of the column's entry in the row read
    unsigned long long* seen  # a 2^12-bit filter of the row's columns (all 0 between rows)


cdef int table_open(Table* t, Py_ssize_t longest) except -1
cdef void table_close(Table* t) noexcept
cdef Py_ssize_t read_row(Table* t, const long long* indices, const double* values, Py_ssize_t n,
                         long long* cols, double* xs, double* squared) noexcept nogil
cdef double augmented_norm(const double* xs, Py_ssize_t nnz, double augmented_squared) noexcept nogil
cdef Py_ssize_t longest_row(const long long[::1] indptr) noexcept
