"""Many minibatch steps of a fixed size in one call: :func:`learn_batches`.

A poll of the service buffers thousands of samples; at m = 32 stepping them one
:meth:`~.model.OnlineLogisticRegression.learn_batch` call at a time cost ≈ 120 µs of Python a
step (sums objects, the proposal, the statistics' methods), 3.8 µs a sample, more than the
arithmetic. :func:`learn_batches` takes the same steps — each batch scored with the weights
before its own step, the row clip and row scale, L1, AdaGrad (forgetting or not), both
schedules and reductions, sample weights, a non-finite step skipped, the noise statistics with
their window rule and change detector — in one compiled loop (:mod:`._multi_step`), dense
rows or sparse ones (O(nnz) per step), with the same bits as one call per batch
(tests/unit/core/test_multi_step.py).

Three settings still take one ``learn_batch`` per batch, which *is* the definition, because a
piece of their step is Python by design: a :class:`~.controller.NoiseController` (it chooses
η and the next m from every step's statistics), ``standardize=True`` (the standardiser folds
its moments and may re-frame θ after every step, :mod:`.standardize`), and an L2 term (the
objective's ‖ḡ + ρ‖² is a numpy dot product, whose order of additions the loop would have to
copy; an L2 step is O(d) anyway, so its Python is not what costs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from . import _multi_step
from .batch_sums import BatchSums
from .deferred import settle
from .sparse import SparseRows
from .step import BatchStats
from .types import FloatArray, IndexArray
from .validation import Features, check_batch

if TYPE_CHECKING:  # the model calls this module for its own compiled steps
    from .model import OnlineLogisticRegression

_LOSS, _ETA, _SQUARES, _GRADIENT, _ROWS = 0, 1, 2, 3, 4
_MISCLASSIFIED, _CLIPPED, _SKIPPED, _ABOVE = 0, 1, 2, 3


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


def compiled(model: OnlineLogisticRegression, batch_size: int) -> bool:
    """Whether :func:`learn_batches` steps ``model`` in the compiled loop (module docstring)."""
    return (
        batch_size >= 2 and model.controller is None and not model.inputs.enabled and not model.l2
    )


def learn_batches(
    model: OnlineLogisticRegression,
    X: Features,
    y: FloatArray,
    sample_weight: FloatArray | None,
    batch_size: int,
) -> BatchesStats:
    """Take n = len(y) / m consecutive minibatch steps of m = ``batch_size`` rows each.

    Parameters
    ----------
    model : OnlineLogisticRegression
    X : ndarray of shape (n m, d), or SparseRows
    y : array of shape (n m,)
    sample_weight : array of shape (n m,), optional
    batch_size : int
        m ≥ 1; len(y) must be a multiple of it.

    Returns
    -------
    BatchesStats
        Per step, what ``learn_batch`` would have returned.
    """
    X, y, weights = check_batch(X, y, sample_weight, model.n_features, allow_empty=False)
    if batch_size < 1 or len(y) % batch_size:
        raise ValueError(f"{len(y)} samples are not whole batches of {batch_size}")
    if not compiled(model, batch_size):
        return _per_batch(model, X, y, weights, batch_size)
    stats, _ = _compiled_steps(model, X, y, weights, batch_size, last_gradient=False)
    return stats


def learn_one(
    model: OnlineLogisticRegression, X: Features, y: FloatArray, sample_weight: FloatArray | None
) -> BatchStats:
    """``model.learn_batch`` of one validated batch by the compiled loop (when
    :func:`compiled`): one call instead of a dozen Python steps."""
    stats, last = _compiled_steps(model, X, y, sample_weight, len(y), last_gradient=True)
    return stats.step(0, last)


def _compiled_steps(
    model: OnlineLogisticRegression,
    X: Features,
    y: FloatArray,
    weights: FloatArray | None,
    batch_size: int,
    *,
    last_gradient: bool,
) -> tuple[BatchesStats, tuple[IndexArray | None, FloatArray] | None]:
    """The compiled loop on validated whole batches (see :func:`learn_batches`)."""
    settle(model)
    if isinstance(X, SparseRows):
        dense, sparse = None, _canonical(X)
        if model._workspace is None:  # as learn_batch allocates it (any content)
            model._workspace = np.empty((2, model.n_features), dtype=np.intp)
        workspace = model._workspace
        columns = None if model.l1 else workspace[0]
        rows = workspace[1]
    else:
        dense, sparse = np.ascontiguousarray(X), None
        columns = rows = None
    optim, schedule = model.optim, model.optim.schedule
    settings = (
        schedule.learning_rate,
        schedule.kind != "constant",
        schedule.decay,
        schedule.power,
        optim.reduction == "mean",
        optim.l1,
        optim.epsilon,
        optim.forget_per_sample,
        model.clip_norm_ratio,
        model.gradient_statistics,
    )
    start = (model.n_updates, model.n_samples_seen, model.row_scale, optim.accumulated_samples)
    with model._lock:  # θ changes in place (readers in other threads take the lock)
        state, floats, counts, last = _multi_step.learn_steps(
            dense,
            None if sparse is None else sparse.indptr,
            None if sparse is None else sparse.indices,
            None if sparse is None else sparse.values,
            model.n_features,
            y,
            weights,
            batch_size,
            len(y) // batch_size,
            model._theta,
            optim.accumulator,
            model.gradient_stats,
            settings,
            start,
            columns,
            rows,
            last_gradient,
        )
    model.n_updates, model.n_samples_seen, model.row_scale, optim.accumulated_samples = state
    return BatchesStats(batch_size, floats, counts, True), last


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


def _per_batch(
    model: OnlineLogisticRegression,
    X: Features,
    y: FloatArray,
    weights: FloatArray | None,
    m: int,
) -> BatchesStats:
    """One ``learn_batch`` per batch (the settings the compiled loop does not take)."""
    n = len(y) // m
    floats = np.empty((n, 5))
    counts = np.empty((n, 4), dtype=np.int64)
    for t in range(n):
        rows = slice(t * m, (t + 1) * m)
        batch_X = X.slice_rows(t * m, (t + 1) * m) if isinstance(X, SparseRows) else X[rows]
        stats = model.learn_batch(batch_X, y[rows], None if weights is None else weights[rows])
        sums = stats.sums
        sums.mean_gradient_squared_norm  # noqa: B018  (computes ‖Σ g_i‖² once)
        g2 = sums.gradient_sum_squared_norm
        floats[t] = (
            sums.loss_sum,
            stats.learning_rate,
            sums.gradient_squared_norm_sum,
            math.nan if g2 is None else g2,
            sums.row_squared_norm_sum,
        )
        counts[t] = (sums.n_misclassified, sums.n_clipped, int(stats.skipped), sums.n_above_scale)
    return BatchesStats(m, floats, counts, False)
