# cython: language_level=3
"""The fused minibatch kernel of dense rows: every sum of :class:`~.batch_sums.BatchSums`
(and the moment sums of ``standardize``) in one loop over the rows of X.

Per row (d + 1 parameters, θ = [w ; b], v_i = c_i [x_i ; 1], c_i the influence weight of
:mod:`.row_scale`), while the row is in the L1 cache::

    one read:    z_i = x_iᵀw,  ‖x_i‖²            (and x_iᵀu with a controller)
    weight:      c_i = min(1, κs/‖[x_i ; 1]‖), the row rescaled to v_i = c_i [x_i ; 1] only
                 when c_i < 1 (the gradient weight, :mod:`.row_scale`), its raw score
                 z_i = θᵀv_i / c_i taken from the bounded row
    scale:       #{‖[x_i ; 1]‖ > s}, the median tracker's count
    scalars:     r_i = s_i (σ(z_i) − y_i), ℓ_i, misclassified, Σ r_i² ‖v_i‖², Σ s_i ‖v_i‖²
    one write:   Σ g_i += r_i v_i                 (and P += ¼ s_i (v_iᵀu) v_i)
    moments:     S₁ += σ ⊙ v_i,  S₂ += (σ ⊙ v_i)²   (standardize: x_i is standardised first)

which is the arithmetic of the numpy oracle (tests/support/reference.py) up to the order of
the additions inside a dot product.
"""

cimport numpy as cnp
from libc.math cimport copysign, fabs, isfinite, isinf, isnan, sqrt, NAN
from libc.stdint cimport int64_t
from libc.string cimport memset

from ._arrays cimport doubles, int64s
from ._rows cimport (
    SampleTerms, axpy, axpy4, dot, dot4_and_squares, dot_and_squares, logistic_sample,
    unclipped_score,
)

import numpy as np

cnp.import_array()

cdef double SCORE_LIMIT = 1e300  # standardize.SCORE_LIMIT: |z_j| of a finite input






cdef double magnitude(const double* x, Py_ssize_t d, double* relative) noexcept nogil:
    """M = max(‖x‖_∞, 1) (NaN when x holds NaN) and, into ``relative``,
    ν = ‖[x ; 1] / M‖: ‖[x ; 1]‖ = M ν without overflow (:func:`.row_scale.magnitudes`)."""
    cdef double big = 0.0, a, t, s = 0.0
    cdef bint nan = False
    cdef Py_ssize_t j
    for j in range(d):
        a = fabs(x[j])
        if a > big:
            big = a
        elif isnan(a):
            nan = True
    big = NAN if nan else (big if big > 1.0 else 1.0)
    for j in range(d):
        t = x[j] / big
        s += t * t
    t = 1.0 / big
    relative[0] = sqrt(s + t * t)
    return big


cdef const double* standardised(const Batch* b, const double* x, double* row) noexcept nogil:
    """z = (x − μ) ⊙ (1/σ) into ``row``; a finite x whose z overflows gets ±SCORE_LIMIT."""
    cdef Py_ssize_t j
    cdef double t
    for j in range(b.d):
        t = (x[j] - b.mean[j]) * b.inverse_scale[j]
        if isinf(t) and isfinite(x[j]):
            t = copysign(SCORE_LIMIT, t)
        row[j] = t
    return row


cdef void add_moments(const Batch* b, const double* x, const double* v, Sums* s) noexcept nogil:
    """S₁, S₂ of the learned row σ ⊙ v; an unscaled feature: x_j − μ_j clipped to ± the cap."""
    cdef Py_ssize_t j, k
    cdef double t
    for j in range(b.d):
        t = v[j] * b.scale[j]
        s.s1[j] += t
        s.s2[j] += t * t
    for k in range(b.n_unscaled):
        j = b.unscaled[k]
        t = x[j] - b.mean[j]
        if t > b.moment_cap:
            t = b.moment_cap
        elif t < -b.moment_cap:
            t = -b.moment_cap
        s.unscaled_s1[k] += t
        s.unscaled_s2[k] += t * t


