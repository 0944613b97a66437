# cython: language_level=3
"""Many minibatch steps of a fixed size m in one compiled call (:mod:`.multi_step`).

For each of the n consecutive batches of m rows, in order, exactly what one call of
:meth:`.model.OnlineLogisticRegression.learn_batch` does for a model without a controller
or standardisation::

    the batch's sums          _batch_dense.batch_loop / _batch_sparse.batch_loop
    η_t = schedule(t)         (constant, or η₀ / (1 + decay·t)^power)
    ‖ḡ + ρ‖² (with L2)        at θ before the step, its squares added in order
    the step                  _step.step_loop (θ and G in place at a sparse batch's columns)
    A ← γ^m A + ḡ², n ← γ^m n + m,  t ← t + 1       (.optimizer.Optimizer.adopt)
    s ← s · exp(γ_s min(m, 16) (#above/m − ½))      (.row_scale.next_scale)
    the noise statistics      _noise_update.fold_noise (window rule, drift test, restart)

with the same compiled loops and the same scalar formulas (libm's exp and pow, as Python's
``math.exp`` and ``**``), so the weights and every statistic are the same bits as n calls
of ``learn_batch``. A step that would make θ non-finite is skipped as there (nothing
changes; its samples are reported skipped). Without the per-step Python (≈ 120 µs a step
of sums objects, proposals and statistics methods) an m = 32 step costs its arithmetic.
"""

cimport numpy as cnp
from libc.math cimport exp, isfinite, pow, NAN
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from ._arrays cimport doubles, int64s
from ._batch_dense cimport Batch as DenseBatch, Sums as DenseSums, batch_loop as dense_loop
from ._batch_sparse cimport Batch as SparseBatch, Sums as SparseSums, batch_loop as sparse_loop
from ._noise_update cimport Noise, fold_noise, load_noise, store_noise
from ._rows cimport dot
from ._step cimport Step, step_loop

import numpy as np

cnp.import_array()

# .row_scale's constants (tests/unit/core/test_multi_step.py checks they agree).
cdef double SCALE_SMOOTHING = 0.05
cdef Py_ssize_t SCALE_BATCH_CAP = 16
# .step.SPARSE_STEP_MAX_DENSITY
cdef double SPARSE_STEP_MAX_DENSITY = 0.125

CONSTANTS = {
    "SCALE_SMOOTHING": SCALE_SMOOTHING,
    "SCALE_BATCH_CAP": SCALE_BATCH_CAP,
    "SPARSE_STEP_MAX_DENSITY": SPARSE_STEP_MAX_DENSITY,
}

# The per-step records: N_FLOATS floats (Σℓ_i, η, Σ‖g_i‖², ‖Σ g_i‖², Σ s_i‖v_i‖²) and
# N_COUNTS counts (misclassified, clipped, skipped, #{‖v_i‖ > s}) per step.
cdef enum:
    N_FLOATS = 5
    N_COUNTS = 4


cdef struct Run:
    # settings
    Py_ssize_t m
    Py_ssize_t d
    double eta0
    bint inverse_scaling
    double decay
    double power
    bint mean             # reduction "mean" (else "sum")
    double l1
    double l2
    double epsilon
    double forget         # γ per sample (1: never forget)
    double kappa          # κ of the row clip (0: off)
    bint statistics
    bint columns_allowed  # a sparse batch may keep its gradient at its columns (no L1, L2)
    # state
    double* theta
    double* accumulator   # NULL: plain SGD
    double accumulated_samples
    double row_scale
    Py_ssize_t n_updates
    Py_ssize_t n_samples_seen
    Noise noise
    # the rows
    const double* X       # dense rows, or NULL
    const int64_t* indptr
    const int64_t* indices
    const double* values
    const double* y
    const double* weights # NULL: all 1
    # scratch
    int64_t* column_workspace
    int64_t* row_workspace
    int64_t* batch_indptr   # (m + 1)
    int64_t* row_columns    # (nnz of the largest batch)
    double* row_cells
    int64_t* slots          # 3 × (nnz of the largest batch)
    int64_t* columns
    double* gradient        # max(d, nnz) + 1
    double* gathered_theta  # nnz + 1
    double* gathered_accumulator
    double* values_out      # max(d, nnz) + 1
    double* accumulated_out
    double* scaled          # 4 d (dense clipping)
    # per-step records
    double* step_floats     # (n, N_FLOATS)
    int64_t* step_counts    # (n, N_COUNTS)
    Py_ssize_t last_columns # k of the last step (−1: the gradient over all d columns)


