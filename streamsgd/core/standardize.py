"""Scale-invariant steps: online standardisation of dense features from mergeable sums.

With ``standardize=True`` the model learns on standardised features and keeps its weights
w in that space; :meth:`Standardizer.raw_parameters` re-expresses them for raw features::

    z_j = (x_j − μ_j) / σ_j,          p(y=1 | x) = σ(wᵀz + b) = σ(aᵀx + c),
    a_j = w_j / σ_j,                  c = b − Σ_j a_j μ_j

(``coef_`` = a, ``intercept_`` = c). A feature without a usable scale yet — fewer than 2
samples, or a constant one (σ_j ≤ ``RELATIVE_SCALE_FLOOR`` |μ_j|, which also absorbs the
round-off σ of a constant) — has 1/σ_j := 0: z_j = 0, the model does not use it, a_j = 0.

Order (progressive, so the pre-step score is honest): a batch is standardised with the
statistics from *before* it, scored and learned; only after its step is applied are its
rows folded into the statistics (a skipped step folds nothing). So μ, σ move between
steps and the raw-space function aᵀx + c moves with them while w stays put: w is *not*
re-parameterised. Reasons: the step is taken where the problem is well conditioned, which
is the point; μ and σ change by O(1/n) per sample once warm, so the drift of the function
vanishes as the statistics converge; AdaGrad's accumulators stay in the units of w; and it
is what River's ``StandardScaler | LogisticRegression`` (the peer of the benchmark) does.

Statistics: per feature the count n, the mean μ and M2 = Σ (x − μ)², kept from additive
per-batch sums of deviations from the shift K = μ (the mean before the batch)::

    S₁ = Σ_i (x̃_i − K),   S₂ = Σ_i (x̃_i − K)²        (sums over the batch's m samples)
    n' = n + m,   μ' = K + S₁ / n',   M2' = M2 + S₂ − S₁² / n'

which is exact for any split of the data (the shifted-data form of Chan, Golub and LeVeque
1979, :meth:`Standardizer.fold`), and numerically stable because the deviations are taken
from the running mean. N replicas that share the state add their (m, S₁, S₂)
(:class:`MomentSums` ``+``) before one fold. σ_j = √(M2_j / (n − 1)). The model's very
first batch is shifted by the prior centre K = 0 (a first row as the shift could be a
hostile one): a feature whose |mean| exceeds its standard deviation by a factor F loses
about 2 log₁₀ F digits of M2 in that batch only.

Bounded influence: x̃_i is the row as the model learned it — with κ = ``clip_norm_ratio``
> 0, z_i scaled by the row clip c_i = min(1, κ s / ‖[z_i ; 1]‖) of :mod:`.row_scale`
(s the model's running row scale) — mapped back, x̃_i − K = σ ⊙ c_i z_i. So one record
moves μ_j by at most κ s σ_j / n' and adds at most (κ s σ_j)² to M2_j, whatever its values
(1e300 included). A feature without a scale yet enters with its deviation clipped to
±κ s: a unit-scale prior, as s₀ = √(d + 1) of the row scale (a feature far from 0 in
units of κ s, e.g. a year, thus starts with a too large σ that decays as 1/n). With κ = 0
nothing is clipped, and a batch whose sums overflow is left out of the statistics.

Importance weights weight the gradient, not the statistics (every learned row counts once).
:func:`.sequential.learn_sequence` runs the per-sample ``learn_batch`` loop with
standardisation (μ, σ move after every step: no fixed Gram recursion).

Sparse hashed features (:class:`SparseRows`) are not supported: centring destroys their
sparsity, and their per-coordinate scale is what AdaGrad (or VW's normalised updates,
Ross, Mineiro and Langford 2013) already adapts to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .sparse import SparseRows
from .types import FloatArray, IndexArray
from .validation import Features

RELATIVE_SCALE_FLOOR = 1e-7
"""σ_j ≤ this × |μ_j| counts as constant (1/σ_j := 0)."""

MIN_SCALE = 1e-300
"""σ_j ≤ this counts as constant too (1/σ_j would overflow)."""

SCORE_LIMIT = 1e300
"""|z_j| of a finite input is capped here (x far beyond σ overflows (x − μ)/σ otherwise);
the row clip then bounds the row. Non-finite inputs stay non-finite (their step is skipped)."""

SPARSE_UNSUPPORTED = (
    "standardize supports dense features only (hashed sparse features: use optimizer='adagrad')"
)


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


class InputFrame:
    """The identity: raw features in, raw parameters out (``standardize=False``).

    :class:`Standardizer` overrides every method; the model calls them unconditionally.
    """

    enabled = False

    def transform(self, X: Features) -> Features:
        """The features the model scores, shape (m, d): X itself."""
        return X

    def scores(self, X: Features, theta: FloatArray) -> FloatArray:
        """wᵀz_i + b for the rows of :meth:`transform` (X), shape (m,)."""
        w, b = theta[:-1], theta[-1]
        features = self.transform(X)
        if isinstance(features, SparseRows):
            return features.matvec(w) + b
        return features @ w + b

    def learning_frame(self, X: Features) -> Frame | None:
        """The frame a batch about to be learned is standardised with (None: none)."""
        return None

    def fold_batch(self, sums: MomentSums | None) -> None:
        """Fold a learned batch's moment sums into the statistics (nothing to do)."""

    def raw_parameters(self, theta: FloatArray) -> FloatArray:
        """θ for raw features: θ itself."""
        return theta

    def get_state(self) -> dict[str, Any] | None:
        return None

    def restored(self, state: dict[str, Any] | None) -> InputFrame:
        """This frame's kind with ``state`` (:meth:`get_state`) adopted: the identity
        ignores stored statistics (the model was restored with ``standardize`` off)."""
        return self


