"""Brute-force numpy references for the unit tests.

Written from docs/design.md (The math) and the documented API only; nothing here imports the
code under test, so the tests compare two independent implementations. Everything is per
sample and unvectorised where that makes the formula more obvious: speed is not a goal.
"""

from __future__ import annotations

import decimal
import math

import numpy as np

# ---------------------------------------------------------------------------- scalar maths


def sigmoid_ref(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1/(1+e^{-z}) for z ≥ 0 and e^{z}/(1+e^{z}) for z < 0 (each branch only
    evaluates exp of a non-positive number, so nothing overflows)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    with np.errstate(under="ignore"):
        out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
        ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def naive_log_loss(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The textbook −[y log σ + (1−y) log(1−σ)]; only accurate for moderate |z| (≲ 5)."""
    s = 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))
    return -(y * np.log(s) + (1.0 - y) * np.log(1.0 - s))


_CTX = decimal.Context(prec=60, Emax=10**6, Emin=-(10**6))


def decimal_log_loss(z: float, y: float) -> float:
    """ℓ(z, y) = ln(1 + e^z) − y z to 60 significant digits (Python's decimal module)."""
    dz = _CTX.create_decimal(float(z))
    val = _CTX.ln(_CTX.add(1, _CTX.exp(dz))) - _CTX.multiply(_CTX.create_decimal(float(y)), dz)
    return float(_CTX.plus(val))


def decimal_sigmoid(z: float) -> float:
    dz = _CTX.create_decimal(float(z))
    return float(_CTX.divide(1, _CTX.add(1, _CTX.exp(-dz))))


# ---------------------------------------------------------------------------- gradients


def per_sample_gradients(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, sample_weight=None
) -> np.ndarray:
    """G of shape (m, d+1): row i is s_i (σ(z_i) − y_i) [x_i ; 1], built one row at a time."""
    X = np.asarray(X, dtype=np.float64)
    m, d = X.shape
    G = np.empty((m, d + 1))
    for i in range(m):
        z = float(np.dot(X[i], w)) + b
        r = float(sigmoid_ref(np.array([z]))[0]) - y[i]
        if sample_weight is not None:
            r *= sample_weight[i]
        G[i, :d] = r * X[i]
        G[i, d] = r
    return G


def mean_loss_ref(X, y, w, b) -> float:
    """Mean log loss, stable form written out per sample: ℓ = log(1+e^{−|z|}) + max(z,0) − y z."""
    total = 0.0
    for i in range(len(y)):
        z = float(np.dot(X[i], w)) + b
        total += math.log1p(math.exp(-abs(z))) + max(z, 0.0) - y[i] * z
    return total / len(y)


def trace_cov_ddof1(G: np.ndarray) -> float:
    """tr of np.cov(G, rowvar=False, ddof=1), the brute-force per-sample gradient variance."""
    if G.shape[0] < 2:
        return math.nan
    return float(np.trace(np.atleast_2d(np.cov(G, rowvar=False, ddof=1))))


# ---------------------------------------------------------------------------- learner


def soft_threshold(v: np.ndarray, tau) -> np.ndarray:
    out = np.zeros_like(v)
    for j in range(len(v)):
        t = tau[j] if np.ndim(tau) else tau
        if v[j] > t:
            out[j] = v[j] - t
        elif v[j] < -t:
            out[j] = v[j] + t
    return out


class ReferenceLearner:
    """Minibatch SGD for logistic regression exactly as docs/design.md (The math) writes it:

        ḡ = (1/m) Σ_i g_i,   w ← prox_{η_t λ₁}(w − η_t (ḡ_w + λ₂ w)),   b ← b − η_t ḡ_b

    η_t = η₀ (constant) or η₀ / (1 + decay·t)^power (inverse_scaling), t = steps so far.
    reduction="sum" steps on the gradient of Σ_i (s_i ℓ_i + λ₂‖w‖²/2 + λ₁‖w‖₁).
    optimizer="adagrad" divides each coordinate's step by √(Σ_steps d_j²) + ε where d is the
    (regularised) gradient direction of that step; the L1 threshold is scaled the same way.
    """

    def __init__(
        self,
        d: int,
        learning_rate: float = 0.1,
        schedule: str = "constant",
        decay: float = 1.0,
        power: float = 0.5,
        l2: float = 0.0,
        l1: float = 0.0,
        reduction: str = "mean",
        optimizer: str = "sgd",
        eps: float = 1e-8,
    ) -> None:
        self.w = np.zeros(d)
        self.b = 0.0
        self.eta0, self.schedule, self.decay, self.power = learning_rate, schedule, decay, power
        self.l2, self.l1, self.reduction, self.optimizer, self.eps = (
            l2,
            l1,
            reduction,
            optimizer,
            eps,
        )
        self.t = 0
        self.acc = np.zeros(d + 1)

    def eta(self) -> float:
        if self.schedule == "constant":
            return self.eta0
        return self.eta0 / (1.0 + self.decay * self.t) ** self.power

    def step(self, X, y, sample_weight=None) -> None:
        X = np.asarray(X, dtype=np.float64)
        m, d = X.shape
        G = per_sample_gradients(X, y, self.w, self.b, sample_weight)
        eta = self.eta()
        if self.reduction == "mean":
            g = G.sum(axis=0) / m
            l2, l1 = self.l2, self.l1
        else:
            g = G.sum(axis=0)
            l2, l1 = self.l2 * m, self.l1 * m
        direction_w = g[:d] + l2 * self.w
        direction_b = g[d]
        if self.optimizer == "adagrad":
            self.acc = self.acc + np.append(direction_w, direction_b) ** 2
            rate = eta / (np.sqrt(self.acc) + self.eps)
            rate_w, rate_b = rate[:d], rate[d]
        else:
            rate_w, rate_b = np.full(d, eta), eta
        self.w = soft_threshold(self.w - rate_w * direction_w, rate_w * l1)
        self.b = self.b - rate_b * direction_b
        self.t += 1
