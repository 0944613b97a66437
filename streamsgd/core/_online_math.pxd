# Scalar arithmetic shared by the compiled m = 1 loops, in the order of the numpy step
# (streamsgd/core/step.py, losses.py, schedules.py, row_scale.py), so that the loops
# round as the oracle does wherever one value is computed by one formula.

from libc.math cimport exp, fabs, isnan, log1p, pow, sqrt


cdef struct Settings:
    double eta0          # η₀
    bint inverse_scaling # η_t = η₀ / (1 + decay t)^power, else η₀
    double decay
    double power
    double l1
    double l2
    bint adagrad
    double epsilon
    double kappa         # κ of the row clip (0: off)
    bint statistics      # gradient statistics on
    double keep          # 1 − α of the row scale
    double scale_alpha   # α of the row scale
    double forget        # γ of AdaGrad's forgetting accumulator, per sample (1: never)


cdef enum:
    # Slots of the float64 vector that carries Settings from Python.
    N_SETTINGS_SLOTS = 13


cdef inline void load_settings(Settings* s, const double* p) noexcept nogil:
    s.eta0 = p[0]
    s.inverse_scaling = p[1] != 0.0
    s.decay = p[2]
    s.power = p[3]
    s.l1 = p[4]
    s.l2 = p[5]
    s.adagrad = p[6] != 0.0
    s.epsilon = p[7]
    s.kappa = p[8]
    s.statistics = p[9] != 0.0
    s.keep = p[10]
    s.scale_alpha = p[11]
    s.forget = p[12]


cdef inline double learning_rate(const Settings* s, double n_updates) noexcept nogil:
    """schedules.LearningRateSchedule.__call__."""
    if not s.inverse_scaling:
        return s.eta0
    return s.eta0 / pow(1.0 + s.decay * n_updates, s.power)


cdef inline double soft_threshold(double w, double t) noexcept nogil:
    """sign(w) max(|w| − t, 0) (NaN stays NaN, so that the step is skipped)."""
    if isnan(w):
        return w
    if w > t:
        return w - t
    if w < -t:
        return w + t
    return 0.0


cdef struct Score:
    double residual   # σ(z) − y (before the sample weight)
    double loss       # ℓ(z, y)
    bint missed       # (z ≥ 0) ≠ y


cdef inline Score score(double z, double y) noexcept nogil:
    """losses.logistic_terms for one sample."""
    cdef Score out
    cdef double e = exp(-fabs(z))
    cdef double positive = 1.0 if z >= 0.0 else 0.0
    cdef double wrong = positive - y
    cdef double excess
    out.residual = (1.0 if z >= 0.0 else e) / (e + 1.0) - y
    out.loss = log1p(e) + z * wrong
    if isnan(out.loss):
        excess = (1.0 - 2.0 * y) * z
        out.loss = log1p(e) + (excess if not (0.0 > excess) else 0.0)
    out.missed = wrong != 0.0
    return out


cdef struct Clip:
    bint clipped
    double norm        # ‖v_t‖, counted by the median tracker of s when above it
    double magnitude   # M = max(‖x‖_∞, 1)      (clipped rows)
    double factor      # κ s / ν: c x = (x / M) · factor
    double intercept   # c = factor / M (1 for an ordinary row)
    double squared     # ‖c [x ; 1]‖²: (κ s)² when clipped, else ‖x‖² + 1


cdef inline Clip no_clip(double norm, double augmented_squared) noexcept nogil:
    cdef Clip c
    c.clipped = False
    c.norm = norm
    c.magnitude = 1.0
    c.factor = 1.0
    c.intercept = 1.0
    c.squared = augmented_squared
    return c


cdef inline Clip row_clip(const double* values, Py_ssize_t n, double norm,
                          double augmented_squared, double cap) noexcept nogil:
    """row_scale.clip_rows and magnitudes for one row of n values: clipped when
    ‖v‖ > κ s, then c v = κ s (v / M) / ν with M = max(‖x‖_∞, 1), ν = ‖v / M‖."""
    cdef Clip c = no_clip(norm, augmented_squared)
    cdef double big = 0.0
    cdef double total = 0.0
    cdef double u
    cdef Py_ssize_t k
    if not (norm > cap):
        return c
    for k in range(n):
        if fabs(values[k]) > big:
            big = fabs(values[k])
    if 1.0 > big:
        big = 1.0
    for k in range(n):
        u = values[k] / big
        total += u * u
    u = 1.0 / big
    c.clipped = True
    c.magnitude = big
    c.factor = cap / sqrt(total + u * u)
    c.intercept = c.factor / big
    c.squared = cap * cap
    return c


cdef inline double schedule_and_scale(double* row_scale, const Settings* s,
                                      const Clip* c) noexcept nogil:
    """log s ← log s + γ ([‖v‖ > s] − ½) after an applied step (row_scale.next_scale, the
    median tracker; γ = ``scale_alpha``, ``keep`` unused)."""
    cdef double above
    if s.kappa > 0.0:
        above = 1.0 if c.norm > row_scale[0] else 0.0
        row_scale[0] = row_scale[0] * exp(s.scale_alpha * (above / 1.0 - 0.5))
    return row_scale[0]
