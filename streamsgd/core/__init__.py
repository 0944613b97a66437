"""The learning core: numpy and the standard library only; no clocks, I/O or logging."""

from .gradient_stats import BatchSums, RunningGradientStatistics
from .model import BatchStats, OnlineLogisticRegression
from .schedules import LearningRateSchedule
from .sparse import SparseRows

__all__ = [
    "BatchStats",
    "BatchSums",
    "LearningRateSchedule",
    "OnlineLogisticRegression",
    "RunningGradientStatistics",
    "SparseRows",
]
