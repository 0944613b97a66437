"""Logistic loss and its derivative, computed stably.

All functions are vectorised over a batch of linear scores ``z = X @ w + b``.
"""

from __future__ import annotations

import numpy as np

from .types import FloatArray


def sigmoid(z: FloatArray) -> FloatArray:
    """Logistic function σ(z) = 1 / (1 + exp(−z)), without overflow.

    Parameters
    ----------
    z : ndarray of shape (n,)
        Linear scores.

    Returns
    -------
    ndarray of shape (n,)
        σ(z), computed from ``exp(−|z|)`` so that no intermediate overflows.
    """
    e = np.exp(-np.abs(z))
    # σ(z) = 1/(1+e) for z ≥ 0 and e/(1+e) for z < 0, with e = exp(−|z|) ≤ 1.
    return np.where(z >= 0.0, 1.0, e) / (1.0 + e)


def log_loss(z: FloatArray, y: FloatArray) -> FloatArray:
    """Per-sample negative log-likelihood of a Bernoulli label.

    ℓ(z, y) = −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y·z,
    with softplus(z) = log1p(exp(−|z|)) + max(z, 0), which stays finite for any finite z
    (at |z| = 1000 it is exact to the last bit, where the naive form gives inf or nan).

    Parameters
    ----------
    z : ndarray of shape (n,)
        Linear scores wᵀx + b.
    y : ndarray of shape (n,)
        Labels in {0, 1}.

    Returns
    -------
    ndarray of shape (n,)
        ℓ_i ≥ 0.
    """
    # For y ∈ {0, 1}, softplus(z) − y·z = log1p(exp(−|z|)) + max((1 − 2y)·z, 0); this form has
    # no inf − inf, so even an overflowed score z = ±inf gives a loss (0 or inf), never NaN.
    return np.log1p(np.exp(-np.abs(z))) + np.maximum((1.0 - 2.0 * y) * z, 0.0)


def residual(z: FloatArray, y: FloatArray) -> FloatArray:
    """Derivative of the loss with respect to the score: r = ∂ℓ/∂z = σ(z) − y.

    The per-sample gradient with respect to (w, b) is ``r_i · [x_i ; 1]``.

    Parameters
    ----------
    z : ndarray of shape (n,)
    y : ndarray of shape (n,)

    Returns
    -------
    ndarray of shape (n,)
    """
    return sigmoid(z) - y
