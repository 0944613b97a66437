"""The state of the running noise estimates: the smoothed estimates, their EWMA weights and
counts, and the change detector (the formulas are in :mod:`.gradient_stats`).

A plain record: :mod:`.gradient_stats` folds steps into it (with the compiled
:mod:`._noise_update`), :mod:`.single_steps` holds the m = 1 estimates, :mod:`.noise_scale`
derives B, B̂, their standard error and the trusted gate from it, and :mod:`.state_format`
upgrades the state documents of earlier releases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from .drift import LossChangeDetector
from .types import FloatArray

MIN_SMOOTHING = 0.002  # α_min, the widest window
MEAN_STEPS_CAP = 1 << 20  # n stops counting here (1/n < every α by then)


@dataclass
class NoiseStatistics:
    """Smoothed estimates (T̄, Ḡ², D, v of :mod:`.gradient_stats`), their weights and counts."""

    smoothing: float = 0.05  # α₀, the narrowest window (≈ 1/α₀ steps)
    min_smoothing: float = MIN_SMOOTHING  # α_min, the widest
    per_sample_variance: float = math.nan  # T̄, smoothed tr Σ (per sample)
    estimator_variance: float = math.nan  # smoothed tr Σ̂/m, the variance of the step's ḡ
    mean_gradient_squared_norm: float = math.nan  # smoothed ‖ḡ‖², loss part only (no L2)
    objective_gradient_squared_norm: float = math.nan  # smoothed ‖ḡ + ρ‖² (norm test)
    true_gradient_squared_norm: float = math.nan  # Ḡ², |∇J(w)|² of the objective, unbiased
    squared_deviation: float = math.nan  # D̃ (m ≥ 2), per-sample scale: m² (e_t − ē)²
    scaled_weight_square_sum: float = math.nan  # u = Σ ω_k²/m_k² of Ḡ²'s EWMA
    deviation_weight_square_sum: float = math.nan  # v of D's EWMA (kept by a restart)
    weight_square_sum: float = math.nan  # v = Σ ω_k² (m ≥ 2: of the e_t; m = 1: of the g_t)
    window_smoothing: float = math.nan  # α of the next step
    # Across-step moments, kept for m = 1.
    mean_gradient: FloatArray | None = None
    mean_squared_norm: float = math.nan
    last_batch_size: int = 0
    window_batch_size: int = 0  # m of the steps the |G|² estimate averages
    single_steps: int = 0  # m = 1 steps since α was last re-chosen
    within_batch_steps: int = 0  # n, steps the within-batch estimates average (capped)
    change: LossChangeDetector = field(default_factory=LossChangeDetector)  # :mod:`.drift`
    _within_batch_seen: bool = field(default=False)

    def __post_init__(self) -> None:
        if not (0.0 < self.smoothing <= 1.0 and self.min_smoothing > 0.0):
            raise ValueError(f"stats_smoothing must be in (0, 1], got {self.smoothing}")
        self.min_smoothing = min(self.min_smoothing, self.smoothing)
        if math.isnan(self.window_smoothing):
            self.window_smoothing = self.smoothing

    @property
    def within_batch_seen(self) -> bool:
        """Whether a batch with m ≥ 2 has been folded in (the estimates are within-batch)."""
        return self._within_batch_seen

    def get_state(self) -> dict[str, Any]:
        """The state document (numpy array M, plain Python values otherwise)."""
        state: dict[str, Any] = {"smoothing": self.smoothing, "min_smoothing": self.min_smoothing}
        state.update({key: getattr(self, key) for key in STATE_FLOATS})
        state.update(
            # A copy: the compiled m = 1 loop updates M in place.
            mean_gradient=None if self.mean_gradient is None else self.mean_gradient.copy(),
            last_batch_size=self.last_batch_size,
            window_batch_size=self.window_batch_size,
            single_steps=self.single_steps,
            within_batch_steps=self.within_batch_steps,
            within_batch_seen=self._within_batch_seen,
            change=self.change.get_state(),
        )
        return state


# The float fields a state document holds (α₀ and α_min are written first, on their own).
STATE_FLOATS = tuple(
    f.name
    for f in fields(NoiseStatistics)
    if f.type == "float" and f.name not in ("smoothing", "min_smoothing")
)
