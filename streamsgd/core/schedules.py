"""Learning-rate schedules η_t.

Without a controller t is the number of updates applied so far. With the noise controller
(:mod:`.controller`) t is τ, the samples-equivalent progress in units of m₀-sample steps
(τ ← τ + r per step, r the AdaScale gain), so that changing m does not change the schedule
per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULES = ("constant", "inverse_scaling")


@dataclass(frozen=True)
class LearningRateSchedule:
    """η_t for the step that follows t updates.

    * ``constant``: η_t = η₀.
    * ``inverse_scaling``: η_t = η₀ / (1 + decay · t) ** power.

    Parameters
    ----------
    learning_rate : float
        η₀ > 0.
    kind : {"constant", "inverse_scaling"}
    decay : float
        ≥ 0; only used by ``inverse_scaling``.
    power : float
        ≥ 0; only used by ``inverse_scaling``.
    """

    learning_rate: float
    kind: str = "constant"
    decay: float = 1.0
    power: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(
                f"learning_rate_schedule must be one of {SCHEDULES}, got {self.kind!r}"
            )
        if not self.learning_rate > 0.0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (self.decay >= 0.0 and self.power >= 0.0):
            raise ValueError("decay and power must be >= 0")

    def __call__(self, n_updates: int) -> float:
        if self.kind == "constant":
            return self.learning_rate
        return float(self.learning_rate / (1.0 + self.decay * n_updates) ** self.power)

    def decay_factor(self, progress: float) -> float:
        """η_τ / η₀ at the (possibly fractional) progress τ ≥ 0: 1, or (1 + decay·τ)^−power."""
        if self.kind == "constant":
            return 1.0
        return float(1.0 / (1.0 + self.decay * progress) ** self.power)
