"""The block algebra of :mod:`.sequential`: K consecutive m = 1 steps from one Gram matrix.

One m = 1 step on sample t (importance weight s_t, clipping factor c_t of :mod:`.row_scale`,
1 for an ordinary row) is (docs/design.md, The math, with m = 1)::

    z_t = c_t (x_tᵀ w_t + b_t),   q_t = η_t s_t c_t (σ(z_t) − y_t),   a_t = 1 − η_t λ₂
    w_{t+1} = a_t w_t − q_t x_t,                 b_{t+1} = b_t − q_t

Unrolled over a block that starts from (w₀, b₀), with P_t = Π_{u<t} a_u and
c_{t,s} = Π_{s<u<t} a_u = P_t / P_{s+1}::

    w_t = P_t w₀ − Σ_{s<t} q_s c_{t,s} x_s
    z_t = c_t [ P_t (x_tᵀ w₀) + b₀ − Σ_{s<t} q_s (c_{t,s} x_tᵀ x_s + 1) ]

so inside a block the scores need only the K × K Gram matrix G = X_B X_Bᵀ and the K
projections X_B w₀: O(K d) numpy work per block, O(K) scalar work per sample. After the block
w_K = P_K w₀ − X_Bᵀ (q ∘ c_K) and b_K = b₀ − Σ q_s. The products are taken in log space
(c_{t,s} = exp(L_t − L_{s+1}), L_t = Σ_{u<t} log a_u), so neither overflows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import mul

import numpy as np
from numpy.typing import NDArray

from .losses import sigmoid_scalar
from .types import FloatArray

GRAM_SPAN = 4096  # samples whose block Gram matrices are computed in one call


class GramSpans:
    """Gram matrices X_B X_Bᵀ of consecutive blocks, many blocks per numpy call.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    block_size : int
        K.
    with_lists : bool
        Also keep each block's strictly lower triangle + 1 (x_tᵀx_s + 1, s < t, row after
        row) as a Python list: the couplings of a block without L2.
    """

    def __init__(self, X: FloatArray, block_size: int, with_lists: bool) -> None:
        self.X = X
        self.block_size = block_size
        self.with_lists = with_lists
        self.span = max(block_size, (GRAM_SPAN // block_size) * block_size)
        self.start = self.stop = 0
        self.grams: FloatArray = np.empty((0, block_size, block_size))
        self.lists: list[list[float]] = []
        # Strictly lower triangle (s < t), row-major: row t is the t entries s = 0 … t−1.
        self.lower = np.tril_indices(block_size, -1)

    def _compute(self, start: int) -> None:
        X, K = self.X, self.block_size
        self.start, self.stop = start, min(start + self.span, len(X))
        full = (self.stop - start) // K
        blocks = X[start : start + full * K].reshape(full, K, X.shape[1])
        grams = np.matmul(blocks, blocks.transpose(0, 2, 1))
        if start + full * K < self.stop:
            last = X[start + full * K : self.stop]
            tail_gram = np.zeros((1, K, K))
            tail_gram[0, : len(last), : len(last)] = last @ last.T
            grams = np.concatenate((grams, tail_gram))
        self.grams = grams
        if self.with_lists:
            self.lists = (grams[:, self.lower[0], self.lower[1]] + 1.0).tolist()

    def block(self, start: int) -> int:
        """The index of the block starting at ``start`` in :attr:`grams` / :attr:`lists`
        (blocks are visited in order)."""
        if start >= self.stop:
            self._compute(start)
        return (start - self.start) // self.block_size


@dataclass(frozen=True)
class BlockTerms:
    """What the scalar recursion of one block needs, and how its end θ is formed.

    Attributes
    ----------
    base : list of float
        P_t x_tᵀw₀ + b₀.
    coupling : list of float
        c_{t,s} x_tᵀx_s + 1 for s < t, row after row.
    tail : ndarray of shape (k,), or None
        c_{K,s} (None: all 1, no L2).
    shrink : float
        P_K.
    """

    base: list[float]
    coupling: list[float]
    tail: FloatArray | None
    shrink: float


def l2_block_terms(
    gram: FloatArray,
    lower: tuple[NDArray[np.intp], NDArray[np.intp]],
    u: FloatArray,
    b0: float,
    factors: FloatArray,
) -> BlockTerms:
    """The block's terms with L2 (a_t = ``factors`` > 0), ``u`` = X_B w₀ of length k."""
    k = len(u)
    log_p = np.zeros(k + 1)
    np.cumsum(np.log(factors), out=log_p[1:])  # L_t, t = 0..k
    # c_{t,s} = exp(L_t − L_{s+1}) for s < t (entries s ≥ t are never read).
    decay = np.exp(np.minimum(log_p[:k, None] - log_p[None, 1:], 0.0))
    rows, cols = lower[0][: k * (k - 1) // 2], lower[1][: k * (k - 1) // 2]
    coupling = (gram[rows, cols] * decay[rows, cols] + 1.0).tolist()
    base = (np.exp(log_p[:k]) * u + b0).tolist()
    return BlockTerms(base, coupling, np.exp(log_p[k] - log_p[1:]), math.exp(log_p[k]))


def block_steps(
    terms: BlockTerms,
    etas: list[float],
    labels: list[float],
    weights: list[float] | None,
    clip_factors: list[float] | None,
) -> tuple[list[float], list[float]]:
    """The scalar recursion of one block: (q_t, z_t) for t = 0..k−1 (module docstring).

    ``weights`` (s_t) and ``clip_factors`` (c_t) None mean all 1. The loop without either
    is the hot path of pure online learning, kept free of both multiplications.
    """
    qs: list[float] = []
    zs: list[float] = []
    append_q, append_z = qs.append, zs.append
    base, sig = terms.base, sigmoid_scalar
    # map() stops at the end of qs (t items) before drawing from ``entries``, so row t of
    # the triangle is consumed exactly by step t.
    entries = iter(terms.coupling)
    if weights is None and clip_factors is None:
        for t in range(len(base)):
            zt = base[t] - sum(map(mul, qs, entries))
            append_q(etas[t] * (sig(zt) - labels[t]))
            append_z(zt)
        return qs, zs
    ones = [1.0] * len(base)
    sws = ones if weights is None else weights
    cs = ones if clip_factors is None else clip_factors
    for t in range(len(base)):
        zt = cs[t] * (base[t] - sum(map(mul, qs, entries)))
        append_q(etas[t] * ((sig(zt) - labels[t]) * sws[t]) * cs[t])
        append_z(zt)
    return qs, zs
