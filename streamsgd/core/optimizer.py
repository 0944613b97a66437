"""The optimiser of the estimator: η_t's schedule, plain SGD or AdaGrad, the L2 and L1 terms.

It owns AdaGrad's accumulators A ∈ R^(d+1) and turns a batch's sums into a proposed θ
(:func:`.step.propose_step`, compiled); the model (:mod:`.model`) owns θ and decides whether
the proposal is adopted (a non-finite one is not)::

    plain SGD:  w ← prox_{η λ₁}( w − η (ḡ_w + λ₂ w) ),   b ← b − η ḡ_b
    AdaGrad:    A ← γ^m A + ḡ²,  θ_j ← θ_j − η ḡ_j / (√A_j + ε)   (λ₁'s threshold scaled alike)

γ = 2^(−1/h) forgets A with a half-life of h samples (h = 0: γ = 1, never: AdaGrad's
steps then shrink like 1/√n and cannot follow a drifting stream). γ^m depends on m only,
so replicas that take the same step hold the same A, and a checkpoint holds h.

with ḡ the mean of the per-sample gradients (``reduction="mean"``) or their sum (``"sum"``,
with m λ₁, m λ₂). AdaGrad under the noise controller (``auto``) always steps on the sum
(:meth:`Optimizer.step_reduction`): A ← γ^m A + (m ḡ)², θ_j ← θ_j − η m ḡ_j/(√A_j + ε),
AdaGrad on ḡ with the rate η·m, not a mean-gradient step (at a fixed m the two are the same
step, AdaGrad being scale-invariant; when m changes the per-sample step stays).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .batch_sums import BatchSums
from .drift import LossChangeDetector, confirms
from .gradient_stats import RunningGradientStatistics
from .schedules import LearningRateSchedule
from .step import StepProposal, propose_step
from .types import FloatArray


class Optimizer:
    """η_t, the regularisers and AdaGrad's state for d + 1 parameters θ = [w ; b].

    Parameters
    ----------
    n_parameters : int
        d + 1.
    schedule : LearningRateSchedule
        η_t = schedule(t) without a controller.
    l2, l1 : float
        λ₂, λ₁ ≥ 0 (the intercept is never regularised).
    reduction : {"mean", "sum"}
    optimizer : {"sgd", "adagrad"}
    adagrad_epsilon : float
        ε of AdaGrad.
    adagrad_half_life_samples : float
        h ≥ 0, the half-life of A in samples (0: never forget).
    """

    def __init__(
        self,
        n_parameters: int,
        schedule: LearningRateSchedule,
        *,
        l2: float,
        l1: float,
        reduction: str,
        optimizer: str,
        adagrad_epsilon: float,
        adagrad_half_life_samples: float = 0.0,
    ) -> None:
        self.schedule = schedule
        self.l2, self.l1 = float(l2), float(l1)
        self.reduction, self.kind = reduction, optimizer
        self.epsilon = float(adagrad_epsilon)
        self.half_life_samples = float(adagrad_half_life_samples)
        # γ per sample; exactly 1.0 for h = 0, so that γ^m A + ḡ² is A + ḡ² bit for bit.
        self.forget_per_sample = (
            2.0 ** (-1.0 / self.half_life_samples) if self.half_life_samples > 0.0 else 1.0
        )
        # A = Σ_steps γ^(samples since) ḡ² per coordinate (None for plain SGD), and n, the
        # samples it holds (Σ γ^(samples since) with forgetting).
        self.accumulator: FloatArray | None = (
            np.zeros(n_parameters) if optimizer == "adagrad" else None
        )
        self.accumulated_samples = 0.0
        # (L̄, V̄), the change detector's level and spread before an alarm whose shrink of A
        # waits for the next batch to confirm it (:meth:`follow_alarms`); None: none pending.
        self.pending_alarm: tuple[float, float] | None = None

    def regularization(self, theta: FloatArray) -> FloatArray | None:
        """ρ = λ₂ [w ; 0] at θ (None without an L2 term)."""
        return np.append(self.l2 * theta[:-1], 0.0) if self.l2 else None

    def decay(self, n_samples: int) -> float:
        """γ^m, the factor of A before a step of m = ``n_samples`` samples (1.0: never)."""
        return 1.0 if self.forget_per_sample == 1.0 else self.forget_per_sample**n_samples

    def held_samples(self, n_samples: int) -> float:
        """n after ``n_samples`` single-sample steps: n γ^k + Σ_{i<k} γ^i (n + k, γ = 1)."""
        n, gamma = self.accumulated_samples, self.forget_per_sample
        if gamma == 1.0:
            return n + n_samples
        decay = gamma**n_samples
        return n * decay + (1.0 - decay) / (1.0 - gamma)

    def step_reduction(self, controlled: bool) -> str:
        """AdaGrad with a controller steps on Σ_i g_i: at a fixed m the step of the mean
        (AdaGrad is scale-invariant); when m changes, the per-sample step stays (.controller)."""
        return "sum" if controlled and self.accumulator is not None else self.reduction

    def propose(
        self, theta: FloatArray, sums: BatchSums, eta: float, *, controlled: bool
    ) -> StepProposal:
        """θ (or θ at the batch's columns) after a step of size η on ``sums``; nothing changes."""
        return propose_step(
            theta,
            sums,
            eta,
            reduction=self.step_reduction(controlled),
            l1=self.l1,
            l2=self.l2,
            squared_gradient_sum=self.accumulator,
            adagrad_epsilon=self.epsilon,
            accumulator_decay=self.decay(sums.n_samples),
        )

    def adopt(self, proposal: StepProposal, n_samples: int) -> None:
        """Keep the accumulators of an adopted proposal of ``n_samples`` samples (at its
        columns when it has them: the other columns' A decay by γ^m, O(d) with forgetting)."""
        decay = self.decay(n_samples)
        self.accumulated_samples = self.accumulated_samples * decay + n_samples
        accumulated = proposal.accumulated
        if accumulated is None or self.accumulator is None:
            return
        if proposal.active is None:
            self.accumulator = accumulated
        else:
            if decay != 1.0:
                self.accumulator *= decay
            self.accumulator[proposal.active] = accumulated

    def follow_alarms(
        self,
        before: tuple[int, float, float],
        stats: RunningGradientStatistics,
        sums: BatchSums,
    ) -> None:
        """Act on the change detector after a step (:mod:`.drift`): an alarm of this step
        becomes pending with the in-control (L̄, V̄) of ``before`` (n_changes, L̄, V̄ before
        the step, :func:`alarm_context`); a pending alarm shrinks A (:meth:`restart`, W the
        window of ``stats`` now) if this batch confirms it (:func:`.drift.confirms`), else
        it is dropped. Why one batch later: a change keeps the loss up, a heavy-tailed loss
        (a few confident mistakes of several nats) falls back at once, and a false alarm
        that shrinks A restarts the step sizes (Shuttle: 0.0401 / 0.9961 / 0.9833 with its
        two false alarms acted on, 0.0386 / 0.9963 / 0.9844 confirmed away; the demo stream's
        changes are confirmed by z ≥ 5, bench/quality_auto.py)."""
        pending, self.pending_alarm = self.pending_alarm, None
        if pending is not None and confirms(*pending, sums.loss_sum, sums.n_samples):
            self.restart(stats.window_samples)
        if stats.change.n_changes != before[0]:
            self.pending_alarm = (before[1], before[2])

    def restart(self, window_samples: float) -> None:
        """A detected change of the stream (:mod:`.drift`): A, summed over n samples, mostly
        describes the old problem and would keep the steps small. It shrinks to the W =
        ``window_samples`` samples since the estimated change point, A ← A min(1, W/n)
        (O(d), once per change; zeroing it, as before, threw away the scale of the
        gradients and cost every false alarm a restart of the step sizes: 0.0720 against
        0.0512 on Shuttle with three alarms; with the shrink, Shuttle's two false alarms still
        cost 0.0401 against 0.0386 without any, so :meth:`follow_alarms` calls it only once
        the batch after the alarm confirms it)."""
        n = self.accumulated_samples
        factor = min(1.0, window_samples / n) if n > 0.0 and window_samples >= 0.0 else 0.0
        if self.accumulator is not None:
            self.accumulator *= factor
        self.accumulated_samples = n * factor

    def counter_state(self) -> dict[str, Any]:
        """n and the pending alarm, for a state document (JSON values only)."""
        pending = None if self.pending_alarm is None else list(self.pending_alarm)
        return {"accumulated_samples": self.accumulated_samples, "pending_alarm": pending}

    def restore_counters(self, state: dict[str, Any]) -> None:
        """Resume :meth:`counter_state`'s values; ValueError for a malformed pending alarm."""
        self.accumulated_samples = float(state["accumulated_samples"])
        pending = state["pending_alarm"]
        if pending is not None:
            if not isinstance(pending, list | tuple) or len(pending) != 2:
                raise ValueError("model state: a pending alarm is [level, spread]")
            pending = (float(pending[0]), float(pending[1]))
        self.pending_alarm = pending

    def get_params(self) -> dict[str, Any]:
        """The model's constructor arguments that configure the optimiser."""
        return {
            "learning_rate": self.schedule.learning_rate,
            "learning_rate_schedule": self.schedule.kind,
            "decay": self.schedule.decay,
            "power": self.schedule.power,
            "l2": self.l2,
            "l1": self.l1,
            "reduction": self.reduction,
            "optimizer": self.kind,
            "adagrad_epsilon": self.epsilon,
            "adagrad_half_life_samples": self.half_life_samples,
        }

    def accumulator_state(self) -> FloatArray | None:
        """A copy of A for a state document (None for plain SGD)."""
        return None if self.accumulator is None else self.accumulator.copy()

    def restore_accumulator(self, stored: Any) -> None:
        """Resume A from a state document. The optimiser configured wins: AdaGrad resumes
        its accumulators, or starts them at zero when the model was trained with plain SGD
        so far; plain SGD ignores them."""
        if self.accumulator is not None and stored is not None:
            accumulator = np.asarray(stored, dtype=np.float64).copy()
            if accumulator.shape != self.accumulator.shape:
                raise ValueError("model state has AdaGrad accumulators of the wrong shape")
            self.accumulator = accumulator


def alarm_context(change: LossChangeDetector) -> tuple[int, float, float]:
    """(n_changes, L̄, V̄) of the change detector, read before a step for
    :meth:`Optimizer.follow_alarms`."""
    return change.n_changes, change.level, change.spread
