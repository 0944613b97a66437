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

import numpy as np

from .compiled_steps import BatchesStats
from .model import OnlineLogisticRegression
from .sparse import SparseRows
from .types import FloatArray
from .validation import Features, check_batch

__all__ = ["BatchesStats", "compiled", "learn_batches"]


def compiled(model: OnlineLogisticRegression, batch_size: int) -> bool:
    """Whether :func:`learn_batches` steps ``model`` in the compiled loop (module docstring)."""
    return model.compiled_for(batch_size)


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
    stats, _ = model.compiled_steps(X, y, weights, batch_size, False)
    return stats


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