cdef inline double learning_rate(const Run* r) noexcept nogil:
    """schedules.LearningRateSchedule.__call__(t)."""
    if not r.inverse_scaling:
        return r.eta0
    return r.eta0 / pow(1.0 + r.decay * <double>r.n_updates, r.power)


cdef inline double next_scale(double scale, Py_ssize_t above, Py_ssize_t m) noexcept nogil:
    """row_scale.next_scale."""
    cdef double rate = SCALE_SMOOTHING * <double>(m if m < SCALE_BATCH_CAP else SCALE_BATCH_CAP)
    return scale * exp(rate * (<double>above / <double>m - 0.5))


cdef double squared_norm(const double* v, Py_ssize_t n) noexcept nogil:
    """‖v‖², its entries in order (as _batch_sparse.squared_norm)."""
    cdef Py_ssize_t j
    cdef double total = 0.0
    for j in range(n):
        total += v[j] * v[j]
    return total


cdef Py_ssize_t sparse_sums(Run* r, Py_ssize_t t, SparseSums* s) noexcept nogil:
    """_batch_sparse.sparse_batch_sums of batch t (.step._sparse_sums); returns k, the
    number of columns in column mode, or −1 (the gradient over all d columns)."""
    cdef SparseBatch b
    cdef Py_ssize_t i, m = r.m, first = t * m, width
    cdef int64_t lo = r.indptr[first], nnz = r.indptr[first + m] - lo
    cdef bint column_mode = r.columns_allowed and m >= 2 and SPARSE_STEP_MAX_DENSITY * r.d > nnz
    for i in range(m + 1):
        r.batch_indptr[i] = r.indptr[first + i] - lo
    b.indptr, b.indices, b.values = r.batch_indptr, r.indices + lo, r.values + lo
    b.m, b.d = m, r.d
    b.y = r.y + first
    b.weights = NULL if r.weights == NULL else r.weights + first
    b.theta = r.theta
    b.u, b.u_factor = NULL, 1.0
    b.cap = r.kappa * r.row_scale if r.kappa > 0.0 else 0.0
    b.row_scale = r.row_scale
    b.norms = r.statistics or b.cap > 0.0
    b.statistics = r.statistics
    b.positions = r.column_workspace if column_mode else NULL
    b.row_positions = r.row_workspace
    b.row_columns, b.row_cells = r.row_columns, r.row_cells
    b.entry_slots = b.slot_rows = b.slot_cells = NULL
    if column_mode:  # entry slots; slot rows (all −1), slot cells
        b.entry_slots, b.slot_rows, b.slot_cells = r.slots, r.slots + nnz, r.slots + 2 * nnz
        for i in range(nnz):
            b.slot_rows[i] = -1
    width = nnz if column_mode else r.d
    memset(r.gradient, 0, (width + 1) * sizeof(double))
    memset(s, 0, sizeof(SparseSums))
    s.gradient = r.gradient
    s.curvature = NULL
    s.columns = r.columns if column_mode else NULL
    sparse_loop(&b, s)
    width = s.n_columns if column_mode else r.d  # the intercept's slot
    r.gradient[width] = s.gradient_intercept
    return s.n_columns if column_mode else -1


