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
±κ s: a unit-scale prior, as s₀ = √(d + 1) of the row scale. With κ = 0 nothing is
clipped, and a batch whose sums overflow is left out of the statistics.

Restart after warm-up. A feature far from 0 in units of κ s (a year, a timestamp, a price:
2000 ± 10) enters its first batches clipped, so μ starts far off and walks to its value,
and that walk stays in the statistics: μ's error and the excess of M2 decay like 1/n, σ's
excess like n^−½ (σ 4.2× too large at 200 k samples for 2000 ± 10). So once, when n reaches
``RESTART_AFTER`` samples, the standardiser starts fresh statistics (n = 0, M2 = 0) from
the same sums, shifted by the μ of that moment, while the old ones keep defining the frame;
when the fresh ones hold ``RESTART_SWITCH`` samples they replace the old ones if they show
the walk (some σ_j more than ``RESTART_EVIDENCE`` times its fresh value; else they are
dropped and the old statistics, which hold more samples, stay), and the model re-expresses
θ in the new frame (:class:`Reframe`: w_j σ'_j/σ_j and the intercept for the moved μ, so
that the function aᵀx + c is unchanged at the switch; a walked feature's weight and
accumulator restart at 0 instead, learned as they were in a frame that did not describe
it). Every decision depends on n and the statistics only, which every replica and a
restarted run share, so the restart is replicated and restart-exact.

Importance weights weight the gradient, not the statistics (every learned row counts once).
:func:`.sequential.learn_sequence` runs the per-sample ``learn_batch`` loop with
standardisation (μ, σ move after every step: no fixed Gram recursion).

Sparse hashed features (:class:`SparseRows`) are not supported: centring destroys their
sparsity, and their per-coordinate scale is what AdaGrad (or VW's normalised updates,
Ross, Mineiro and Langford 2013) already adapts to.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .moments import (
    MIN_SCALE,
    RELATIVE_SCALE_FLOOR,
    SCORE_LIMIT,
    Frame,
    MomentSums,
    Reframe,
    frame_of,
    walked,
)
from .sparse import SparseRows
from .types import FloatArray
from .validation import Features

__all__ = [
    "MIN_SCALE",
    "RELATIVE_SCALE_FLOOR",
    "SCORE_LIMIT",
    "Frame",
    "InputFrame",
    "MomentSums",
    "Reframe",
    "Standardizer",
    "frame_of",
    "input_frame",
    "walked",
]

SPARSE_UNSUPPORTED = (
    "standardize supports dense features only (hashed sparse features: use optimizer='adagrad')"
)


class InputFrame:
    """The identity: raw features in, raw parameters out (``standardize=False``).

    :class:`Standardizer` overrides every method; the model calls them unconditionally.
    """

    enabled = False
    settled = True
    """Whether rows far above κs may keep up to ``row_scale.GRADIENT_RATIO`` κs of gradient:
    not while a standardiser warms up (:attr:`Standardizer.settled`)."""

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

    def fold_batch(self, sums: MomentSums | None) -> Reframe | None:
        """Fold a learned batch's moment sums into the statistics (nothing to do)."""
        return None

    def raw_parameters(self, theta: FloatArray) -> FloatArray:
        """θ for raw features: θ itself."""
        return theta

    def get_state(self) -> dict[str, Any] | None:
        return None

    def restored(self, state: dict[str, Any] | None) -> InputFrame:
        """This frame's kind with ``state`` (:meth:`get_state`) adopted: the identity
        ignores stored statistics (the model was restored with ``standardize`` off)."""
        return self


RESTART_AFTER = 128
"""n from which the statistics restart once (module docstring), at the first batch that
the frame holds: every feature has a scale and |batch mean − μ_j| ≤ ``RESTART_Z`` σ_j."""

RESTART_Z = 3.0
"""The walk of μ is over (relative to σ) when a batch's mean is this close to μ: earlier,
the batch's rows are still clipped and the restarted statistics as far off as the old (a
restart at n = 64, m = 32, or after 4 batches of m = 256, changed nothing)."""

RESTART_SWITCH = 32
"""Samples the restarted statistics hold before they define the frame."""

