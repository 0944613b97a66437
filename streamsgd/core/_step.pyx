# cython: language_level=3
"""The compiled minibatch step (:func:`.step.propose_step`): one loop over the d + 1 (or
k + 1) entries of θ that move, with the finiteness check of the result folded in::

    δ = Σ g_i / m (mean) or Σ g_i (sum, with λ₁, λ₂ scaled by m),  δ_w += λ₂ w
    AdaGrad:  G ← γ^m G + δ² (γ^m = 1: never forget),  η_j = η / (√G_j + ε);  plain SGD: η_j = η
    θ ← θ − η_j δ,  then w_j ← sign(w_j) max(|w_j| − η_j λ₁, 0)

The intercept (last entry) is not regularised.
"""

cimport numpy as cnp
from libc.math cimport copysign, fabs, isfinite, sqrt, NAN

from ._arrays cimport doubles

import numpy as np

cnp.import_array()




cdef bint step_loop(const Step* p) noexcept nogil:
    """Fill ``values`` (and ``accumulated``); whether every new value is finite."""
    cdef Py_ssize_t j, last = p.n - 1
    cdef double delta, rate, new, excess
    cdef bint finite = True
    for j in range(p.n):
        delta = p.direction[j] / p.divisor
        if p.l2 != 0.0 and j < last:
            delta += p.l2 * p.theta[j]
        rate = p.eta
        if p.accumulator != NULL:
            p.accumulated[j] = p.forget * p.accumulator[j] + delta * delta
            rate = p.eta / (sqrt(p.accumulated[j]) + p.epsilon)
        new = p.theta[j] - rate * delta
        if p.l1 != 0.0 and j < last:  # soft threshold; NaN stays NaN
            excess = fabs(new) - rate * p.l1
            new = copysign(excess, new) if excess > 0.0 else (0.0 if excess <= 0.0 else NAN)
        p.values[j] = new
        finite = finite and isfinite(new)
    return finite


def propose(
    theta, gradient_sum, columns, Py_ssize_t n_samples, double eta, bint mean, double l1,
    double l2, accumulator, double epsilon, double forget=1.0,
):
    """θ after one step (nothing modified in place).

    Parameters
    ----------
    theta : float64 ndarray of shape (d + 1,)
    gradient_sum : float64 ndarray of shape (d + 1,), or (k + 1,) at ``columns``
    columns : int64 ndarray of shape (k,), or None
        The columns a sparse batch kept its gradient at (no L1, no L2): only those and
        the intercept move.
    n_samples : int
        m.
    eta : float
    mean : bool
        Step on Σ g_i / m with λ₁, λ₂ (True) or on Σ g_i with m λ₁, m λ₂.
    l1, l2, epsilon : float
    accumulator : float64 ndarray of shape (d + 1,), or None
        AdaGrad's Σ δ² (None: plain SGD).
    forget : float
        γ^m ∈ (0, 1]: the accumulator's factor before this step's δ² (1: never forget).

    Returns
    -------
    (active int64 indices or None, new values, new accumulator values or None, finite)
    """
    cdef Step p
    cdef Py_ssize_t d = len(theta) - 1
    active = None
    p.n = d + 1
    p.theta = doubles(theta, d + 1, "theta")
    p.accumulator = NULL if accumulator is None else doubles(accumulator, d + 1, "accumulator")
    if columns is not None:  # θ and G at the columns and the intercept (kept alive here)
        active = np.append(columns, d)
        p.n = len(active)
        theta = theta[active]
        p.theta = doubles(theta, p.n, "theta")
        if accumulator is not None:
            accumulator = accumulator[active]
            p.accumulator = doubles(accumulator, p.n, "accumulator")
    p.direction = doubles(gradient_sum, p.n, "gradient_sum")
    p.divisor = n_samples if mean else 1.0
    scale = 1.0 if mean else n_samples
    p.eta, p.l1, p.l2, p.epsilon, p.forget = eta, l1 * scale, l2 * scale, epsilon, forget
    values = np.empty(p.n)
    p.values = doubles(values, p.n, "")
    accumulated = None if accumulator is None else np.empty(p.n)
    p.accumulated = NULL if accumulated is None else doubles(accumulated, p.n, "")
    with nogil:
        finite = step_loop(&p)
    return active, values, accumulated, finite