cdef void dense_sums(Run* r, Py_ssize_t t, DenseSums* s) noexcept nogil:
    """_batch_dense.dense_batch_sums of batch t (no standardisation, no curvature)."""
    cdef DenseBatch b
    cdef Py_ssize_t m = r.m, d = r.d
    b.X = r.X + t * m * d
    b.m, b.d = m, d
    b.y = r.y + t * m
    b.weights = NULL if r.weights == NULL else r.weights + t * m
    b.theta = r.theta
    b.u = NULL
    b.cap = r.kappa * r.row_scale if r.kappa > 0.0 else 0.0
    b.row_scale = r.row_scale
    b.norms = r.statistics or b.cap > 0.0
    b.statistics = r.statistics
    b.mean = b.inverse_scale = b.scale = NULL
    b.unscaled = NULL
    b.n_unscaled = 0
    b.moment_cap = 0.0
    b.gradient_ratio = 3.0  # row_scale.GRADIENT_RATIO (no standardiser here)
    memset(r.gradient, 0, (d + 1) * sizeof(double))
    memset(s, 0, sizeof(DenseSums))
    s.gradient = r.gradient
    s.curvature = NULL
    s.scaled = r.scaled if b.cap > 0.0 else NULL
    dense_loop(&b, s)


cdef bint step(Run* r, Py_ssize_t k, double eta, double decay) noexcept nogil:
    """The step on r.gradient (at the k columns r.columns and the intercept, or over all
    d + 1 entries when k < 0), adopted in place when finite; whether it was."""
    cdef Step p
    cdef Py_ssize_t j, d = r.d
    cdef bint finite
    p.n = d + 1 if k < 0 else k + 1
    if k < 0:
        p.theta, p.accumulator = r.theta, r.accumulator
    else:  # θ and G at the columns and the intercept
        for j in range(k):
            r.gathered_theta[j] = r.theta[r.columns[j]]
        r.gathered_theta[k] = r.theta[d]
        p.theta, p.accumulator = r.gathered_theta, NULL
        if r.accumulator != NULL:
            for j in range(k):
                r.gathered_accumulator[j] = r.accumulator[r.columns[j]]
            r.gathered_accumulator[k] = r.accumulator[d]
            p.accumulator = r.gathered_accumulator
    p.direction = r.gradient
    p.divisor = <double>r.m if r.mean else 1.0
    p.eta = eta
    p.l1 = r.l1 * (1.0 if r.mean else <double>r.m)
    p.l2 = r.l2 * (1.0 if r.mean else <double>r.m)
    p.epsilon, p.forget = r.epsilon, decay
    p.values = r.values_out
    p.accumulated = NULL if r.accumulator == NULL else r.accumulated_out
    finite = step_loop(&p)
    if not finite:
        return False
    # Optimizer.adopt
    r.accumulated_samples = r.accumulated_samples * decay + <double>r.m
    if k < 0:
        memcpy(r.theta, r.values_out, (d + 1) * sizeof(double))
        if r.accumulator != NULL:
            memcpy(r.accumulator, r.accumulated_out, (d + 1) * sizeof(double))
        return True
    for j in range(k):
        r.theta[r.columns[j]] = r.values_out[j]
    r.theta[d] = r.values_out[k]
    if r.accumulator != NULL:
        if decay != 1.0:  # the other columns' A decay too
            for j in range(d + 1):
                r.accumulator[j] *= decay
        for j in range(k):
            r.accumulator[r.columns[j]] = r.accumulated_out[j]
        r.accumulator[d] = r.accumulated_out[k]
    return True


cdef double objective(const Run* r) noexcept nogil:
    """‖ḡ + ρ‖² with ρ = λ₂ [w ; 0] at θ before the step (:meth:`BatchSums.objective_gradient_squared_norm`:
    the same elements, added in order as :func:`._vector.sum_of_squares`)."""
    cdef Py_ssize_t j, d = r.d
    cdef double g, total = 0.0
    for j in range(d + 1):
        g = r.gradient[j] / <double>r.m + (r.l2 * r.theta[j] if j < d else 0.0)
        total += g * g
    return total