RESTART_EVIDENCE = 2.0
"""The restarted statistics replace the old ones only when they show the walk: some feature's
old σ_j exceeds its restarted σ'_j by this factor (the offset stream of
``bench.standardize_offset``: 29x at 1 k samples). Otherwise they are dropped and the old
statistics, which hold more samples, stay: 32 samples estimate σ_j to about ±13 % (normal
data), so 2x is far outside their noise, while replacing 150 samples' statistics by 32
samples' cost Phishing 0.006 in log loss (0.3051 → 0.3108) with nothing to undo."""


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
        self.restarted = False  # whether the one restart has begun
        # The restarted statistics (n, μ, M2) while they do not define the frame yet.
        self.fresh: tuple[int, FloatArray, FloatArray] | None = None

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

    @property
    def settled(self) -> bool:  # type: ignore[override]
        """Whether the one restart has been decided. Before, a row far above κs is typically a
        feature off centre (the walk of μ), whose gradient is noise: it keeps c_i = κs/‖v_i‖
        (``bench.standardize_offset``, m = 32, seeds 0–4, 10 k samples: 0.0045 / 0.0015 /
        0.0183 / 0.0078 / 0.0043, with the 3κs band from the start 0.0104 / 0.0016 / 0.0512 /
        0.0230 / 0.0098)."""
        return self.restarted and self.fresh is None

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

    def fold_batch(self, sums: MomentSums | None) -> Reframe | None:
        """Fold a learned batch's moment sums (called once its step is applied), with the
        one restart of the module docstring; returns the :class:`Reframe` the model must
        apply to θ when the frame switches to the restarted statistics, else None."""
        if sums is None:
            return None
        if not self.restarted and self._holds(sums):
            self.restarted = True
            self.fresh = (0, self.mean, np.zeros(self.n_features))
        fresh = self.fresh
        self.fold(sums)
        if fresh is None:
            return None
        merged = merge(*fresh, sums)
        self.fresh = fresh = merged if merged is not None else fresh
        if fresh[0] < RESTART_SWITCH:
            return None
        self.fresh = None
        new_frame = frame_of(*fresh)
        walk = walked(self.frame, new_frame, RESTART_EVIDENCE)
        if not walk.any():
            return None  # nothing to undo: the statistics that hold more samples stay
        old = self.frame
        self.n_samples, self.mean, self.squared_deviations = fresh
        self.frame = new_frame
        return Reframe(old, self.frame, walk)

    def _holds(self, sums: MomentSums) -> bool:
        """Whether to restart at this batch: n ≥ ``RESTART_AFTER``, every feature has a
        scale and the batch's mean is within ``RESTART_Z`` σ_j of μ_j (K = μ)."""
        frame = self.frame
        if self.n_samples < RESTART_AFTER or len(frame.unscaled) or not sums.n_samples:
            return False
        mean_z = np.abs(sums.deviation_sum) * (frame.inverse_scale / sums.n_samples)
        return bool(float(mean_z.max()) <= RESTART_Z)

    def fold(self, sums: MomentSums) -> None:
        """Merge a batch's sums into (n, μ, M2) (Chan, Golub and LeVeque 1979)::

            μ_b = K + S₁/m,  M2_b = max(S₂ − S₁²/m, 0),  δ = μ_b − μ,  n' = n + m,
            μ' = μ + δ m/n',  M2' = M2 + M2_b + δ² n m/n'

        (with K = μ this is μ' = μ + S₁/n', M2' = M2 + S₂ − S₁²/n'). Sums that are not
        finite are left out. Replaces :attr:`frame`.
        """
        merged = merge(self.n_samples, self.mean, self.squared_deviations, sums)
        if merged is not None:
            self.n_samples, self.mean, self.squared_deviations = merged
            self.frame = frame_of(*merged)

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
        fresh = self.fresh
        return {
            "n_samples": self.n_samples,
            "mean": self.mean.copy(),
            "squared_deviations": self.squared_deviations.copy(),
            "restarted": self.restarted,
            "fresh": None
            if fresh is None
            else {
                "n_samples": fresh[0],
                "mean": fresh[1].copy(),
                "squared_deviations": fresh[2].copy(),
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], n_features: int) -> Standardizer:
        """Rebuild from :meth:`get_state` (bit for bit).

        Raises
        ------
        ValueError
            Wrong shapes, a count < 0, a non-finite value or a negative M2.
        """
        standardizer = cls(n_features)
        standardizer.n_samples, standardizer.mean, standardizer.squared_deviations = _statistics(
            state, n_features
        )
        standardizer.frame = frame_of(
            standardizer.n_samples, standardizer.mean, standardizer.squared_deviations
        )
        standardizer.restarted = bool(state["restarted"])
        fresh = state["fresh"]
        standardizer.fresh = None if fresh is None else _statistics(fresh, n_features)
        return standardizer

    def restored(self, state: dict[str, Any] | None) -> InputFrame:
        """A standardiser with ``state`` adopted, or a fresh one when there is none (the
        model was restored with ``standardize`` newly on: statistics start from zero)."""
        return (
            Standardizer(self.n_features)
            if state is None
            else self.from_state(state, self.n_features)
        )


def _statistics(state: dict[str, Any], n_features: int) -> tuple[int, FloatArray, FloatArray]:
    """(n, μ, M2) of a state document, checked (ValueError: wrong shapes, a count < 0, a
    non-finite value or a negative M2)."""
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
    return n_samples, mean, squared_deviations


def merge(
    n_samples: int, mean: FloatArray, squared_deviations: FloatArray, sums: MomentSums
) -> tuple[int, FloatArray, FloatArray] | None:
    """(n', μ', M2') of :meth:`Standardizer.fold`; None when the batch is empty or its sums
    are not finite (left out)."""
    m = sums.n_samples
    if m == 0:
        return None
    s1, s2 = sums.deviation_sum, sums.squared_deviation_sum
    n_total = n_samples + m
    with np.errstate(over="ignore", invalid="ignore"):
        if sums.shift is mean:  # the model's batches: K = μ, the short form
            new_mean = mean + s1 * (1.0 / n_total)
            increment = np.maximum(s2 - s1 * s1 * (1.0 / n_total), 0.0)  # ≥ 0 exactly
            m2 = squared_deviations + increment
        else:
            batch_m2 = np.maximum(s2 - s1 * s1 / m, 0.0)  # ≥ 0 exactly; round-off
            delta = sums.shift + s1 / m - mean
            new_mean = mean + delta * (m / n_total)
            shift_term = delta * delta * (n_samples * m / n_total)
            m2 = squared_deviations + batch_m2 + shift_term
        if not math.isfinite(float(new_mean.sum() + m2.sum())):
            if not (np.isfinite(new_mean).all() and np.isfinite(m2).all()):
                return None
    return n_total, new_mean, m2


def input_frame(n_features: int, standardize: bool) -> InputFrame:
    """A fresh :class:`Standardizer` of d = ``n_features``, or the identity."""
    return Standardizer(n_features) if standardize else InputFrame()
