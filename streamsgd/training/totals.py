"""What a run has consumed and learned, kept in the checkpoint so it survives restarts
exactly, and the progressive loss derived from it (one definition for the CLI, HTTP and
metrics)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from ..core.model import OnlineLogisticRegression

# Label values of the skip and clip counters (the loop emits them; metrics initialise them).
SKIP_REASONS = ("non_finite",)
CLIP_REASONS = ("row_norm",)


@dataclass
class Totals:
    """Counters kept in the checkpoint, so they survive restarts exactly.

    ``samples_consumed`` counts every sample taken from the stream: learned, or in a skipped
    step (``samples_skipped``, absent from checkpoints written before it existed: 0).
    """

    samples_consumed: int = 0
    progressive_loss_sum: float = 0.0
    progressive_misclassified: int = 0
    records_rejected: int = 0
    updates_skipped: int = 0
    samples_skipped: int = 0

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Totals:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})


def progressive_log_loss(totals: Totals, model: OnlineLogisticRegression) -> float:
    """Mean pre-step log loss over every sample learned so far, Σ ℓ_i / n (NaN when n = 0)."""
    n = model.n_samples_seen
    return totals.progressive_loss_sum / n if n else math.nan