cdef void run_steps(Run* r, Py_ssize_t n_steps) noexcept nogil:
    cdef Py_ssize_t t, k, m = r.m
    cdef DenseSums ds
    cdef SparseSums ss
    cdef double loss, squares, g2, eta, decay, rows, target
    cdef Py_ssize_t misclassified, clipped, above
    cdef double* floats
    cdef int64_t* counts
    for t in range(n_steps):
        if r.X != NULL:
            dense_sums(r, t, &ds)
            k = -1
            g2 = dot(r.gradient, r.gradient, r.d + 1)
            loss, squares, above = ds.loss_sum, ds.squared_norm_sum, ds.above_scale
            misclassified, clipped, rows = ds.misclassified, ds.clipped, ds.row_squared_norm_sum
        else:
            k = sparse_sums(r, t, &ss)
            g2 = squared_norm(r.gradient, (r.d if k < 0 else k) + 1)
            loss, squares, above = ss.loss_sum, ss.squared_norm_sum, ss.above_scale
            misclassified, clipped, rows = ss.misclassified, ss.clipped, ss.row_squared_norm_sum
        r.last_columns = k
        if not r.statistics:
            squares = rows = NAN
        # ‖ḡ + ρ‖² at the weights the batch was scored with (L2: before the step)
        target = objective(r) if r.l2 != 0.0 and isfinite(squares) else NAN
        eta = learning_rate(r)
        decay = 1.0 if r.forget == 1.0 else pow(r.forget, <double>m)
        floats, counts = r.step_floats + N_FLOATS * t, r.step_counts + N_COUNTS * t
        floats[0], floats[1], floats[2], floats[3], floats[4] = loss, eta, squares, g2, rows
        counts[0], counts[1], counts[3] = misclassified, clipped, above
        if not step(r, k, eta, decay):
            counts[2] = 1
            continue
        counts[2] = 0
        r.n_updates += 1
        r.n_samples_seen += m
        if r.kappa > 0.0:
            r.row_scale = next_scale(r.row_scale, above, m)
        # Extreme (finite) inputs can overflow Σ‖g_i‖² alone; keep it out of the EWMAs.
        if isfinite(squares):
            g2 = g2 / <double>(m * m)
            fold_noise(&r.noise, m, squares, g2, g2 if r.l2 == 0.0 else target, loss)


