# cython: language_level=3
"""The compiled m = 1 loop on dense rows: every step touches all d + 1 parameters.

One iteration is exactly one ``learn_batch`` on one sample (:mod:`.step`, :mod:`.model`):
the row clip of :mod:`.row_scale`, the pre-step score, loss and misclassification, the
step w ← prox_{ηλ₁}(w − η (g + λ₂ w)) (AdaGrad: per-coordinate η / (√(G + dir²) + ε)), a step
that would make θ non-finite skipped, then the row scale and the running statistics
(:mod:`._online_stats`; the EWMA M of g_t is kept here, fused with ‖M‖² and ‖M + ρ‖²).

The same loop serves sparse rows whose step is O(d) in any case (AdaGrad with L2 moves
every coordinate's accumulator; L1 with L2 and across-step statistics needs ‖w‖² exactly):
each row is scattered into a dense scratch row (:func:`run_scattered`).
"""

from libc.math cimport isfinite, sqrt
from libc.stdlib cimport calloc, free

from ._online_math cimport (
    Clip, N_SETTINGS_SLOTS, Score, Settings, learning_rate, load_settings, no_clip, row_clip,
    schedule_and_scale, score, soft_threshold,
)
from ._online_rows cimport Table, augmented_norm, longest_row, read_row, table_close, table_open
from ._rows cimport influence_factor, unclipped_score
from ._online_stats cimport (
    N_STATS_SLOTS, Stats, across_step, count_step, fold_norms, load_stats,
    next_weight_square_sum, store_stats,
)


cdef struct Dense:
    Settings s
    Stats st
    Py_ssize_t d
    double* theta       # [w ; b], d + 1
    double* accum       # AdaGrad's Σ dir², d + 1 (NULL for SGD)
    double* mean        # M, the EWMA of g_t, d + 1
    double* new_theta   # scratch, d + 1
    double* new_accum   # scratch, d + 1
    double* row         # scratch, d: the clipped row c x
    double n_updates
    double row_scale
    double last_eta
    long long applied
    long long skipped
    long long missed
    long long clipped


cdef bint _propose(Dense* k, const double* x, double r, double intercept, double eta) noexcept nogil:
    """new_theta (and new_accum) after the step on g = r [x ; c]; False if not finite."""
    cdef Py_ssize_t j, d = k.d
    cdef double g, direction, acc, size, value
    cdef bint finite = True
    cdef const Settings* s = &k.s
    for j in range(d + 1):
        g = r * x[j] if j < d else r * intercept
        direction = g
        if j < d and s.l2 != 0.0:
            direction = g + s.l2 * k.theta[j]
        if s.adagrad:
            acc = s.forget * k.accum[j] + direction * direction  # γ A + g² (γ = 1: exact A)
            k.new_accum[j] = acc
            size = eta / (sqrt(acc) + s.epsilon)
        else:
            size = eta
        value = k.theta[j] - size * direction
        if j < d and s.l1 != 0.0:
            value = soft_threshold(value, size * s.l1)
        k.new_theta[j] = value
        if not isfinite(value):
            finite = False
    return finite


cdef void _statistics(Dense* k, const double* x, double r, double intercept,
                      double squared_norm) noexcept nogil:
    """RunningGradientStatistics.update for this applied m = 1 step (ρ at the new θ)."""
    cdef Py_ssize_t j, d = k.d
    cdef Stats* st = &k.st
    cdef double a = st.window_smoothing
    cdef double g, m, shifted
    cdef double gradient_squared = 0.0, mean_squared = 0.0, shifted_squared = 0.0
    cdef bint first = not st.has_mean
    for j in range(d + 1):
        g = r * x[j] if j < d else r * intercept
        gradient_squared += g * g
    fold_norms(st, squared_norm, gradient_squared)
    if not st.within_batch_seen:
        for j in range(d + 1):
            g = r * x[j] if j < d else r * intercept
            m = g if first else k.mean[j] + a * (g - k.mean[j])
            k.mean[j] = m
            mean_squared += m * m
            shifted = m + k.s.l2 * k.theta[j] if (j < d and k.s.l2 != 0.0) else m
            shifted_squared += shifted * shifted
        st.has_mean = True
        st.weight_square_sum = next_weight_square_sum(st.weight_square_sum, a)
        across_step(st, mean_squared, shifted_squared)
    count_step(st, mean_squared)


