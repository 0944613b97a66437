"""The noise controller: batch size m from the norm test, learning rate η from the AdaScale gain.

It reads the running statistics of :mod:`.gradient_stats` (smoothed T̄ = tr Σ per sample and
Ḡ² = |∇J|² of the objective, and whether they are trusted) and the batch's row norms, all
sums over samples or functions of the replicated state, so N replicas that add their
:class:`BatchSums` take identical decisions.

Batch size (norm test: Byrd, Chin, Nocedal, Wu 2012; Bollapragada, Byrd, Nocedal 2018).
The norm test in the form the statistics measure (``norm_test_ratio`` ≤ θ²) is
E‖ḡ − G‖² ≤ θ² E‖ḡ‖², i.e. tr Σ/m ≤ θ² (|G|² + tr Σ/m), which holds for m ≥

    m* = B (1 − θ²)/θ²,    B = T̄/Ḡ²   (the trusted noise scale).

After each
applied step m doubles when m* > 2m and the gain at 2m, r(2m), still fits under the
curvature cap (r(2m)·η₀(τ) ≤ η_max: a larger batch whose step size cannot grow with it only
spends more samples per step), and halves when m* < m/4, staying within [m_lo, m_hi] ⊂
[m_min, m_max] (below: what m buys); otherwise m stays (so, where B is stationary, m settles
within [m*/2, 4m*], clipped to the bounds; under AdaGrad B is not: below). Both moves act
on significant evidence only. Halving needs the trusted B (Ḡ² significantly above 0).
Doubling takes m* from the trusted B, or, while B is not trusted, from its lower confidence
bound B̂ = T̄/(Ḡ² + z·SE) (:attr:`.RunningGradientStatistics.noise_scale_lower_bound`, the
upper confidence bound of |G|²): the norm test then fails with significance. Noise too large
for |G|² to be resolved at this m is exactly the case where the norm test asks for a larger
m (Byrd et al.), and B̂ ≤ B with probability ≈ 97.7 %, so a doubling on B̂ is one that the
true B also asks for. On pure noise (G = 0) m therefore grows as fast as the evidence
allows, and never shrinks. On the hashed stream of bench/quality_auto.py, the trusted B
alone kept m at 8 for 22,000 samples (|G|² ≈ 0.001 against an SE of 0.004); with B̂, m
reaches 64 within 600 samples, at the same log loss (bench/quality_auto.py). The
suggestion exported is the trusted m* clipped to the bounds (NaN while untrusted). m = 1 is
never used (m_min ≥ 2: the within-batch variance needs two samples).

What m buys (:mod:`.batch_latency`). B is not a property of the stream alone: at the noise
floor of a constant-step learner B/m = 2/(η λ̄), λ̄ = tr(HΣ)/tr Σ, and under AdaGrad on the
summed gradient η_j ∝ 1/√n, so B grows like √n and the norm test alone grew m to 2,048–4,096
at 1 M samples of a stationary stream, where m is statistically neutral. So m moves within
bounds [m_lo, m_hi] set by throughput and latency, from a fixed cost model of a step and the
arrival rate λ (``arrival_rate``; NaN for a backlog, which is what a file is): m_hi is the
latency cap (modelled step time, and m/λ, within ``max_batch_latency_seconds``), and under
AdaGrad also the throughput m (the smallest that keeps up with λ; for a backlog the knee of
the cost model), where m stops buying anything; m_lo is the throughput m of a known λ (a
stream must be kept up with), else m_min. Under plain SGD with the gain m changes the
statistics, and the norm test decides within [m_lo, the latency cap]; under AdaGrad the norm
test still keeps m small while the gradient dominates (m > m* spends samples on a step no
better, whatever the optimiser), so a small data set keeps a small m. Every input of the
bounds is configuration or replicated state: replicas and restarts take the same m.

Learning rate (AdaScale: Johnson, Agrawal, Gu, Guestrin 2020). With the base batch size
m₀ (``base_batch_size``; m_min under ``--batch-size auto``, the fixed m otherwise) and
G² = max(Ḡ², 0) (0 while undefined), the gain of a step with m samples is

    r = (T̄/m₀ + G²) / (T̄/m + G²)   clipped to [1, m/m₀]   (1 while T̄ is undefined)

— the ratio of the expected squared norms of an m₀- and an m-sample gradient: r = 1 at
m = m₀, r → m/m₀ when B ≫ m (noise dominated: linear scaling), r → 1 when B ≪ m₀. The step
uses η = min(r·η₀·f(τ), η_max) and then τ ← τ + r: τ counts progress in units of m₀-sample
steps (τ = samples/m₀ in the noise-dominated regime, steps when B ≪ m₀), and the schedule's
decay f (:meth:`LearningRateSchedule.decay_factor`) is indexed by τ, so that a change of m
does not change the schedule per sample.

Curvature cap (``optimizer="sgd"`` only). The logistic loss has ∇²ℓ_i ⪯ ¼‖[x_i ; 1]‖² I, so
the objective's curvature is at most the trace bound T = ¼ S̄ + λ₂ with S̄ the EWMA
(α = 0.05) of the batches' mean weighted squared row norm (1/m) Σ_i s_i ‖c_i [x_i ; 1]‖²
(the row norms the step already computes, clipping included). T is loose by up to a factor
d + 1; the cap uses the tighter L̂ ∈ [T/(d + 1), T] of :mod:`.curvature` (a power iteration
on ¼ E[s v vᵀ] + λ₂ D, from sums over samples). η_max = c/L̂ with c = 1
(``curvature_factor``): with η ≤ 1/L a full-gradient step never increases J. With
``--learning-rate auto``, η₀ = c₀/T with c₀ = ½ (``AUTO_BASE_FRACTION``): the base rate at
m₀ is what it was with the trace bound, and the gain can grow η up to c/L̂ (m grows only
while it can; sparse rows keep L̂ = T). With a given learning rate, η₀ is that rate. With the
trace bound as the cap, on the demo stream (d = 20, 300k samples, drift 1 rad/100k) c₀ = ½
reached a progressive log loss of 0.4757 with 19.8k updates, against 0.4840 for the
default fixed m = 32, η = 0.1 (9.4k updates) and 0.4755 for m = 8, η = 0.095 (37.5k);
c₀ = ⅛ (room for a gain of 8) gave 0.4884 with 6.5k updates.

AdaGrad (``optimizer="adagrad"``). Its step η ḡ_j/√(Σ_t ḡ_{t,j}²) already adapts to the
noise: in the noise-dominated regime ḡ_j² ≈ Σ_jj/m, so its step grows as √m by itself, and
the AdaScale gain on top of it over-steps (m auto, η₀ = 0.1, bench/quality_auto.py: log
loss 0.6252 with the gain against 0.5265 without on the hashed stream, 0.6087 against
0.4650 on the dense one). Under a controller AdaGrad therefore takes
r = 1, no curvature cap (its steps are per coordinate), η₀ = 0.1 (``AUTO_ADAGRAD_RATE``)
under ``--learning-rate auto``, and the model steps on the summed gradient S = Σ_i g_i
(``reduction="sum"``): at a fixed m that is the step of the mean (AdaGrad is
scale-invariant), and when m changes Σ_t ‖S_t‖² keeps growing like the samples seen
whatever the m of each step, so the per-sample step does not collapse after m grows (on
the mean, the history of small-m steps dominated the accumulator: 0.5359 against 0.5265).
At a detected change of the stream (:mod:`.drift`) the accumulators restart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from .batch_latency import (
    DEFAULT_MAX_BATCH_LATENCY_SECONDS,
    STEP_COST_SECONDS,
    latency_batch_size,
    sample_cost_seconds,
    throughput_batch_size,
    validate_latency_budget,
)
from .batch_sums import BatchSums
from .curvature import CurvatureDirection, CurvatureEstimate
from .gradient_stats import RunningGradientStatistics, state_count
from .schedules import LearningRateSchedule
from .state_format import upgrade_controller_state
from .types import FloatArray

__all__ = ["NoiseController", "norm_test_batch_size"]

DEFAULT_MIN_BATCH_SIZE = 8
DEFAULT_MAX_BATCH_SIZE = 4096
DEFAULT_NORM_TEST_THETA = 0.9
CURVATURE_FACTOR = 1.0  # c of η ≤ c/L̂
AUTO_BASE_FRACTION = 0.5  # c₀ of the automatic η₀ = c₀/L̂
AUTO_ADAGRAD_RATE = 0.1  # η₀ of --learning-rate auto with AdaGrad (bench/quality_auto.py)
ROW_NORM_SMOOTHING = 0.05  # α of the EWMA S̄ of the mean squared row norm
_SETTINGS = (
    "adaptive_batch_size",
    "adaptive_learning_rate",
    "base_batch_size",
    "min_batch_size",
    "max_batch_size",
    "norm_test_theta",
    "curvature_factor",
)
# Adopted from the configured controller on a restart (:meth:`NoiseController.resume`): the
# latency budget and the cost model may change between runs without losing m, τ or L̂.
_ADOPTED = ("max_batch_latency_seconds", "step_cost_seconds", "sample_cost_seconds")


def norm_test_batch_size(noise_scale: float, theta: float = DEFAULT_NORM_TEST_THETA) -> float:
    """m* = B (1 − θ²)/θ², the smallest batch that passes the norm test (NaN for a NaN B)."""
    return noise_scale * (1.0 - theta * theta) / (theta * theta)


@dataclass
class NoiseController:
    """Chooses m and η from the measured gradient noise (formulas: module docstring).

    Parameters
    ----------
    adaptive_batch_size : bool
        m follows the norm test (``--batch-size auto``); False keeps ``batch_size``.
    adaptive_learning_rate : bool
        η₀ = c₀/L̂ (``--learning-rate auto``); False: η₀ is the schedule's learning rate.
    batch_size : int
        The current m ≥ 2 (the initial one: m_min under auto, else the fixed m).
    base_batch_size : int
        m₀ of the gain.
    min_batch_size, max_batch_size : int
        [m_min, m_max], 2 ≤ m_min ≤ m_max.
    norm_test_theta : float
        θ ∈ (0, 1).
    curvature_factor : float
        c of the cap η ≤ c/L̂.
    max_batch_latency_seconds : float
        L of the latency cap (:mod:`.batch_latency`), in (0, 3600].
    step_cost_seconds, sample_cost_seconds : float
        c₀ and c₁ of the modelled step cost c(m) = c₀ + c₁ m.
    arrival_rate : float
        λ, samples per second of the records' own time; NaN: a backlog (a file).

    State (in the model state and the checkpoint): ``batch_size``, ``progress`` τ,
    ``row_squared_norm`` S̄, the power iteration ``curvature`` (:mod:`.curvature`), and the
    last ``gain`` r, ``learning_rate`` η and ``suggested_batch_size`` (clipped m*, NaN when
    untrusted) for the gauges.
    """

    adaptive_batch_size: bool = True
    adaptive_learning_rate: bool = False
    batch_size: int = DEFAULT_MIN_BATCH_SIZE
    base_batch_size: int = DEFAULT_MIN_BATCH_SIZE
    min_batch_size: int = DEFAULT_MIN_BATCH_SIZE
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    norm_test_theta: float = DEFAULT_NORM_TEST_THETA
    curvature_factor: float = CURVATURE_FACTOR
    max_batch_latency_seconds: float = DEFAULT_MAX_BATCH_LATENCY_SECONDS
    step_cost_seconds: float = STEP_COST_SECONDS
    sample_cost_seconds: float = field(default_factory=lambda: sample_cost_seconds(20, False))
    arrival_rate: float = math.nan
    progress: float = 0.0
    row_squared_norm: float = math.nan
    gain: float = 1.0
    learning_rate: float = math.nan
    suggested_batch_size: float = math.nan
    curvature: CurvatureEstimate = field(default_factory=CurvatureEstimate)

    def __post_init__(self) -> None:
        if not 2 <= self.min_batch_size <= self.max_batch_size:
            raise ValueError(
                f"need 2 <= min_batch_size <= max_batch_size, got "
                f"{self.min_batch_size} and {self.max_batch_size}"
            )
        if not (self.min_batch_size <= self.batch_size <= self.max_batch_size):
            raise ValueError("the controller's batch_size must be within its bounds")
        if not self.base_batch_size >= 1:
            raise ValueError("the controller needs base_batch_size >= 1")
        if not 0.0 < self.norm_test_theta < 1.0:
            raise ValueError(f"norm_test_theta must be in (0, 1), got {self.norm_test_theta}")
        if not self.curvature_factor > 0.0:
            raise ValueError("curvature_factor must be > 0")
        validate_latency_budget(self.max_batch_latency_seconds)
        if not (self.step_cost_seconds >= 0.0 and self.sample_cost_seconds > 0.0):
            raise ValueError("the step cost model needs c0 >= 0 and c1 > 0")
        self._gain_headroom = math.inf  # set by step_size, read by step_applied
        self._adaptive_steps = False  # AdaGrad (no gain): set by step_size, read by step_applied

    @classmethod
    def create(
        cls,
        batch_size: int | str,
        *,
        adaptive_learning_rate: bool = False,
        min_batch_size: int = DEFAULT_MIN_BATCH_SIZE,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        norm_test_theta: float = DEFAULT_NORM_TEST_THETA,
        max_batch_latency_seconds: float = DEFAULT_MAX_BATCH_LATENCY_SECONDS,
        n_features: int = 20,
        sparse: bool = False,
    ) -> NoiseController:
        """The controller of ``--batch-size`` (an int, or ``"auto"``: start at and take m₀ =
        m_min) and ``--learning-rate auto`` (``adaptive_learning_rate``); its step cost
        model is that of rows of ``n_features`` columns (hashed when ``sparse``)."""
        adaptive = batch_size == "auto"
        m = min_batch_size if adaptive else int(batch_size)
        return cls(
            adaptive_batch_size=adaptive,
            adaptive_learning_rate=adaptive_learning_rate,
            batch_size=m,
            base_batch_size=m,
            min_batch_size=min_batch_size if adaptive else min(m, min_batch_size),
            max_batch_size=max_batch_size if adaptive else max(m, max_batch_size),
            norm_test_theta=norm_test_theta,
            max_batch_latency_seconds=max_batch_latency_seconds,
            sample_cost_seconds=sample_cost_seconds(n_features, sparse),
        )

    # ------------------------------------------------------------------ decisions
    def gain_for(self, stats: RunningGradientStatistics, batch_size: int) -> float:
        """r for a step with ``batch_size`` samples, from the current statistics."""
        trace, m0 = stats.per_sample_variance, self.base_batch_size
        if math.isnan(trace) or batch_size <= m0:
            return 1.0
        g2 = stats.true_gradient_squared_norm
        g2 = 0.0 if math.isnan(g2) else max(g2, 0.0)
        denominator = trace / batch_size + g2
        if not denominator > 0.0:
            return 1.0
        r = (trace / m0 + g2) / denominator
        return min(max(r, 1.0), batch_size / m0)

    def _row_norm_after(self, sums: BatchSums) -> float:
        """S̄ including this batch (the state is only updated once the step is applied)."""
        mean = sums.row_squared_norm_sum / sums.n_samples
        if not math.isfinite(mean):
            return self.row_squared_norm
        previous = self.row_squared_norm
        return mean if math.isnan(previous) else previous + ROW_NORM_SMOOTHING * (mean - previous)

    def curvature_bound(self, row_squared_norm: float, l2: float) -> float:
        """L̂ = ¼ S̄ + λ₂ (NaN while S̄ is unknown)."""
        return 0.25 * row_squared_norm + l2

    def step_size(
        self,
        sums: BatchSums,
        stats: RunningGradientStatistics,
        schedule: LearningRateSchedule,
        *,
        l2: float,
        optimizer: str = "sgd",
    ) -> tuple[float, float]:
        """(η, r) for the step on ``sums`` taken by ``optimizer`` ("sgd": with the gain
        and the curvature cap; "adagrad": r = 1, no cap); nothing is changed (see
        :meth:`step_applied`)."""
        curvature_cap = optimizer == "sgd"
        self._adaptive_steps = not curvature_cap
        # AdaGrad divides by √(Σ ḡ²): in the noise-dominated regime ḡ² ≈ tr Σ/m, so its
        # step already grows as √m; the AdaScale gain on top of it over-steps.
        r = self.gain_for(stats, sums.n_samples) if curvature_cap else 1.0
        trace_bound = self.curvature_bound(self._row_norm_after(sums), l2)
        curvature = self.curvature.bound(sums, l2, trace_bound)
        cap = self.curvature_factor / curvature if curvature > 0.0 else math.inf
        if self.adaptive_learning_rate and not curvature_cap:
            base = AUTO_ADAGRAD_RATE  # per-coordinate steps: no curvature scale to take
        elif self.adaptive_learning_rate:
            # η₀ stays c₀/(trace bound): the tighter L̂ only makes room for the gain (η₀ from
            # L̂ itself diverged on the dense stream). Until a row norm is known (never,
            # without gradient statistics) the given rate stands in for η₀.
            trace_cap = self.curvature_factor / trace_bound if trace_bound > 0.0 else math.inf
            known = math.isfinite(trace_cap)
            base = AUTO_BASE_FRACTION * trace_cap if known else schedule.learning_rate
        else:
            base = schedule.learning_rate
        base *= schedule.decay_factor(self.progress)
        # The largest gain the cap leaves room for, for step_applied's doubling rule.
        self._gain_headroom = cap / base if curvature_cap else math.inf
        eta = r * base
        return (min(eta, cap) if curvature_cap else eta), r

    def step_applied(
        self,
        sums: BatchSums,
        stats: RunningGradientStatistics,
        eta: float,
        gain: float,
        *,
        l2: float = 0.0,
    ) -> None:
        """Advance after an applied step: τ ← τ + r, S̄, and the next m from ``stats`` (the
        statistics already updated with this step)."""
        self.progress += gain
        self.gain, self.learning_rate = gain, eta
        self.row_squared_norm = self._row_norm_after(sums)
        self.curvature.update(sums, l2)
        trusted = stats.trusted
        if trusted:
            target = norm_test_batch_size(stats.noise_scale, self.norm_test_theta)
            self.suggested_batch_size = min(max(target, self.min_batch_size), self.max_batch_size)
        else:
            # |G|² is not resolved from 0 at this m, but its upper confidence bound may
            # already put m* above 2m: the norm test fails with significance.
            target = norm_test_batch_size(stats.noise_scale_lower_bound, self.norm_test_theta)
            self.suggested_batch_size = math.nan
        if not self.adaptive_batch_size:
            return
        low, high = self.batch_size_bounds()
        m = self.batch_size
        if target > 2 * m and self.gain_for(stats, 2 * m) <= self._gain_headroom:
            m *= 2
        elif trusted and target < m / 4:
            m //= 2
        self.batch_size = min(max(m, low), high)

    def batch_size_bounds(self) -> tuple[int, int]:
        """[m_lo, m_hi] of the norm test's moves (module docstring: what m buys)."""
        rate, c0, c1 = self.arrival_rate, self.step_cost_seconds, self.sample_cost_seconds
        m_min, m_max = self.min_batch_size, self.max_batch_size
        latency = latency_batch_size(rate, c0, c1, self.max_batch_latency_seconds, m_min, m_max)
        throughput = throughput_batch_size(rate, c0, c1, m_min, m_max)
        # Under AdaGrad m beyond the throughput m buys nothing; under SGD it buys the gain.
        high = min(throughput, latency) if self._adaptive_steps else latency
        keep_up = throughput if rate > 0.0 else m_min  # a backlog has no rate to keep up with
        return min(keep_up, high), high

    # ------------------------------------------------------------------ state
    def curvature_direction(self, theta: FloatArray) -> CurvatureDirection:
        """u of the power iteration, shape (d + 1,) = ``theta.shape`` (:mod:`.curvature`)."""
        return self.curvature.direction(len(theta))

    def get_state(self) -> dict[str, Any]:
        """Configuration and state, JSON values only."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["curvature"] = self.curvature.get_state()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NoiseController:
        """The controller of a state document (earlier layouts upgraded by :mod:`.state_format`;
        ValueError or KeyError for a malformed one)."""
        state = upgrade_controller_state(state)
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "curvature":
                values[f.name] = CurvatureEstimate.from_state(state[f.name])
                continue
            value = state[f.name]
            if f.type == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"controller {f.name}: expected true or false")
                values[f.name] = value
            elif f.type == "int":
                values[f.name] = state_count(value)
            else:
                values[f.name] = float(value)
        return cls(**values)

    def same_configuration(self, other: NoiseController) -> bool:
        """Same settings (what a restart may resume from)."""
        return all(getattr(self, k) == getattr(other, k) for k in _SETTINGS)

    @staticmethod
    def resume(
        configured: NoiseController | None, stored: NoiseController | None
    ) -> NoiseController | None:
        """The controller of a restarted run: the stored one (its m, τ, S̄) when the
        configured one has the same settings, else the configured one as it is."""
        if configured is not None and stored is not None and configured.same_configuration(stored):
            for name in _ADOPTED:
                setattr(stored, name, getattr(configured, name))
            return stored
        return configured
