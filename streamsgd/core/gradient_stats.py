"""Running estimates of the gradient noise: tr Σ, |G|², the noise scale, the norm test.

Notation (docs/design.md, The math): g_i ∈ R^(d+1) is the per-sample gradient of the loss
(importance weights included, normalised by m: see :mod:`.batch_sums`), ḡ = (1/m) Σ_i g_i,
ρ = λ₂ [w ; 0] the gradient of the L2 term (the intercept is not regularised). The
statistics are those of the *objective* J(w) = E ℓ + λ₂‖w‖²/2, whose per-sample gradient is
g_i + ρ: G = ∇J(w) = E g + ρ, Σ = Cov(g_i) (unchanged by ρ, the same for every sample).

Per step t with m ≥ 2 (within-batch, unbiased when the m samples are i.i.d. draws)::

    T_t = tr Σ̂ = (Σ‖g_i‖² − m‖ḡ‖²)/(m − 1)          E T_t = tr Σ
    e_t = ‖ḡ + ρ‖² − T_t/m                           E e_t = |G|²

and each is smoothed by an EWMA q̄ ← q̄ + α_t (q − q̄) with α_t = max(α, 1/n) at the n-th
step of a run: the plain mean of the first 1/α steps, then the EWMA (a first value, such as
a warming-up standardiser's batch of zeros, must not weigh as 1/α steps: with α = α_min it
held T̄ near 0.3 for 2,000 steps and m at 8 for 18,000 samples of the dense stream). The
weights ω_k sum to 1; v = Σ ω_k² is tracked exactly (v ← (1 − α_t)² v + α_t², v = 1/n in
the mean phase, v → α/(2 − α) for a constant α), so Var(q̄) = v·Var(q) for independent
steps, and 1/v is the effective number of steps averaged.

* Noise scale (McCandlish et al. 2018): B = T̄ / Ḡ² (ratio of the smoothed estimates).
* Standard error of Ḡ² = ē: SE = √(D̃·u) with D̃ the EWMA of m_t² (e_t − ē_{t−1})²/(1 + m_t² u)
  and u = Σ ω_k²/m_k² (u ← (1 − α_t)² u + α_t²/m_t²). Noise-dominated, Var e_t ≈ D̃/m_t²
  (Var‖ḡ‖² ≈ 2 tr Σ²/m²), so D̃ is a per-sample constant that steps of different m estimate
  alike, and Var ē = Σ ω_k² D̃/m_k² = D̃ u; the divisor removes the variance of ē_{t−1}. At
  a constant m, SE = √(D v) with D the per-step variance. (A per-step D mixed the steps of
  a growing m: on a stream with B = 2000 it was ≈ 8× too large at m = 128, and the estimate
  was trusted in 25 % of its last 1,000 steps; with D̃, 100 %.)
* Trusted (:attr:`RunningGradientStatistics.trusted`) when Ḡ² > z·SE with z = 2
  (one-sided, ≈ 2.3 % false alarms on pure noise per independent window), T̄ > 0, at
  least 10 effective steps behind SE (1/v ≥ 10, or D̃'s own 1/v_D ≥ 10 after a restart at
  a detected change, :mod:`.drift`), and the window covers the noise scale:
  W = m/v samples ≥ B (W = m(2 − α)/α for a constant α). Only then is B reported; else NaN.
* Lower bound B̂ = T̄/(Ḡ² + z·SE) (:attr:`RunningGradientStatistics.noise_scale_lower_bound`):
  below B with probability ≈ 97.7 % (the one-sided upper bound of |G|²); given with the
  gate's evidence (T̄ > 0, 1/v ≥ 10) and W ≥ B̂, also while Ḡ² is not significant.
* Norm test (Byrd et al. 2012): ratio = smoothed(T/m) / smoothed(‖ḡ + ρ‖²), passes at ≤ θ².

Window widening: after each applied step with m ≥ 2 (and every 32nd m = 1 step, from the
loss part of Ḡ²: :func:`.single_steps.window_estimate`) α is re-chosen as the largest α₀/2^k
(k = 0, 1, …; α₀ = ``smoothing``), not below α_min = ``min_smoothing`` (default 0.002), with

* m(2 − α)/α ≥ B̂, the *smallest* noise scale the estimates support (the window covers the
  noise scale; B̂ = ∞ when Ḡ² + z·SE ≤ 0), and
* Ḡ² > 2·z·SE_α, SE_α = SE·√(v_α/v), v_α = α/(2 − α): at that window Ḡ² would be
  significant with a margin of 2 (Ḡ² ≤ 0: never, so α = α_min).

A noisy problem (B ≫ m, in particular m = 1, or the neighbourhood of the optimum) thus
averages up to ≈ 2m/α_min samples; α grows back as soon as the estimate is clearly
significant. The window depends on past estimates, which biases Ḡ² downwards (a low estimate
widens the window and is kept longer); the margins keep that bias within the estimate's
standard error (tests/test_gradient_stats.py). The trusted gate selects estimates above
z·SE, which biases a barely trusted B̂ downwards; the margin of 2 in the window rule makes
trusted estimates typically well above the gate.

m = 1 (no within-batch variance, until a batch with m ≥ 2 is seen): EWMAs M of g_t and
S of ‖g_t‖² (same weights, so E M = E g, Var M = v Σ) give T̄ = (S − ‖M‖²)/(1 − v) and
Ḡ² = ‖M + ρ‖² − v·T̄ (unbiased for stationary g_t; ρ at the weights after the step), with
SE² = 2 v² T̄² + 4 v max(Ḡ², 0) T̄ (a Gaussian bound on Var‖M‖²: tr Σ² ≤ (tr Σ)²,
GᵀΣG ≤ |G|² tr Σ), and ‖ḡ + ρ‖² smoothed = Ḡ² + T̄.

Assumptions (docs/design.md, The math): i.i.d. samples and steps (a stream ordered by time
or label violates it); under drift the estimates lag by ≈ 1/α steps, unless :mod:`.drift`
detects the change and restarts them; the weights move during a window (G, Σ blend the
window's weights); a file read once without replacement (N samples) biases e_t by
−tr Σ/(N − 1) relative to the file's own objective.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import noise_scale as _scale
from ._noise_update import choose_window, fold_within_batch
from .batch_sums import BatchSums, ewma_closed_form, state_count
from .drift import LossChangeDetector, Restart
from .noise_scale import MIN_EFFECTIVE_STEPS, TRUST_Z
from .noise_state import MEAN_STEPS_CAP, MIN_SMOOTHING, STATE_FLOATS, NoiseStatistics
from .single_steps import SINGLE_STEP_REFRESH, ewma, fold_single_step, window_estimate
from .state_format import upgrade_statistics_state
from .types import FloatArray

__all__ = [
    "MEAN_STEPS_CAP",
    "MIN_EFFECTIVE_STEPS",
    "MIN_SMOOTHING",
    "TRUST_Z",
    "BatchSums",
    "RunningGradientStatistics",
    "ewma_closed_form",
    "state_count",
]

_ewma = ewma  # the name tests/support/noise_oracle.py uses


class RunningGradientStatistics(NoiseStatistics):
    """Exponentially weighted running estimates of the gradient noise across steps (the
    formulas, the trusted gate and the window rule are in the module docstring; the fields
    are those of :class:`.noise_state.NoiseStatistics`, the derived values those of
    :mod:`.noise_scale`).
    """

    def update(self, sums: BatchSums, regularization: FloatArray | None = None) -> None:
        """Fold one applied minibatch into the running estimates. O(d).

        ``regularization`` is ρ = λ₂ [w ; 0] (None without an L2 term): for m ≥ 2 at the
        weights the batch was scored with, for m = 1 at the weights after the step.
        m ≥ 2: the within-batch estimates, the change detector and the window rule, compiled
        (:func:`._noise_update.fold_within_batch`: ≈ 6 µs a step in Python).
        """
        if sums.n_samples >= 2:
            fold_within_batch(self, sums, regularization)
            return
        fold_single_step(self, sums, regularization)
        if self.single_steps >= SINGLE_STEP_REFRESH:
            self._choose_window(self.window_batch_size or 1, window_estimate(self))

    def _restart(self, restart: Restart) -> None:
        """A change of the stream was detected (:mod:`.drift`): the estimates start again
        at its estimated change point; D, estimated over many steps, is kept."""
        estimates = restart.estimates
        self.per_sample_variance = estimates.trace
        self.estimator_variance = estimates.estimator_variance
        self.mean_gradient_squared_norm = estimates.mean_gradient_squared_norm
        self.objective_gradient_squared_norm = estimates.objective_gradient_squared_norm
        self.true_gradient_squared_norm = estimates.true_gradient_squared_norm
        self.weight_square_sum = restart.weight_square_sum
        m = self.window_batch_size  # the candidate's steps are recent: of about this m
        self.scaled_weight_square_sum = restart.weight_square_sum / (m * m)
        self.within_batch_steps = MEAN_STEPS_CAP  # the mean phase starts a run only

    def _choose_window(self, m: int, g2: float) -> None:
        """α ← the largest α₀/2^k ≥ α_min whose window covers B̂ = T̄/(g2 + z·SE) and
        would make g2 significant with a margin of 2 (module docstring; compiled, one
        implementation for both paths: :func:`._noise_update.choose_window`)."""
        choose_window(self, m, g2)

    # ------------------------------------------------------------------ derived
    @property
    def window_samples(self) -> float:
        """W = m/v, the samples the |G|² estimate effectively averages (NaN before any)."""
        return _scale.window_samples(self)

    @property
    def standard_error(self) -> float:
        """SE of Ḡ² (module docstring); NaN until defined (or for a state that is not)."""
        return _scale.standard_error(self)

    def _evidence(self) -> tuple[float, float, float] | None:
        """(T̄, Ḡ², SE) once T̄ > 0 and SE rests on 1/v ≥ 10 effective steps, else None."""
        return _scale.evidence(self)

    @property
    def trusted(self) -> bool:
        """Ḡ² > 2·SE, T̄ > 0, 1/v ≥ 10 and W ≥ B (module docstring)."""
        return _scale.trusted(self)

    @property
    def noise_scale_lower_bound(self) -> float:
        """B̂ = T̄/(Ḡ² + z·SE), a one-sided lower confidence bound on B (z = 2), when the
        evidence :attr:`trusted` asks for holds and the window covers B̂ (else NaN)."""
        return _scale.noise_scale_lower_bound(self)

    @property
    def noise_scale(self) -> float:
        """B = T̄/Ḡ² when :attr:`trusted` (then finite and > 0), else NaN."""
        return _scale.noise_scale(self)

    @property
    def norm_test_ratio(self) -> float:
        """smoothed(tr Σ̂/m) / smoothed(‖ḡ + ρ‖²); the Byrd norm test passes when ≤ θ².
        NaN until defined or when the denominator is 0 (never infinite)."""
        return _scale.norm_test_ratio(self)

    # ------------------------------------------------------------------ state
    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunningGradientStatistics:
        """The statistics of ``state`` (earlier layouts upgraded by :mod:`.state_format`)."""
        state = upgrade_statistics_state(state)
        stats = cls(
            smoothing=float(state["smoothing"]), min_smoothing=float(state["min_smoothing"])
        )
        for key in STATE_FLOATS:
            setattr(stats, key, float(state[key]))
        mean = state["mean_gradient"]
        stats.mean_gradient = None if mean is None else np.asarray(mean, dtype=np.float64)
        stats.last_batch_size = int(state["last_batch_size"])
        stats.window_batch_size = state_count(state["window_batch_size"])
        stats.single_steps = state_count(state["single_steps"])
        stats._within_batch_seen = bool(state["within_batch_seen"])
        stats.within_batch_steps = state_count(state["within_batch_steps"])
        stats.change = LossChangeDetector.from_state(state["change"])
        return stats