cdef bint dense_step(Dense* k, const double* x, double y, double weight, double norm,
                     double augmented_squared, double* loss) noexcept nogil:
    """One m = 1 step on the dense row x (length d); False when skipped."""
    cdef Py_ssize_t j, d = k.d
    cdef Clip c = no_clip(norm, augmented_squared)
    cdef double z = 0.0, eta, r
    cdef const double* seen = x
    cdef Score sc
    cdef double* swap
    if k.s.kappa > 0.0:
        c = row_clip(x, d, norm, augmented_squared, k.s.kappa * k.row_scale)
        if c.clipped:
            k.clipped += 1
            for j in range(d):
                k.row[j] = x[j] / c.magnitude * c.factor
            seen = k.row
    for j in range(d):
        z += seen[j] * k.theta[j]
    z = z + k.theta[d] * c.intercept
    if c.clipped:  # the raw row's score, from the bounded row (no overflow)
        z = unclipped_score(z, c.intercept)
    sc = score(z, y)
    r = sc.residual * weight
    if c.clipped:  # the influence weight beyond c (.row_scale)
        r = r * influence_factor(c.intercept, 3.0)  # GRADIENT_RATIO
    eta = learning_rate(&k.s, k.n_updates)
    k.last_eta = eta
    if not _propose(k, seen, r, c.intercept, eta):
        k.skipped += 1
        loss[0] = 0.0
        return False
    swap = k.theta
    k.theta = k.new_theta
    k.new_theta = swap
    if k.s.adagrad:
        swap = k.accum
        k.accum = k.new_accum
        k.new_accum = swap
    k.applied += 1
    k.missed += sc.missed
    loss[0] = sc.loss
    k.n_updates += 1.0
    schedule_and_scale(&k.row_scale, &k.s, &c)
    if k.s.statistics and isfinite(r * r * c.squared):
        _statistics(k, seen, r, c.intercept, r * r * c.squared)
    return True


cdef inline const double* _cptr(const double[::1] a) noexcept nogil:
    return NULL if a.shape[0] == 0 else &a[0]


cdef inline double* _ptr(double[::1] a) noexcept nogil:
    return NULL if a.shape[0] == 0 else &a[0]


cdef int _open(Dense* k, double[::1] theta, double[::1] accum, double[::1] mean,
               const double[::1] settings, double[::1] stats, double[::1] scalars) except -1:
    """Fill ``k`` from the arrays of the Python side (scratch space allocated here)."""
    if settings.shape[0] != N_SETTINGS_SLOTS or stats.shape[0] != N_STATS_SLOTS:
        raise ValueError("settings or statistics vector of the wrong length")
    load_settings(&k.s, &settings[0])
    load_stats(&k.st, &stats[0])
    k.d = theta.shape[0] - 1
    if mean.shape[0] != k.d + 1 or (k.s.adagrad and accum.shape[0] != k.d + 1):
        raise ValueError("state arrays of the wrong length")
    k.theta, k.accum, k.mean = &theta[0], _ptr(accum), &mean[0]
    k.n_updates, k.row_scale, k.last_eta = scalars[0], scalars[1], scalars[2]
    k.applied = k.skipped = k.missed = k.clipped = 0
    k.new_theta = <double*>calloc(k.d + 1, sizeof(double))
    k.new_accum = <double*>calloc(k.d + 1, sizeof(double))
    k.row = <double*>calloc(k.d + 1, sizeof(double))
    if k.new_theta == NULL or k.new_accum == NULL or k.row == NULL:
        free(k.new_theta)
        free(k.new_accum)
        free(k.row)
        raise MemoryError()
    return 0


cdef tuple _close(Dense* k, double[::1] theta, double[::1] accum, double[::1] stats,
                  double[::1] scalars):
    """Copy θ and G back where the last step left them in scratch; free the scratch."""
    cdef Py_ssize_t j
    if k.theta != &theta[0]:
        for j in range(k.d + 1):
            theta[j] = k.theta[j]
        k.new_theta = k.theta
    if k.s.adagrad and k.accum != &accum[0]:
        for j in range(k.d + 1):
            accum[j] = k.accum[j]
        k.new_accum = k.accum
    free(k.new_theta)
    free(k.new_accum)
    free(k.row)
    store_stats(&k.st, &stats[0])
    scalars[0], scalars[1], scalars[2] = k.n_updates, k.row_scale, k.last_eta
    return (k.applied, k.skipped, k.missed, k.clipped)


