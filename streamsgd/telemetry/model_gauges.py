"""The O(d) model gauges, read when Prometheus scrapes them rather than once per poll.

``streamsgd_model_weight_norm`` and ``streamsgd_model_healthy`` need a pass over all d + 1
parameters (a folded copy of θ on the O(nnz) m = 1 path, then its norm and a finiteness
check). Computed once per poll, that was ≈ 0.5 s of a 2.3 s run of 500 k records at
2^18 buckets, paid even when nothing scrapes. Here the sensor only remembers which model
is current (O(1) per poll) and the gauges compute their value at collection: a scrape
reads the model as it is at that instant, never a value from the last poll. /healthz
calls :meth:`OnlineLogisticRegression.health` itself on every request, so it does not
depend on these gauges.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.model import OnlineLogisticRegression
from ..core.row_scale import vector_norm


class ModelGauges:
    """The current model's ‖w‖ and health, computed on demand (at scrape time).

    Before any model is followed both read 0.0 (a gauge's initial value).
    """

    def __init__(self) -> None:
        self._model: OnlineLogisticRegression | None = None
        self._batch_size, self._learning_rate = 0, math.nan  # of the last step

    def step(self, batch_size: int, learning_rate: float) -> None:
        """Remember the last step's m and η (for :meth:`effective_learning_rate`). O(1)."""
        self._batch_size, self._learning_rate = batch_size, learning_rate

    def follow(self, model: OnlineLogisticRegression) -> None:
        """Make ``model`` the one the gauges read. O(1)."""
        self._model = model

    def weight_norm(self) -> float:
        """‖w‖ of the raw-feature weights (NaN or inf for an exploded model)."""
        model = self._model
        if model is None:
            return 0.0
        with np.errstate(over="ignore", invalid="ignore"):  # an exploded model reads NaN
            return vector_norm(model.parameters[:-1])

    def healthy(self) -> float:
        """1.0 while :meth:`OnlineLogisticRegression.health` is None, else 0.0."""
        model = self._model
        if model is None:
            return 0.0
        return 0.0 if model.health() else 1.0

    def effective_learning_rate(self) -> float:
        """The rate the last step applied to the mean gradient ḡ: the median over the
        coordinates the stream has touched (A_j > 0) of η·k/(√A_j + ε) under AdaGrad, η·k
        under SGD, with k = m when the step is on the summed gradient (AdaGrad under the
        controller: its rate on ḡ grows with m) and 1 on the mean. NaN before a step. O(d)."""
        model, m, eta = self._model, self._batch_size, self._learning_rate
        if model is None or m == 0:
            return math.nan
        optim = model.optim
        on_sum = optim.step_reduction(model.controller is not None) == "sum"
        rate = eta * m if on_sum else eta
        accumulator = optim.accumulator
        if accumulator is None:
            return rate
        held = accumulator[accumulator > 0.0]
        if not held.size:
            return math.nan
        return float(np.median(rate / (np.sqrt(held) + optim.epsilon)))
