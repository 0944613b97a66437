"""The standardiser's additive moment sums, the frame (μ, σ, 1/σ) they define, and the
re-expression of θ when the frame is replaced (:mod:`.standardize` has the formulas and the
reasons)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import BoolArray, FloatArray, IndexArray

RELATIVE_SCALE_FLOOR = 1e-7
"""σ_j ≤ this × |μ_j| counts as constant (1/σ_j := 0)."""

MIN_SCALE = 1e-300
"""σ_j ≤ this counts as constant too (1/σ_j would overflow)."""

SCORE_LIMIT = 1e300
"""|z_j| of a finite input is capped here (x far beyond σ overflows (x − μ)/σ otherwise);
the row clip then bounds the row. Non-finite inputs stay non-finite (their step is skipped)."""


@dataclass(frozen=True)
class MomentSums:
    """Additive sums of one batch's deviations from a shift K (the running mean).

    Attributes
    ----------
    n_samples : int
        m.
    shift : ndarray of shape (d,)
        K.
    deviation_sum : ndarray of shape (d,)
        S₁ = Σ_i (x̃_i − K).
    squared_deviation_sum : ndarray of shape (d,)
        S₂ = Σ_i (x̃_i − K)².
    """

    n_samples: int
    shift: FloatArray
    deviation_sum: FloatArray
    squared_deviation_sum: FloatArray

    @classmethod
    def from_deviations(cls, deviations: FloatArray, shift: FloatArray) -> MomentSums:
        """The sums of an (m, d) array of deviations x̃_i − K."""
        return cls(
            len(deviations),
            shift,
            deviations.sum(axis=0),
            np.einsum("ij,ij->j", deviations, deviations),
        )

    def __add__(self, other: MomentSums) -> MomentSums:
        """The sums of both batches, from this one's shift: a plain sum when the shifts are
        equal (replicas that share the state), else ``other`` re-centred by Δ = K_o − K:
        S₁ + m_o Δ and S₂ + 2 Δ S₁ + m_o Δ² (accurate while Δ is of the order of σ)."""
        s1, s2 = other.deviation_sum, other.squared_deviation_sum
        if not np.array_equal(other.shift, self.shift):
            delta = other.shift - self.shift
            s1, s2 = s1 + other.n_samples * delta, s2 + (2.0 * s1 + other.n_samples * delta) * delta
        return MomentSums(
            self.n_samples + other.n_samples,
            self.shift,
            self.deviation_sum + s1,
            self.squared_deviation_sum + s2,
        )


@dataclass(frozen=True)
class Frame:
    """The standardisation in force between two folds (replaced whole, never mutated, so
    a reader in another thread sees one consistent frame).

    Attributes
    ----------
    mean : ndarray of shape (d,)
        μ (0 before the first fold).
    scale : ndarray of shape (d,)
        σ where usable, else 0.
    inverse_scale : ndarray of shape (d,)
        1/σ where usable, else 0.
    unscaled : int ndarray of shape (k,)
        The features without a usable scale.
    """

    mean: FloatArray
    scale: FloatArray
    inverse_scale: FloatArray
    unscaled: IndexArray

    def arrays(self) -> tuple[FloatArray, FloatArray, FloatArray, IndexArray]:
        """(μ, 1/σ, σ, unscaled), as the dense kernel (:mod:`._batch_dense`) takes them."""
        return self.mean, self.inverse_scale, self.scale, self.unscaled


def frame_of(n_samples: int, mean: FloatArray, squared_deviations: FloatArray) -> Frame:
    """μ, σ = √(M2 / (n − 1)) and 1/σ from the running statistics (see the module doc).

    σ is usable when σ > ``RELATIVE_SCALE_FLOOR`` |μ| + ``MIN_SCALE`` (so 1/σ is finite).
    """
    if n_samples < 2:
        zeros = np.zeros_like(mean)
        return Frame(mean, zeros, zeros, np.arange(len(mean), dtype=np.int64))
    scale = np.sqrt(squared_deviations * (1.0 / (n_samples - 1)))
    usable = scale > RELATIVE_SCALE_FLOOR * np.abs(mean) + MIN_SCALE
    if usable.all():  # the usual case once warm: three array operations
        return Frame(mean, scale, 1.0 / scale, np.empty(0, dtype=np.int64))
    scale = np.where(usable, scale, 0.0)
    inverse_scale = np.divide(1.0, scale, out=np.zeros_like(scale), where=usable)
    return Frame(mean, scale, inverse_scale, np.flatnonzero(~usable).astype(np.int64))


def walked(old: Frame, fresh: Frame, evidence: float = 2.0) -> BoolArray:
    """The features whose old σ_j carries the walk of μ_j: σ_j > ``evidence`` σ'_j (the
    standardiser's ``RESTART_EVIDENCE``) where the restarted statistics scale the feature (one
    they do not scale yet is no evidence either way); a bool mask, shape (d,)."""
    return (fresh.scale > 0.0) & (old.scale > evidence * fresh.scale)


@dataclass(frozen=True)
class Reframe:
    """The re-expression of θ = [w ; b] when the frame changes from ``old`` to ``new``::

        w'_j = w_j σ'_j/σ_j,    b' = b + Σ_j w_j (μ'_j − μ_j)/σ_j

    over the features usable in both frames (others keep w_j), so that wᵀz + b is unchanged.
    AdaGrad's accumulators A_j (in units of g_j², g_j ∝ z_j) scale by (σ_j/σ'_j)².

    A feature in ``discarded`` (the standardiser's restart: σ_j was inflated by the walk of
    μ_j) was learned in a frame that did not describe it: z_j was far off centre, so w_j acted
    as a second intercept. Its weight and accumulator restart (w'_j = 0, A'_j = 0) and it
    adds nothing to b'; carried over, its term w_j (μ'_j − μ_j)/σ_j moved the offset stream's
    intercept by 0.3 (to −0.31 against 0.02 pre-centred), which took ≈ 1,000 samples to
    unlearn, and its A_j, scaled by (σ_j/σ'_j)² ≈ 8,000, froze AdaGrad's steps on it.
    """

    old: Frame
    new: Frame
    discarded: BoolArray | None = None  # shape (d,); None: none

    def factors(self) -> FloatArray:
        """σ'_j/σ_j where both are usable, else 1; shape (d,)."""
        both = (self.old.inverse_scale > 0.0) & (self.new.scale > 0.0)
        return np.where(both, self.new.scale * self.old.inverse_scale, 1.0)

    def _kept(self) -> BoolArray:
        """The features carried over: usable in both frames and not discarded (bool, (d,))."""
        both = (self.old.inverse_scale > 0.0) & (self.new.scale > 0.0)
        return both if self.discarded is None else both & ~self.discarded

    def theta(self, theta: FloatArray) -> FloatArray:
        """θ' for θ, shape (d + 1,) (a new array)."""
        w = theta[:-1]
        moved = (self.new.mean - self.old.mean) * self.old.inverse_scale
        kept = self._kept()
        intercept = theta[-1] + float(w[kept] @ moved[kept])
        weights = w * self.factors()
        if self.discarded is not None:
            weights[self.discarded] = 0.0
        return np.append(weights, intercept)

    def accumulators(self, accumulated: FloatArray) -> FloatArray:
        """A' for AdaGrad's A, shape (d + 1,) (the intercept's unchanged)."""
        factors = self.factors()
        scaled = accumulated[:-1] / (factors * factors)
        if self.discarded is not None:
            scaled[self.discarded] = 0.0
        return np.append(scaled, accumulated[-1])