cdef void sample(
    const Batch* b, Sums* s, Py_ssize_t i, const double* x, const double** row, double zw,
    double q, double* scaled, double* c_out, double* r_out, double* projection_out,
) noexcept nogil:
    """Everything of sample i but its rank-one updates: the clip (``row[0]`` becomes the
    clipped copy in ``scaled``), ℓ_i, r_i = s_i (σ(z_i) − y_i), the curvature weight
    ¼ s_i (v_iᵀu), the scalar sums and the moments."""
    cdef Py_ssize_t j, d = b.d
    cdef const double* v = row[0]
    cdef double sq = q + 1.0  # ‖[x_i ; 1]‖²
    cdef double sqn = sq, c = 1.0, norm, big, relative, factor, weight, z
    cdef bint clipped = False
    cdef SampleTerms terms
    if b.cap > 0.0:
        norm = sqrt(sq)
        if isinf(norm):  # the sum of squares overflowed: measure it as M ν
            big = magnitude(v, d, &relative)
            norm = big * relative
        if norm > b.row_scale:
            s.above_scale += 1
        if norm > b.cap:  # c_i v_i = κs (v_i / M) / ν, built without overflow
            big = magnitude(v, d, &relative)
            factor = b.cap / relative
            for j in range(d):
                scaled[j] = v[j] / big * factor
            v = row[0] = scaled
            c = b.cap / relative / big
            zw = dot(v, b.theta, d)
            sqn = b.cap * b.cap
            s.clipped += 1
            clipped = True
    z = zw + b.theta[d] * c
    terms = logistic_sample(unclipped_score(z, c) if clipped else z, b.y[i])
    s.loss_sum += terms.loss
    s.misclassified += terms.misclassified
    weight = b.weights[i] if b.weights != NULL else 1.0
    if b.u != NULL:  # ¼ s_i bounds s_i σ'(z_i) (.curvature)
        projection_out[0] = (0.25 * weight) * (dot(v, b.u, d) + b.u[d] * c)
    r_out[0] = terms.residual * weight if b.weights != NULL else terms.residual
    c_out[0] = c
    if b.statistics:
        s.squared_norm_sum += r_out[0] * r_out[0] * sqn
        s.row_squared_norm_sum += weight * sqn if b.weights != NULL else sqn
    if b.mean != NULL:
        add_moments(b, x, v, s)


cdef void batch_loop(const Batch* b, Sums* s) noexcept nogil:
    """Blocks of four rows: their scores and norms in one read of θ, then every scalar of
    each sample, then Σ g_i (and P) updated by the four rows at once (one store of each
    entry per block); a last partial block row by row."""
    cdef Py_ssize_t i = 0, k, nb, d = b.d
    cdef const double* x[4]
    cdef const double* v[4]
    cdef double z[4]
    cdef double q[4]
    cdef double c[4]
    cdef double r[4]
    cdef double p[4]
    q[0] = q[1] = q[2] = q[3] = 0.0
    p[0] = p[1] = p[2] = p[3] = 0.0
    while i < b.m:
        nb = 4 if i + 4 <= b.m else 1
        for k in range(nb):
            x[k] = b.X + (i + k) * d
            v[k] = standardised(b, x[k], s.row + k * d) if b.mean != NULL else x[k]
        if nb == 4 and b.norms:
            # The next block's raw rows (contiguous in X) are fetched meanwhile.
            dot4_and_squares(v, b.theta, d, z, q, b.X + (i + 4) * d if i + 8 <= b.m else NULL)
        else:
            for k in range(nb):
                z[k] = dot_and_squares(v[k], b.theta, d, &q[k]) if b.norms else dot(v[k], b.theta, d)
        for k in range(nb):
            sample(b, s, i + k, x[k], &v[k], z[k], q[k], s.scaled + k * d, &c[k], &r[k], &p[k])
        if nb == 4:
            axpy4(r, v, s.gradient, d)
            if b.u != NULL:
                axpy4(p, v, s.curvature, d)
        else:
            axpy(r[0], v[0], s.gradient, d)
            if b.u != NULL:
                axpy(p[0], v[0], s.curvature, d)
        for k in range(nb):
            s.gradient[d] += r[k] * c[k]
            if b.u != NULL:
                s.curvature[d] += p[k] * c[k]
        i += nb


