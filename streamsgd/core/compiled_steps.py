"""The compiled multi-step loop (:mod:`._multi_step`) on a model's parts, and what it
measured (:class:`BatchesStats`): consecutive minibatch steps of one size m in one call, the
same bits as one ``batch_sums`` + ``apply_step`` per batch (:mod:`.multi_step` says which
settings it takes and why).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from . import _multi_step
from .batch_sums import BatchSums
from .gradient_stats import RunningGradientStatistics
from .optimizer import Optimizer
from .sparse import SparseRows
from .step import BatchStats
from .types import FloatArray, IndexArray
from .validation import Features

_LOSS, _ETA, _SQUARES, _GRADIENT, _ROWS = 0, 1, 2, 3, 4
_MISCLASSIFIED, _CLIPPED, _SKIPPED, _ABOVE = 0, 1, 2, 3

LastGradient = tuple[IndexArray | None, FloatArray] | None
"""The last step's (columns or None, Σ g_i), when asked for."""

Counters = tuple[int, int, float]
"""(n_updates, n_samples_seen, row scale s) of the model."""


@dataclass(frozen=True)
class BatchesStats:
    """What one call of :func:`learn_batches` measured: n steps of m samples.

    Attributes
    ----------
    batch_size : int
        m.
    floats : ndarray of shape (n, 5)
        Per step: Σ ℓ_i (pre-step losses), η, Σ‖g_i‖² (NaN without statistics), ‖Σ g_i‖²,
        Σ s_i‖v_i‖² (NaN without statistics).
    counts : int ndarray of shape (n, 4)
        Per step: misclassified, clipped, skipped (1: not applied, its samples not learned),
        #{‖v_i‖ > s}.
    fast_path : bool
        True for the compiled loop, False when the call ran ``learn_batch`` per batch.
    """

    batch_size: int
    floats: FloatArray
    counts: NDArray[np.int64]
    fast_path: bool

    @property
    def n_steps(self) -> int:
        return len(self.counts)

    @property
    def n_samples(self) -> int:
        """n m, every sample of the call (learned or skipped)."""
        return self.n_steps * self.batch_size

    @property
    def n_steps_skipped(self) -> int:
        return int(self.counts[:, _SKIPPED].sum())

    @property
    def n_samples_skipped(self) -> int:
        return self.n_steps_skipped * self.batch_size

    @property
    def n_clipped(self) -> int:
        """Clipped samples of every step (skipped ones too, as the per-step accounting)."""
        return int(self.counts[:, _CLIPPED].sum())

    @property
    def applied(self) -> NDArray[np.bool_]:
        """Per step: whether it was applied."""
        return self.counts[:, _SKIPPED] == 0

    def add_losses(self, total: float) -> float:
        """``total`` + Σ ℓ of every applied step, added one step at a time (the same bits
        as a running total that adds each step's sum as it is taken)."""
        for value in self.floats[self.applied, _LOSS].tolist():
            total += value
        return total

    @property
    def loss_sum(self) -> float:
        """Σ ℓ over the applied steps' samples (added step by step)."""
        return self.add_losses(0.0)

    @property
    def n_misclassified(self) -> int:
        return int(self.counts[self.applied, _MISCLASSIFIED].sum())

    def step(
        self, index: int, gradient: tuple[IndexArray | None, FloatArray] | None = None
    ) -> BatchStats:
        """The :class:`BatchStats` of step ``index``: its scalar sums, and Σ g_i (at its
        columns) when ``gradient`` is given (else an empty vector)."""
        loss, eta, squares, g2, rows = self.floats[index].tolist()
        misclassified, clipped, skipped, above = self.counts[index].tolist()
        columns, vector = (None, _NO_GRADIENT) if gradient is None else gradient
        sums = BatchSums(
            self.batch_size,
            vector,
            squares,
            loss,
            misclassified,
            columns,
            above,
            clipped,
            rows,
            gradient_sum_squared_norm=g2,
        )
        return BatchStats(sums, eta, bool(skipped))

    def last_applied(self) -> BatchStats | None:
        """The last applied step's statistics (None when every step was skipped)."""
        applied = np.flatnonzero(self.applied)
        return self.step(int(applied[-1])) if len(applied) else None


_NO_GRADIENT = np.zeros(0)


def run_steps(
    parts: tuple[FloatArray, Optimizer, RunningGradientStatistics, NDArray[np.intp] | None],
    batch: tuple[Features, FloatArray, FloatArray | None],
    batch_size: int,
    counters: Counters,
    influence: tuple[float, bool],
    last_gradient: bool,
) -> tuple[Counters, BatchesStats, LastGradient]:
    """len(y)/m steps of m = ``batch_size`` rows of the validated ``batch`` (X, y, weights).

    ``parts`` are the model's θ, optimiser, statistics and sparse scratch (shape (2, d);
    None: dense rows): θ (in place), the optimiser (A in place, its sample count) and the
    statistics are updated. ``influence``: (κ, whether the gradient statistics are on).
    Returns the counters after, the per-step records and, with ``last_gradient``, the last
    step's Σ g_i. The caller holds the model's lock (θ changes in place) and has settled
    its deferred work.
    """
    theta, optim, stats, workspace = parts
    X, y, weights = batch
    d = len(theta) - 1
    if isinstance(X, SparseRows):
        dense, sparse = None, _canonical(X)
        assert workspace is not None
        columns, rows = (None if optim.l1 else workspace[0]), workspace[1]
    else:
        dense, sparse = np.ascontiguousarray(X), None
        columns = rows = None
    schedule = optim.schedule
    settings = (
        schedule.learning_rate,
        schedule.kind != "constant",
        schedule.decay,
        schedule.power,
        optim.reduction == "mean",
        optim.l1,
        optim.epsilon,
        optim.forget_per_sample,
        *influence,
    )
    state, floats, counts, last = _multi_step.learn_steps(
        dense,
        None if sparse is None else sparse.indptr,
        None if sparse is None else sparse.indices,
        None if sparse is None else sparse.values,
        d,
        y,
        weights,
        batch_size,
        len(y) // batch_size,
        theta,
        optim.accumulator,
        stats,
        settings,
        (*counters[:2], counters[2], optim.accumulated_samples),
        columns,
        rows,
        last_gradient,
    )
    optim.accumulated_samples = state[3]
    return (state[0], state[1], state[2]), BatchesStats(batch_size, floats, counts, True), last


def _canonical(X: SparseRows) -> SparseRows:
    """X with int64 indptr from 0 and exactly its entries (the kernel's layout)."""
    if X.indptr[0] != 0 or len(X.indices) != X.indptr[-1]:
        X = X.slice_rows(0, X.n_samples)
    return SparseRows(
        np.ascontiguousarray(X.indptr, dtype=np.int64),
        np.ascontiguousarray(X.indices, dtype=np.int64),
        np.ascontiguousarray(X.values, dtype=np.float64),
        X.n_features,
    )