def run_dense(const double[:, ::1] X, const double[::1] y, const double[::1] weights,
              const double[::1] norms, const double[::1] squared, double[::1] theta,
              double[::1] accum, double[::1] mean, const double[::1] settings,
              double[::1] stats, double[::1] scalars, double[::1] losses):
    """n consecutive m = 1 steps on the rows of X (n, d), in place.

    ``weights`` (n,) or empty (all 1); ``norms`` ‖[x_t ; 1]‖ (n,) when κ > 0, else empty;
    ``squared`` ‖x_t‖² + 1 (n,) when κ > 0 or with statistics, else empty; θ (d + 1,),
    AdaGrad's G (d + 1,) or empty, M (d + 1,); ``settings``, ``stats``: the vectors of
    :mod:`._online_math` and :mod:`._online_stats`; ``scalars``: [n_updates, s, last η];
    ``losses`` (n,) receives ℓ_t (0 for a skipped step). Returns (applied, skipped,
    misclassified, clipped).
    """
    cdef Dense k
    cdef Py_ssize_t i, n = X.shape[0]
    cdef const double* w = _cptr(weights)
    cdef const double* nm = _cptr(norms)
    cdef const double* sq = _cptr(squared)
    _open(&k, theta, accum, mean, settings, stats, scalars)
    if X.shape[1] != k.d:
        _close(&k, theta, accum, stats, scalars)
        raise ValueError("X has the wrong number of columns")
    with nogil:
        for i in range(n):
            dense_step(&k, &X[i, 0] if k.d else NULL, y[i], 1.0 if w == NULL else w[i],
                       0.0 if nm == NULL else nm[i], 0.0 if sq == NULL else sq[i], &losses[i])
    return _close(&k, theta, accum, stats, scalars)


cdef void _release(double* dense, double* xs, long long* cols, Table* table) noexcept:
    free(dense)
    free(xs)
    free(cols)
    table_close(table)


def run_scattered(const long long[::1] indptr, const long long[::1] indices,
                  const double[::1] values, const double[::1] y, const double[::1] weights,
                  double[::1] theta, double[::1] accum, double[::1] mean,
                  const double[::1] settings, double[::1] stats, double[::1] scalars,
                  double[::1] losses):
    """:func:`run_dense` on CSR rows, each read (repeated columns added up, ‖x‖², the
    norm: :mod:`._online_rows`) and scattered into a dense row: the O(d) step of the
    configurations the lazy sparse loop cannot take."""
    cdef Dense k
    cdef Table table
    cdef Py_ssize_t i, e, nnz, lo, n = y.shape[0], longest = longest_row(indptr)
    cdef const double* w = _cptr(weights)
    cdef double squared
    cdef double* dense
    cdef double* xs
    cdef long long* cols
    _open(&k, theta, accum, mean, settings, stats, scalars)
    table_open(&table, longest)
    dense = <double*>calloc(k.d + 1, sizeof(double))
    xs = <double*>calloc(longest, sizeof(double))
    cols = <long long*>calloc(longest, sizeof(long long))
    if dense == NULL or xs == NULL or cols == NULL:
        _release(dense, xs, cols, &table)
        _close(&k, theta, accum, stats, scalars)
        raise MemoryError()
    with nogil:
        for i in range(n):
            lo = indptr[i]
            nnz = read_row(&table, &indices[lo] if indptr[i + 1] > lo else NULL,
                           &values[lo] if indptr[i + 1] > lo else NULL, indptr[i + 1] - lo,
                           cols, xs, &squared)
            for e in range(nnz):
                dense[cols[e]] = xs[e]
            dense_step(&k, dense, y[i], 1.0 if w == NULL else w[i],
                       augmented_norm(xs, nnz, squared + 1.0), squared + 1.0, &losses[i])
            for e in range(nnz):
                dense[cols[e]] = 0.0
    _release(dense, xs, cols, &table)
    return _close(&k, theta, accum, stats, scalars)