def dense_batch_sums(
    X, y, sample_weight, theta, double cap, double scale, bint norms, bint statistics,
    direction, frame, double moment_cap,
):
    """The sums of a dense batch (see the module docstring).

    Parameters
    ----------
    X : C-contiguous float64 ndarray of shape (m, d)
        Raw rows (standardised here when ``frame`` is given).
    y : float64 ndarray of shape (m,)
    sample_weight : float64 ndarray of shape (m,), or None
    theta : float64 ndarray of shape (d + 1,)
    cap : float
        κs, the clip norm (0: no clipping).
    scale : float
        s: rows with ‖[x_i ; 1]‖ > s are counted (when clipping).
    norms, statistics : bool
        Compute the row norms; compute Σ r_i²‖v_i‖² and Σ s_i‖v_i‖² (NaN otherwise).
    direction : float64 ndarray of shape (d + 1,), or None
        The controller's u (None: no curvature product).
    frame : (μ, 1/σ, σ, unscaled int64 indices), or None
        The standardisation in force (None: rows as given).
    moment_cap : float
        The bound of an unscaled feature's deviation (inf without clipping).

    Returns
    -------
    (Σ g_i, Σ‖g_i‖², Σ ℓ_i, misclassified, #{‖v_i‖ > s}, clipped, Σ s_i‖v_i‖², P or
    None, (S₁, S₂) or None, ‖Σ g_i‖²)
    """
    cdef Batch b
    cdef Sums s
    m, d = X.shape
    b.m, b.d = m, d
    b.X = doubles(X, m * d, "X")
    b.y = doubles(y, m, "y")
    b.weights = NULL if sample_weight is None else doubles(sample_weight, m, "sample_weight")
    b.theta = doubles(theta, d + 1, "theta")
    b.u = NULL if direction is None else doubles(direction, d + 1, "direction")
    b.cap, b.row_scale, b.norms = cap, scale, norms
    b.statistics, b.moment_cap = statistics, moment_cap
    gradient = np.zeros(d + 1)
    curvature = None if direction is None else np.zeros(d + 1)
    memset(&s, 0, sizeof(Sums))
    s.gradient = doubles(gradient, d + 1, "")
    s.curvature = NULL if curvature is None else doubles(curvature, d + 1, "")
    scaled = np.empty(4 * d) if cap > 0.0 else None  # a block's clipped rows, kept alive
    s.scaled = NULL if scaled is None else doubles(scaled, 4 * d, "")
    b.mean = NULL
    b.n_unscaled = 0
    moments = None
    if frame is not None:
        moments = standardisation(&b, &s, frame)
    with nogil:
        batch_loop(&b, &s)
    if moments is not None:
        s1, s2, unscaled, unscaled_sums, _ = moments
        s1[unscaled] = unscaled_sums[0]
        s2[unscaled] = unscaled_sums[1]
        moments = (s1, s2)
    if not statistics:
        s.squared_norm_sum = s.row_squared_norm_sum = NAN
    return (
        gradient, s.squared_norm_sum, s.loss_sum, s.misclassified, s.above_scale,
        s.clipped, s.row_squared_norm_sum, curvature, moments,
        dot(s.gradient, s.gradient, d + 1),
    )


cdef object standardisation(Batch* b, Sums* s, object frame):
    """Point ``b`` and ``s`` at the frame's arrays and new moment sums; returns the arrays
    (S₁, S₂, unscaled, (their S₁, S₂), scratch rows) that must outlive the loop."""
    cdef Py_ssize_t d = b.d, k
    mean, inverse_scale, scale, unscaled = frame
    k = len(unscaled)
    b.mean = doubles(mean, d, "mean")
    b.inverse_scale = doubles(inverse_scale, d, "inverse_scale")
    b.scale = doubles(scale, d, "scale")
    b.unscaled = int64s(unscaled, k, "unscaled")
    b.n_unscaled = k
    s1, s2, unscaled_sums = np.zeros(d), np.zeros(d), np.zeros((2, k))
    s.s1, s.s2 = doubles(s1, d, ""), doubles(s2, d, "")
    s.unscaled_s1 = doubles(unscaled_sums, 2 * k, "")
    s.unscaled_s2 = s.unscaled_s1 + k
    row = np.empty(4 * d)  # a block's standardised rows
    s.row = doubles(row, 4 * d, "")
    return s1, s2, unscaled, unscaled_sums, row