class Standardizer(InputFrame):
    """Running per-feature mean and scale, and the standardisation they define.

    Parameters
    ----------
    n_features : int
        d.
    """

    enabled = True

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.n_samples = 0
        self.mean: FloatArray = np.zeros(n_features)
        self.squared_deviations: FloatArray = np.zeros(n_features)  # M2
        self.frame = frame_of(0, self.mean, self.squared_deviations)

    def transform(self, X: Features) -> Features:
        """z = (x − μ) ⊙ (1/σ) per row, shape (m, d), with the current frame.

        Raises
        ------
        ValueError
            X is :class:`SparseRows` (see the module doc).
        """
        if isinstance(X, SparseRows):
            raise ValueError(SPARSE_UNSUPPORTED)
        frame = self.frame
        with np.errstate(over="ignore", invalid="ignore"):
            Z = (X - frame.mean) * frame.inverse_scale
            # One sum tells whether anything is not finite (rarely a false alarm: finite
            # values whose sum overflows); only then look for the entries to cap.
            if not math.isfinite(float(Z.sum())):
                overflowed = np.isinf(Z) & np.isfinite(X)
                Z[overflowed] = np.copysign(SCORE_LIMIT, Z[overflowed])
        return Z

    def learning_frame(self, X: Features) -> Frame:
        """The frame in force: the minibatch kernel standardises the batch with it and sums
        its moments in the same pass (``BatchSums.moments``, S₁ and S₂ of the rows as
        learned, x̃_i − μ = σ ⊙ c_i z_i; an unscaled feature: x_i − μ clipped to ±κ s).

        Raises
        ------
        ValueError
            X is :class:`SparseRows` (see the module doc).
        """
        if isinstance(X, SparseRows):
            raise ValueError(SPARSE_UNSUPPORTED)
        return self.frame

    def fold_batch(self, sums: MomentSums | None) -> None:
        """Fold a learned batch's moment sums (called once its step is applied)."""
        if sums is not None:
            self.fold(sums)

    def fold(self, sums: MomentSums) -> None:
        """Merge a batch's sums into (n, μ, M2) (Chan, Golub and LeVeque 1979)::

            μ_b = K + S₁/m,  M2_b = max(S₂ − S₁²/m, 0),  δ = μ_b − μ,  n' = n + m,
            μ' = μ + δ m/n',  M2' = M2 + M2_b + δ² n m/n'

        (with K = μ this is μ' = μ + S₁/n', M2' = M2 + S₂ − S₁²/n'). Sums that are not
        finite are left out. Replaces :attr:`frame`.
        """
        m = sums.n_samples
        if m == 0:
            return
        s1, s2 = sums.deviation_sum, sums.squared_deviation_sum
        n_total = self.n_samples + m
        with np.errstate(over="ignore", invalid="ignore"):
            if sums.shift is self.mean:  # the model's batches: K = μ, the short form
                mean = self.mean + s1 * (1.0 / n_total)
                increment = np.maximum(s2 - s1 * s1 * (1.0 / n_total), 0.0)  # ≥ 0 exactly
                m2 = self.squared_deviations + increment
            else:
                batch_m2 = np.maximum(s2 - s1 * s1 / m, 0.0)  # ≥ 0 exactly; round-off
                delta = sums.shift + s1 / m - self.mean
                mean = self.mean + delta * (m / n_total)
                shift_term = delta * delta * (self.n_samples * m / n_total)
                m2 = self.squared_deviations + batch_m2 + shift_term
            if not math.isfinite(float(mean.sum() + m2.sum())):
                if not (np.isfinite(mean).all() and np.isfinite(m2).all()):
                    return
        self.n_samples, self.mean, self.squared_deviations = n_total, mean, m2
        self.frame = frame_of(n_total, mean, m2)

    def deviation_sums(self, rows: FloatArray) -> MomentSums:
        """(m, K, S₁, S₂) of given rows (already bounded): K = μ, or the first row while
        n = 0 (so that even the first batch is summed from a shift inside its own spread).
        What a replica sends; ``fold(a + b)`` equals folding the union's rows."""
        shift = self.mean if self.n_samples or not len(rows) else rows[0].copy()
        return MomentSums.from_deviations(rows - shift, shift)

    @property
    def scale(self) -> FloatArray:
        """σ per feature (0 where not usable yet), shape (d,)."""
        return self.frame.scale

    def raw_parameters(self, theta: FloatArray) -> FloatArray:
        """[a ; c] with a = w ⊙ (1/σ), c = b − aᵀμ, shape (d + 1,)."""
        frame = self.frame
        raw = np.empty_like(theta)
        np.multiply(theta[:-1], frame.inverse_scale, out=raw[:-1])
        raw[-1] = theta[-1] - float(raw[:-1] @ frame.mean)
        return raw

    def get_state(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "mean": self.mean.copy(),
            "squared_deviations": self.squared_deviations.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], n_features: int) -> Standardizer:
        """Rebuild from :meth:`get_state` (bit for bit).

        Raises
        ------
        ValueError
            Wrong shapes, a count < 0, a non-finite value or a negative M2.
        """
        n_samples = state["n_samples"]
        mean = np.array(state["mean"], dtype=np.float64)
        squared_deviations = np.array(state["squared_deviations"], dtype=np.float64)
        if not (isinstance(n_samples, int) and n_samples >= 0):
            raise ValueError(f"standardizer state has an invalid count {n_samples!r}")
        if mean.shape != (n_features,) or squared_deviations.shape != (n_features,):
            raise ValueError("standardizer state has arrays of the wrong shape")
        if not (np.isfinite(mean).all() and np.isfinite(squared_deviations).all()):
            raise ValueError("standardizer state holds non-finite values")
        if (squared_deviations < 0.0).any():
            raise ValueError("standardizer state holds a negative sum of squares")
        standardizer = cls(n_features)
        standardizer.n_samples = n_samples
        standardizer.mean = mean
        standardizer.squared_deviations = squared_deviations
        standardizer.frame = frame_of(n_samples, mean, squared_deviations)
        return standardizer

    def restored(self, state: dict[str, Any] | None) -> InputFrame:
        """A standardiser with ``state`` adopted, or a fresh one when there is none (the
        model was restored with ``standardize`` newly on: statistics start from zero)."""
        return (
            Standardizer(self.n_features)
            if state is None
            else self.from_state(state, self.n_features)
        )


def input_frame(n_features: int, standardize: bool) -> InputFrame:
    """A fresh :class:`Standardizer` of d = ``n_features``, or the identity."""
    return Standardizer(n_features) if standardize else InputFrame()