def learn_steps(
    X, indptr, indices, values, Py_ssize_t n_features, y, sample_weight,
    Py_ssize_t batch_size, Py_ssize_t n_steps, theta, accumulator, stats, settings,
    state, column_workspace, row_workspace, bint last_gradient=False,
):
    """n = ``n_steps`` steps of m = ``batch_size`` consecutive rows each (see the module
    docstring); θ, A and ``stats`` are updated in place.

    Parameters
    ----------
    X : C-contiguous float64 ndarray of shape (n m, d), or None (sparse rows)
    indptr, indices, values : the CSR arrays (int64, int64, float64) of n m rows, or None
    n_features : int
        d.
    y : float64 ndarray of shape (n m,)
    sample_weight : float64 ndarray of shape (n m,), or None
    theta : float64 ndarray of shape (d + 1,)
    accumulator : float64 ndarray of shape (d + 1,), or None
        AdaGrad's A (None: plain SGD).
    stats : RunningGradientStatistics
    settings : tuple
        (η₀, inverse_scaling, decay, power, mean, λ₁, λ₂, ε, γ per sample, κ, statistics).
    state : tuple
        (t = n_updates, n_samples_seen, s = row_scale, accumulated samples).
    column_workspace, row_workspace : int64 ndarrays of shape (d,), or None (dense rows)
        The model's sparse-set scratch (any content); ``column_workspace`` None: no column
        mode (an L1 term).
    last_gradient : bool
        Also return the last step's Σ g_i (and its columns in column mode).

    Returns
    -------
    (state after, per-step floats (n, 5): Σℓ_i, η, Σ‖g_i‖², ‖Σ g_i‖², Σ s_i‖v_i‖²;
    per-step counts (n, 4): misclassified, clipped, skipped, #{‖v_i‖ > s}; the last step's
    (columns or None, Σ g_i) or None)
    """
    cdef Run r
    cdef Py_ssize_t d = n_features, m = batch_size, n = n_steps * batch_size
    cdef Py_ssize_t t, k, start, nnz, widest = 0, width
    memset(&r, 0, sizeof(Run))
    r.m, r.d = m, d
    (r.eta0, r.inverse_scaling, r.decay, r.power, r.mean, r.l1, r.l2, r.epsilon, r.forget,
     r.kappa, r.statistics) = settings
    r.columns_allowed = column_workspace is not None
    r.n_updates, r.n_samples_seen, r.row_scale, r.accumulated_samples = state
    r.theta = doubles(theta, d + 1, "theta")
    r.accumulator = NULL if accumulator is None else doubles(accumulator, d + 1, "accumulator")
    r.y = doubles(y, n, "y")
    r.weights = NULL if sample_weight is None else doubles(sample_weight, n, "sample_weight")
    keep = []  # scratch arrays, alive until the loop is done
    if X is not None:
        r.X = doubles(X, n * d, "X")
        width = d
        if r.kappa > 0.0:
            scaled = np.empty(4 * d)  # a block's clipped rows
            keep.append(scaled)
            r.scaled = doubles(scaled, 4 * d, "")
    else:
        r.indptr = int64s(indptr, n + 1, "indptr")
        nnz = r.indptr[n]
        r.indices = int64s(indices, nnz, "indices")
        r.values = doubles(values, nnz, "values")
        for t in range(n_steps):
            widest = max(widest, r.indptr[(t + 1) * m] - r.indptr[t * m])
        # Steps all at their columns: nnz + 1 scratch entries, not d + 1 (3 huge-page faults)
        column_steps = r.columns_allowed and m >= 2 and SPARSE_STEP_MAX_DENSITY * d > widest
        width = widest if column_steps else max(d, widest)
        r.row_workspace = int64s(row_workspace, d, "row_workspace")
        if column_workspace is not None:
            r.column_workspace = int64s(column_workspace, d, "column_workspace")
        keep.append(ints := np.empty(m + 1 + 5 * widest, dtype=np.int64))
        r.batch_indptr = int64s(ints, m + 1 + 5 * widest, "")
        r.row_columns = r.batch_indptr + m + 1
        r.slots = r.row_columns + widest
        r.columns = r.slots + 3 * widest
        keep.append(floats := np.empty(widest + 2 * (widest + 1)))
        r.row_cells = doubles(floats, widest + 2 * (widest + 1), "")
        r.gathered_theta = r.row_cells + widest
        r.gathered_accumulator = r.gathered_theta + widest + 1
    work = np.empty(3 * (width + 1))
    r.gradient = doubles(work, 3 * (width + 1), "")
    r.values_out = r.gradient + width + 1
    r.accumulated_out = r.values_out + width + 1
    step_floats = np.empty((n_steps, N_FLOATS))
    step_counts = np.empty((n_steps, N_COUNTS), dtype=np.int64)
    r.step_floats = doubles(step_floats, N_FLOATS * n_steps, "")
    r.step_counts = int64s(step_counts, N_COUNTS * n_steps, "")
    load_noise(&r.noise, stats)
    with nogil:
        run_steps(&r, n_steps)
    store_noise(&r.noise, stats)
    state = (r.n_updates, r.n_samples_seen, r.row_scale, r.accumulated_samples)
    last = None
    if last_gradient and n_steps:
        k = r.last_columns
        gradient = work[: (d if k < 0 else k) + 1]  # a view: the scratch is this call's
        start = m + 1 + 4 * widest  # r.columns in ``ints``
        last = (None, gradient) if k < 0 else (ints[start : start + k].copy(), gradient)
    return state, step_floats, step_counts, last
