# cython: language_level=3
"""The compiled m = 1 loop on sparse rows, O(nnz) per step whatever d.

The same steps as :mod:`._online_dense` (one ``learn_batch`` per sample), with the work of
the coordinates a row does not touch deferred (lazy L2 scale, cumulative L1, M = μ m and
running sums: :mod:`._online_lazy`). AdaGrad moves G_j at the touched coordinates only
(without L2 the others have a zero gradient; AdaGrad with L2 runs the scattered dense loop).
"""

from libc.math cimport INFINITY, isfinite, isnan, sqrt
from libc.stdlib cimport calloc, free

from ._online_math cimport (
    Clip, N_SETTINGS_SLOTS, Score, Settings, learning_rate, load_settings, no_clip, row_clip,
    schedule_and_scale, score, soft_threshold,
)
from ._online_lazy cimport Lazy, canonical, pending, resync
from ._online_rows cimport augmented_norm, longest_row, read_row, table_close, table_open
from ._rows cimport influence_factor, unclipped_score
from ._online_stats cimport (
    N_STATS_SLOTS, Stats, across_step, count_step, fold_norms, load_stats,
    next_weight_square_sum, store_stats,
)

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define STREAMSGD_PREFETCH(p) __builtin_prefetch(p)
    #define STREAMSGD_ALWAYS_INLINE static inline __attribute__((always_inline))
    #else
    #define STREAMSGD_PREFETCH(p) ((void)0)
    #define STREAMSGD_ALWAYS_INLINE static inline
    #endif
    /* Cache hints (no effect on any value). Always inlined: GCC judges a function that
       only prefetches free of side effects and deletes its calls (a Cython cdef function
       doing this compiled to nothing). The n bytes from start, a 64-byte line at a time: */
    STREAMSGD_ALWAYS_INLINE void streamsgd_prefetch_bytes(const void* start, Py_ssize_t n) {
        const char* p = (const char*)start;
        Py_ssize_t offset;
        for (offset = 0; offset < n; offset += 64) STREAMSGD_PREFETCH(p + offset);
    }
    /* a[j], b[j], c[j], d[j] for the n columns j of idx (NULL arrays skipped): */
    STREAMSGD_ALWAYS_INLINE void streamsgd_prefetch_columns(
            const long long* idx, Py_ssize_t n, const double* a, const double* b,
            const double* c, const double* d) {
        Py_ssize_t e;
        for (e = 0; e < n; e++) {
            long long j = idx[e];
            STREAMSGD_PREFETCH(a + j);
            if (b) STREAMSGD_PREFETCH(b + j);
            if (c) STREAMSGD_PREFETCH(c + j);
            if (d) STREAMSGD_PREFETCH(d + j);
        }
    }
    """
    void prefetch_bytes "streamsgd_prefetch_bytes"(const void* start, Py_ssize_t n) noexcept nogil
    void prefetch_columns "streamsgd_prefetch_columns"(
        const long long* idx, Py_ssize_t n, const double* a, const double* b,
        const double* c, const double* d) noexcept nogil

cdef Py_ssize_t AHEAD = 4      # the input row read this many rows ahead of the step
cdef double TINY = 1e-100      # σ and μ are folded back below this
cdef double RESYNC_STEPS = 65536.0


cdef bint _propose(Lazy* k, const long long* idx, Py_ssize_t nnz, double r, double gb,
                   double eta, double* nb, double* nacc_b, double* sigma_new) noexcept nogil:
    """New v (nv), G (nacc) at the row's columns and the new intercept; False if the step
    would make θ non-finite. The arithmetic of step.propose_step in w units."""
    cdef Py_ssize_t e, j
    cdef double g, w, direction, value, acc, size, inverse
    cdef bint finite = True
    cdef const Settings* s = &k.s
    # Locals, as in _commit: the same operations in the same order.
    cdef const double* xs = k.xs
    cdef const double* v = k.v
    cdef const double* accum = k.accum
    cdef double* nv = k.nv
    cdef double* nacc = k.nacc
    cdef double epsilon = s.epsilon, l1 = s.l1, l2 = s.l2, sigma = k.sigma
    if s.adagrad:  # σ = 1 (no L2 with AdaGrad here)
        sigma_new[0] = 1.0
        for e in range(nnz):
            j = idx[e]
            g = r * xs[e]
            acc = accum[j] + g * g
            size = eta / (sqrt(acc) + epsilon)
            value = v[j] - size * g
            if l1 != 0.0:
                value = soft_threshold(value, size * l1)
            nacc[e] = acc
            nv[e] = value
            finite = finite and isfinite(value)
        nacc_b[0] = accum[k.d] + gb * gb
        nb[0] = k.b - eta / (sqrt(nacc_b[0]) + epsilon) * gb
        return finite and isfinite(nb[0])
    sigma_new[0] = k.sigma * (1.0 - eta * s.l2) if s.l2 != 0.0 else k.sigma
    inverse = 1.0 / sigma_new[0]  # (1 without L2: exact)
    for e in range(nnz):
        j = idx[e]
        w = sigma * v[j]
        g = r * xs[e]
        direction = g + l2 * w if l2 != 0.0 else g
        value = w - eta * direction
        if l1 != 0.0:
            value = soft_threshold(value, eta * l1)
        finite = finite and isfinite(value)
        nv[e] = value * inverse
    nb[0] = k.b - eta * gb
    return finite and isfinite(nb[0]) and sigma_new[0] > 0.0


cdef void _commit(Lazy* k, const long long* idx, Py_ssize_t nnz, double eta, double nb,
                  double nacc_b, double sigma_new) noexcept nogil:
    """Adopt the proposal: v, G, the running P and V, and U.

    The arrays and the running sums are read into locals first: a store through a double*
    may alias a field of *k (the build has no strict aliasing), so the loop would reload
    each pointer and carry each sum through memory every entry. The same operations in
    the same order: the same bits."""
    cdef Py_ssize_t e, j
    cdef double old, value
    cdef double* v = k.v
    cdef double* accum = k.accum
    cdef double* last = k.last
    cdef const double* mvec = k.mvec
    cdef const double* nv = k.nv
    cdef const double* nacc = k.nacc
    cdef double cross = k.cross, weight_norm = k.weight_norm, total
    cdef bint track_weights = k.track_weights
    if k.s.l1 != 0.0:
        k.total += eta if k.s.adagrad else eta * k.s.l1 / sigma_new
    total = k.total
    for e in range(nnz):
        j = idx[e]
        old = v[j]
        value = nv[e]
        v[j] = value
        if track_weights:
            cross += mvec[j] * (value - old)
            weight_norm += value * value - old * old
        if accum != NULL:
            accum[j] = nacc[e]
        if last != NULL:
            last[j] = total  # this step's threshold is applied already
    k.cross, k.weight_norm = cross, weight_norm
    if accum != NULL:
        accum[k.d] = nacc_b
    k.b = nb
    k.sigma = sigma_new
    if k.sigma < TINY:
        canonical(k, True)


cdef void _statistics(Lazy* k, const long long* idx, Py_ssize_t nnz, double r, double gb,
                      double squared_norm) noexcept nogil:
    """RunningGradientStatistics.update for this applied step, O(nnz)."""
    cdef Py_ssize_t e, j
    cdef Stats* st = &k.st
    cdef double a = st.window_smoothing
    cdef double g, old, new, mean_squared, shifted_squared, l2 = k.s.l2, step
    cdef double gradient_squared = gb * gb
    cdef bint update = k.track_mean and st.has_mean, track_weights = k.track_weights
    # Locals for the loop, as in _commit (the same operations in the same order).
    cdef double* mvec = k.mvec
    cdef const double* v = k.v
    cdef const double* xs = k.xs
    cdef double mean_norm, cross = k.cross
    if update:
        k.mu = (1.0 - a) * k.mu  # M ← (1 − α) M + α g, as m ← m + (α / μ) g
        step = a / k.mu
        old = mvec[k.d]
        new = old + step * gb
        mvec[k.d] = new
        k.mean_norm += new * new - old * old
    mean_norm = k.mean_norm
    for e in range(nnz):  # ‖g‖² and, once M is defined, its update: one pass
        g = r * xs[e]
        gradient_squared += g * g
        if update:
            j = idx[e]
            old = mvec[j]
            new = old + step * g
            mvec[j] = new
            mean_norm += new * new - old * old
            if track_weights:
                cross += (new - old) * v[j]
    k.mean_norm, k.cross = mean_norm, cross
    fold_norms(st, squared_norm, gradient_squared)
    if k.track_mean:
        if not st.has_mean:  # M = g_t: m is all zeros, μ = 1
            for e in range(nnz):
                k.mvec[idx[e]] = r * k.xs[e]
            k.mvec[k.d] = gb
            st.has_mean = True
            resync(k)
        elif k.mu < TINY:
            canonical(k, True)
        st.weight_square_sum = next_weight_square_sum(st.weight_square_sum, a)
    mean_squared = k.mu * (k.mu * k.mean_norm)
    if k.track_mean:
        shifted_squared = mean_squared
        if k.track_weights:
            shifted_squared = (mean_squared + 2.0 * l2 * k.mu * k.sigma * k.cross
                               + l2 * l2 * k.sigma * k.sigma * k.weight_norm)
            if isnan(shifted_squared) and not isnan(mean_squared):
                # The expansion overflowed (∞ − ∞ after a hostile row): ‖M + ρ‖² is a sum of
                # squares with an overflowing part, +∞, as the direct sum gives it.
                shifted_squared = INFINITY
        across_step(st, mean_squared, shifted_squared)
    count_step(st, mean_squared)
    k.since_resync += 1.0
    if k.since_resync >= RESYNC_STEPS:
        resync(k)


cdef void lazy_step(Lazy* k, const long long* indices, const double* values, Py_ssize_t n,
                    double y, double weight, double* loss) noexcept nogil:
    """One m = 1 step on the sparse row (indices, values) of n entries."""
    cdef Py_ssize_t e, j, nnz
    cdef double squared, dot = 0.0, z, r, gb, eta, nb = 0.0, nacc_b = 0.0, sigma_new = 1.0
    cdef const long long* idx = k.cols
    cdef Score sc
    cdef Clip c
    nnz = read_row(&k.table, indices, values, n, k.cols, k.xs, &squared)
    # The step reads w, G, U and M at these columns: start all their cache misses at once
    # (a hint: no effect on any value).
    prefetch_columns(idx, nnz, k.v, k.last, k.accum, k.mvec if k.track_mean else NULL)
    c = no_clip(0.0, squared + 1.0)
    if k.s.kappa > 0.0:
        c = row_clip(k.xs, nnz, augmented_norm(k.xs, nnz, squared + 1.0), squared + 1.0,
                     k.s.kappa * k.row_scale)
    if c.clipped:
        k.clipped += 1
        for e in range(nnz):
            k.xs[e] = k.xs[e] / c.magnitude * c.factor
    if k.last != NULL:  # the prox the row's coordinates missed
        for e in range(nnz):
            j = idx[e]
            k.v[j] = soft_threshold(k.v[j], pending(k, j))
            k.last[j] = k.total
    for e in range(nnz):
        dot += k.xs[e] * k.v[idx[e]]
    z = k.sigma * dot + k.b * c.intercept
    if c.clipped:  # the raw row's score, from the bounded row (gradient weighting)
        z = unclipped_score(z, c.intercept)
    sc = score(z, y)
    r = sc.residual * weight
    if c.clipped:  # the influence weight beyond c (.row_scale)
        r = r * influence_factor(c.intercept, 3.0)  # GRADIENT_RATIO
    gb = r * c.intercept
    eta = learning_rate(&k.s, k.n_updates)
    k.last_eta = eta
    if not _propose(k, idx, nnz, r, gb, eta, &nb, &nacc_b, &sigma_new):
        k.skipped += 1
        loss[0] = 0.0
        return
    _commit(k, idx, nnz, eta, nb, nacc_b, sigma_new)
    k.applied += 1
    k.missed += sc.missed
    loss[0] = sc.loss
    k.n_updates += 1.0
    schedule_and_scale(&k.row_scale, &k.s, &c)
    if k.s.statistics and isfinite(r * r * c.squared):
        _statistics(k, idx, nnz, r, gb, r * r * c.squared)


cdef enum:
    # Slots of the float64 vector that carries the deferred state from one call to the
    # next (the model holds it between calls: :mod:`.deferred`).
    N_CARRY_SLOTS = 9

CARRY_SLOTS = N_CARRY_SLOTS
cdef double FOLD_STEPS = 65536.0   # the state is made canonical every this many samples


cdef void _load_carry(Lazy* k, const double* carry) noexcept nogil:
    """The deferred state a previous call left (slot 0 = 1), or a canonical start."""
    if carry[0] == 0.0:
        k.sigma, k.mu, k.total, k.since_fold = 1.0, 1.0, 0.0, 0.0
        resync(k)
        return
    k.sigma, k.mu, k.total = carry[1], carry[2], carry[3]
    k.mean_norm, k.cross, k.weight_norm = carry[4], carry[5], carry[6]
    k.since_resync, k.since_fold = carry[7], carry[8]


cdef void _store_carry(const Lazy* k, double* carry) noexcept nogil:
    carry[0] = 1.0
    carry[1], carry[2], carry[3] = k.sigma, k.mu, k.total
    carry[4], carry[5], carry[6] = k.mean_norm, k.cross, k.weight_norm
    carry[7], carry[8] = k.since_resync, k.since_fold


cdef int _open(Lazy* k, const long long[::1] indptr, double[::1] theta, double[::1] accum,
               double[::1] mean, const double[::1] settings, double[::1] stats,
               double[::1] scalars, const double[::1] carry, double[::1] last) except -1:
    cdef Py_ssize_t longest = longest_row(indptr)
    if settings.shape[0] != N_SETTINGS_SLOTS or stats.shape[0] != N_STATS_SLOTS:
        raise ValueError("settings or statistics vector of the wrong length")
    if carry.shape[0] != N_CARRY_SLOTS:
        raise ValueError("carry vector of the wrong length")
    load_settings(&k.s, &settings[0])
    load_stats(&k.st, &stats[0])
    k.d = theta.shape[0] - 1
    if mean.shape[0] != k.d + 1 or (k.s.adagrad and accum.shape[0] != k.d + 1):
        raise ValueError("state arrays of the wrong length")
    if k.s.l1 != 0.0 and last.shape[0] != k.d:
        raise ValueError("L1: the last-update array must have n_features entries")
    if k.s.adagrad and k.s.l2 != 0.0:
        raise ValueError("AdaGrad with L2 moves every coordinate: use run_scattered")
    k.track_mean = k.s.statistics and not k.st.within_batch_seen
    k.track_weights = k.track_mean and k.s.l2 != 0.0
    if k.track_weights and k.s.l1 != 0.0:
        raise ValueError("L1 with L2 and across-step statistics: use run_scattered")
    k.v, k.b = &theta[0], theta[k.d]
    k.accum = &accum[0] if k.s.adagrad else NULL
    k.last = &last[0] if k.s.l1 != 0.0 else NULL
    k.mvec = &mean[0]
    k.n_updates, k.row_scale, k.last_eta = scalars[0], scalars[1], scalars[2]
    k.applied = k.skipped = k.missed = k.clipped = 0
    table_open(&k.table, longest)
    k.cols = <long long*>calloc(longest, sizeof(long long))
    k.xs = <double*>calloc(longest, sizeof(double))
    k.nv = <double*>calloc(longest, sizeof(double))
    k.nacc = <double*>calloc(longest, sizeof(double))
    if k.cols == NULL or k.xs == NULL or k.nv == NULL or k.nacc == NULL:
        _free(k)
        raise MemoryError()
    _load_carry(k, &carry[0])
    return 0


cdef void _free(Lazy* k) noexcept:
    table_close(&k.table)
    free(k.cols)
    free(k.xs)
    free(k.nv)
    free(k.nacc)


cdef tuple _close(Lazy* k, double[::1] theta, double[::1] stats, double[::1] scalars,
                  double[::1] carry):
    """Hand back θ = [v ; b] and m with the deferred state in ``carry`` (no O(d) fold);
    free scratch."""
    theta[k.d] = k.b
    _free(k)
    store_stats(&k.st, &stats[0])
    _store_carry(k, &carry[0])
    scalars[0], scalars[1], scalars[2] = k.n_updates, k.row_scale, k.last_eta
    return (k.applied, k.skipped, k.missed, k.clipped)


def fold(double[::1] theta, double[::1] accum, double[::1] mean,
         const double[::1] settings, double[::1] carry, double[::1] last):
    """Apply the deferred work of ``carry`` in place, O(d): θ ← [w ; b] with w = σ v after
    the L1 prox each coordinate missed, M ← μ m (``mean`` of shape (d + 1,), or empty to
    leave M alone), ``last`` ← 0, and ``carry`` to the canonical start (slot 0 = 0). The
    same bits as the fold a loop does itself (``_online_lazy.canonical``)."""
    cdef Lazy k
    if settings.shape[0] != N_SETTINGS_SLOTS or carry.shape[0] != N_CARRY_SLOTS:
        raise ValueError("settings or carry vector of the wrong length")
    load_settings(&k.s, &settings[0])
    k.d = theta.shape[0] - 1
    if k.s.l1 != 0.0 and last.shape[0] != k.d:
        raise ValueError("L1: the last-update array must have n_features entries")
    if k.s.l1 != 0.0 and k.s.adagrad and accum.shape[0] != k.d + 1:
        raise ValueError("AdaGrad: accumulators of the wrong length")
    k.v = &theta[0]
    k.accum = &accum[0] if (k.s.adagrad and k.s.l1 != 0.0) else NULL
    k.last = &last[0] if k.s.l1 != 0.0 else NULL
    k.track_mean = k.st.has_mean = mean.shape[0] == k.d + 1
    k.track_weights = False
    k.mvec = &mean[0] if k.track_mean else NULL
    if carry[0] != 0.0:
        k.sigma, k.mu, k.total = carry[1], carry[2], carry[3]
        with nogil:
            canonical(&k, False)
    carry[:] = 0.0


def run_sparse(const long long[::1] indptr, const long long[::1] indices,
               const double[::1] values, const double[::1] y, const double[::1] weights,
               double[::1] theta, double[::1] accum, double[::1] mean,
               const double[::1] settings, double[::1] stats, double[::1] scalars,
               double[::1] losses, double[::1] carry, double[::1] last):
    """n consecutive m = 1 steps on CSR rows, O(nnz) each.

    The arguments are those of :func:`._online_dense.run_scattered` (θ, G, M updated in
    place; returns (applied, skipped, misclassified, clipped)); refused (ValueError) for
    AdaGrad with L2 and for L1 with L2 under across-step statistics (module docstring).
    ``carry`` (shape (9,)) and ``last`` (U at each coordinate's last update, shape (d,) with
    L1, else empty) hold the deferred state between calls: θ[:d] and M come back as v and
    m, to be read through :func:`fold`. The state is made canonical only when σ or μ is
    tiny and every 65,536 samples since the last fold (counted in ``carry``), so the result
    is the same bits however the stream is cut into calls.
    """
    cdef Lazy k
    cdef Py_ssize_t i, lo, ahead, nnz_ahead, n = y.shape[0]
    cdef const double* w = NULL if weights.shape[0] == 0 else &weights[0]
    _open(&k, indptr, theta, accum, mean, settings, stats, scalars, carry, last)
    with nogil:
        for i in range(n):
            lo = indptr[i]
            if i + AHEAD < n:  # the input rows AHEAD on (a hint: no effect on any value)
                ahead, nnz_ahead = indptr[i + AHEAD], indptr[i + AHEAD + 1] - indptr[i + AHEAD]
                if nnz_ahead > 0:
                    prefetch_bytes(&indices[ahead], nnz_ahead * sizeof(long long))
                    prefetch_bytes(&values[ahead], nnz_ahead * sizeof(double))
            lazy_step(&k, &indices[lo] if indptr[i + 1] > lo else NULL,
                      &values[lo] if indptr[i + 1] > lo else NULL, indptr[i + 1] - lo, y[i],
                      1.0 if w == NULL else w[i], &losses[i])
            k.since_fold += 1.0
            if k.since_fold >= FOLD_STEPS:
                canonical(&k, True)
    return _close(&k, theta, stats, scalars, carry)
