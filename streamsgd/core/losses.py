"""Logistic loss and its derivative, computed stably.

All functions are vectorised over a batch of linear scores ``z = X @ w + b``.
"""

from __future__ import annotations

import math

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


def logistic_terms(z: FloatArray, y: FloatArray) -> tuple[FloatArray, float, int]:
    """Residuals, summed log loss and misclassified count of a batch, in one fused pass.

    The fast form of :func:`residual` and :func:`log_loss` used by the SGD step: σ(z) and ℓ
    share e = exp(−|z|), σ(z) = [z ≥ 0 ? 1 : e] / (1 + e) and, for y ∈ {0, 1},
    ℓ = log1p(e) + max((1 − 2y)·z, 0). At m = 256 the step is bound by the number of numpy
    calls, not by arithmetic, hence the in-place operations.

    Parameters
    ----------
    z : ndarray of shape (m,)
        Linear scores (not modified).
    y : ndarray of shape (m,)
        Labels in {0, 1}.

    Returns
    -------
    r : ndarray of shape (m,)
        σ(z) − y.
    loss_sum : float
        Σ_i ℓ(z_i, y_i).
    n_misclassified : int
        Samples with (z_i ≥ 0) ≠ y_i.
    """
    e = np.abs(z)
    np.negative(e, out=e)
    np.exp(e, out=e)
    positive = z >= 0.0
    r = np.where(positive, 1.0, e)
    r /= e + 1.0
    r -= y
    # For y ∈ {0, 1}, δ = [z ≥ 0] − y is ±1 exactly on the misclassified samples and 0
    # elsewhere, and Σ max((1 − 2y)·z, 0) = zᵀδ: one vector for both. Only an overflowed
    # score (z = ±inf) makes zᵀδ NaN (inf · 0); the max form is exact there.
    wrong = positive - y
    loss_sum = float(np.log1p(e).sum() + z @ wrong)
    if math.isnan(loss_sum):
        loss_sum = float(np.log1p(e).sum() + np.maximum((1.0 - 2.0 * y) * z, 0.0).sum())
    return r, loss_sum, int(np.count_nonzero(wrong))


def sigmoid_scalar(z: float) -> float:
    """σ(z) for one Python float, the scalar form of :func:`sigmoid` (never overflows).

    Used by the per-sample recursion of :mod:`.sequential`, where a numpy call per sample
    would cost more than the arithmetic.
    """
    e = math.exp(-abs(z))
    return 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
