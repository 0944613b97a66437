"""Detect a change of the stream from the progressive loss, and restart the gradient
statistics at it (:class:`RunningGradientStatistics` of :mod:`.gradient_stats`).

Why. The noise statistics average up to ≈ 2/α_min steps when |G|² is small (the
neighbourhood of the optimum, where the controller has grown m). After a drift the true
|G|² jumps, but the learner re-converges within a few steps at a large m and η, so the slow
average of e_t = ‖ḡ + ρ‖² − T_t/m barely moves (on the demo stream: Ḡ² 0.0073 → 0.0091
while the steps' e_t were ≈ 0.1 for ≈ 9 steps) and m* = B(1 − θ²)/θ² never falls below m/4:
m never shrank. The steps' e_t alone are a weak signal (≈ 2 standard deviations each at
m = 64); the batch's mean loss is a strong one (≈ 10 standard deviations on the first step
after the demo stream's change), and a model that no longer fits the stream is what makes
the old window stale.

Rule (a one-sided CUSUM, Page 1954, on the standardised batch loss). With ℓ̄_t = (1/m) Σ ℓ_i
the batch's mean pre-step loss (a sum over samples), L̄ the EWMA (α = 0.01) of ℓ̄ and V̄ the
EWMA of m (ℓ̄_t − L̄_{t−1})² (the per-sample variance of the loss, so that a change of m
does not change the scale)::

    u_t = min( (ℓ̄_t − L̄_{t−1}) / √(V̄/m),  c ),    S_t = max(0, S_{t−1} + u_t − k)

with k = 1 (a shift of 2 standard deviations is detected fastest), c = 6 (one outlying batch
cannot raise S by more than 5) and an alarm when S_t > h = 8: at least two batches well
above the level. L̄ and V̄ move with deviations winsorised at 3 standard deviations, so that
a change does not inflate the scale it is measured against before it is detected; their
window (≈ 100 steps) is long against the few steps a detection takes, so that at m = 8,
where one batch's loss is noisy, a change is not absorbed into L̄ before S reaches h
(with α = 0.05 the demo stream's change went undetected under AdaGrad at m = 8).
On i.i.d. Gaussian batch losses no alarm was raised in 10⁵ steps; none on the stationary
benchmark streams (dense, sparse), one per change on the demo stream (4 seeds × 4 changes,
detected 2–5 steps after the change). Only increases are detected: a falling loss is
convergence. Real log losses are skewed (``bench/cusum_arl.py``, batches drawn i.i.d. from
the per-sample losses of ``auto`` runs, 2·10⁵ steps): at m = 8 and 32 no false alarm on the
dense, sparse or demo streams' losses (skewness ≈ 2), 2,700–9,500 steps between false alarms
at m = 1 (where the product does not run the detector); on Shuttle's (skewness ≈ 70: a few
confident mistakes of several nats) one every 700–1,100 steps at every m, and the product's
Shuttle run raises 2. c = 3, h = 12 raises none there, but detects the demo stream's changes
6–8 steps after them instead of 2–4 and costs its log loss 0.009, so h = 8 and c = 6 stay.

Acting on an alarm. The statistics restart at the alarm (m halves at once after a change),
but AdaGrad's accumulators shrink (:meth:`.optimizer.Optimizer.follow_alarms`) only once the
next batch confirms it, by a mean loss still ``CONFIRM_Z`` standard errors √(V̄/m) above the
in-control level L̄ of before the alarm (:func:`confirms`): a change keeps the loss up (the
demo stream: z = 5–13 on the batch after each alarm), a spike of a heavy-tailed loss falls
back at once (Shuttle's two false alarms: z = 1.9 and 1.0). Each false alarm acted upon
restarts the step sizes; Shuttle's two cost 0.0401 against 0.0386 without them.

The change point is estimated, as CUSUM does, as the last step at which S was 0; from there
on the detector keeps *candidate* estimates: the mean of the first 1/α₀ steps, then EWMAs
(α₀ of the statistics), of the steps' T_t, T_t/m, ‖ḡ‖², ‖ḡ + ρ‖², e_t and ℓ̄_t, with their own sum
of squared weights v. On an alarm the statistics adopt the candidates (everything before the
change point is forgotten, as if the statistics had started there), S ← 0 and L̄ ← the
candidate loss (the new level: the recovery that follows lowers the loss, it raises no
alarm). The per-step variance D of e_t is kept: it is estimated over many steps, so the
restarted estimate is tested (Ḡ² > z SE with SE = √(D v)) against a trustworthy spread
(the trusted gate's "10 effective steps" counts those behind D). A model with AdaGrad and a
controller also restarts its accumulators (:meth:`OnlineLogisticRegression.apply_step`).
No detection during the first 20 steps, where L̄ and V̄ are plain means (still settling).

Every input is a function of the batch sums (loss_sum, n_samples and the gradient sums),
so N replicas that add their sums detect the same changes at the same steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["LossChangeDetector", "StepEstimates", "confirms"]

LEVEL_SMOOTHING = 0.01  # α of L̄ and V̄
ALLOWANCE = 1.0  # k, in standard deviations
THRESHOLD = 8.0  # h
CLIP = 6.0  # c, the largest standardised increment of one step
ROBUST_CLIP = 3.0  # deviations beyond this many standard deviations move L̄ and V̄ as this
WARMUP_STEPS = 20  # steps before anything is detected
# z of the batch after an alarm, against the level before it, that confirms the alarm: the
# band in which the level absorbs deviations (ROBUST_CLIP). 2 and 4 measured the same.
CONFIRM_Z = 3.0


def confirms(level: float, spread: float, loss_sum: float, n_samples: int) -> bool:
    """Whether a batch confirms an alarm raised the step before: its mean loss ℓ̄ = loss_sum/m
    is at least ``CONFIRM_Z`` standard errors above the in-control level, ℓ̄ ≥ L̄ + z √(V̄/m)
    (L̄, V̄ the detector's level and spread before the alarm). False for a loss or a state
    that is not finite, or an empty batch."""
    if n_samples <= 0 or not spread >= 0.0 or not math.isfinite(loss_sum):
        return False
    return loss_sum / n_samples >= level + CONFIRM_Z * math.sqrt(spread / n_samples)


@dataclass
class StepEstimates:
    """One step's within-batch estimates, or EWMAs of them (:mod:`.gradient_stats`).

    Attributes
    ----------
    trace : float
        T = tr Σ̂ (per sample).
    estimator_variance : float
        T/m.
    mean_gradient_squared_norm : float
        ‖ḡ‖² (the loss part).
    objective_gradient_squared_norm : float
        ‖ḡ + ρ‖².
    true_gradient_squared_norm : float
        e = ‖ḡ + ρ‖² − T/m.
    loss : float
        ℓ̄, the batch's mean pre-step loss.
    """

    trace: float
    estimator_variance: float
    mean_gradient_squared_norm: float
    objective_gradient_squared_norm: float
    true_gradient_squared_norm: float
    loss: float

    def as_list(self) -> list[float]:
        return [
            self.trace,
            self.estimator_variance,
            self.mean_gradient_squared_norm,
            self.objective_gradient_squared_norm,
            self.true_gradient_squared_norm,
            self.loss,
        ]

    def moved_towards(self, other: StepEstimates, alpha: float) -> StepEstimates:
        """The EWMA step q ← q + α (other − q) of every field."""
        return StepEstimates(
            *(q + alpha * (o - q) for q, o in zip(self.as_list(), other.as_list(), strict=True))
        )


@dataclass
class Restart:
    """What the statistics adopt on an alarm: the candidate EWMAs and their v."""

    estimates: StepEstimates
    weight_square_sum: float


@dataclass
class LossChangeDetector:
    """CUSUM on the standardised batch loss, with candidate estimates since the estimated
    change point (formulas: module docstring).

    Attributes
    ----------
    level, spread : float
        L̄ and V̄ (NaN before the first step).
    cusum : float
        S.
    n_steps : int
        Steps observed.
    n_changes : int
        Alarms so far (each restarted the statistics).
    candidate : StepEstimates, optional
        The EWMAs since S last left 0 (None while S = 0).
    candidate_weight_square_sum : float
        v of the candidate EWMAs.
    """

    level: float = math.nan
    spread: float = math.nan
    cusum: float = 0.0
    n_steps: int = 0
    n_changes: int = 0
    candidate: StepEstimates | None = None
    candidate_weight_square_sum: float = math.nan

    # observe(): the per-step update (level, spread, S, the candidate) is compiled with the
    # statistics it feeds (:func:`._noise_update.fold_within_batch`); the rare branches
    # below are shared with it.
    def alarm(self) -> Restart:
        """Raise the alarm of a step whose S exceeded h: the candidate estimates to restart
        the statistics from; the level moves to the candidate's loss and S starts again."""
        assert self.candidate is not None  # set by _fold_candidate
        restart = Restart(self.candidate, self.candidate_weight_square_sum)
        self.n_changes += 1
        self.level = self.candidate.loss
        self.cusum = 0.0
        self.candidate, self.candidate_weight_square_sum = None, math.nan
        return restart

    def _fold_candidate(self, step: StepEstimates, smoothing: float) -> None:
        """The candidate EWMAs since the change point, with α_n = max(1/n, α₀) at the n-th
        step: the plain mean of the first 1/α₀ steps (v = 1/n), then the EWMA."""
        if self.candidate is None:
            self.candidate, self.candidate_weight_square_sum = step, 1.0
            return
        v = self.candidate_weight_square_sum
        alpha = max(v / (1.0 + v), smoothing)  # 1/n when v = 1/(n − 1)
        self.candidate = self.candidate.moved_towards(step, alpha)
        self.candidate_weight_square_sum = (1.0 - alpha) ** 2 * v + alpha * alpha

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        """JSON values only."""
        return {
            "level": self.level,
            "spread": self.spread,
            "cusum": self.cusum,
            "n_steps": self.n_steps,
            "n_changes": self.n_changes,
            "candidate": None if self.candidate is None else self.candidate.as_list(),
            "candidate_weight_square_sum": self.candidate_weight_square_sum,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> LossChangeDetector:
        """The detector of a state document (None: a fresh one, as states written before it
        existed resume); ValueError or KeyError for a malformed one."""
        if state is None:
            return cls()
        candidate = state["candidate"]
        if candidate is not None:
            values = [float(value) for value in candidate]
            if len(values) != 6:
                raise ValueError("change detector: expected 6 candidate estimates")
            candidate = StepEstimates(*values)
        counts = []
        for key in ("n_steps", "n_changes"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"change detector {key}: expected a count")
            counts.append(value)
        return cls(
            float(state["level"]),
            float(state["spread"]),
            float(state["cusum"]),
            counts[0],
            counts[1],
            candidate,
            float(state["candidate_weight_square_sum"]),
        )
