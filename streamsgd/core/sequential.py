"""Pure online learning: many consecutive m = 1 steps in one call, in compiled code.

:func:`learn_sequence` takes the *same* steps as calling
:meth:`OnlineLogisticRegression.learn_batch` once per sample — each sample scored with the
weights before its own step (progressive validation), the row clip and row scale of
:mod:`.row_scale`, L2, the L1 prox, AdaGrad, the schedules, sample weights, a step that would
make θ non-finite skipped, and the running gradient statistics folded step by step — in a
compiled per-sample loop (:mod:`.online`: O(d) per step on dense rows, O(nnz) on sparse
ones). The numpy step stays the definition; ``tests/support/online_oracle.py`` holds the oracle
the loops are tested against.

Two configurations still run ``learn_batch`` once per sample, which *is* the definition
(so nothing can disagree): a :class:`NoiseController` (it chooses η and m from the
statistics of every step, in Python) and ``standardize=True`` (μ and σ move after every
step, :mod:`.standardize`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .model import OnlineLogisticRegression
from .online import run_compiled
from .sparse import SparseRows
from .types import FloatArray
from .validation import Features, check_batch

DEFAULT_BLOCK_SIZE = 32
"""The service's unit of m = 1 blocks (it groups aligned blocks into one call when
``online_block_size`` is a multiple of it). Any cut gives the same bits."""


@dataclass(frozen=True)
class SequenceStats:
    """What one call of :func:`learn_sequence` measured.

    Attributes
    ----------
    n_samples : int
        n, the number of m = 1 steps attempted.
    loss_sum : float
        Σ_t ℓ_t, each sample's log loss under the weights before its own step
        (progressive validation, unweighted as in :class:`BatchSums`).
    n_misclassified : int
        Samples whose pre-step prediction (z ≥ 0 ↔ class 1) differs from the label.
    n_skipped : int
        Steps not applied because they would have made the weights non-finite.
    learning_rate : float
        η of the last step (NaN when n = 0).
    fast_path : bool
        False when the call ran the per-sample ``learn_batch`` loop (controller,
        standardize), True for the compiled loop.
    losses : ndarray of shape (n,)
        The per-sample pre-step losses ℓ_t (0 for a skipped step: its sample is not learned
        and, as on the minibatch path, not counted in the progressive loss).
    n_clipped : int
        Samples whose row norm exceeded κ s and that were scaled down to it.
    """

    n_samples: int
    loss_sum: float
    n_misclassified: int
    n_skipped: int
    learning_rate: float
    fast_path: bool
    losses: FloatArray
    n_clipped: int = 0

    @property
    def loss(self) -> float:
        """Mean progressive loss Σ ℓ_t / n (NaN when n = 0)."""
        return self.loss_sum / self.n_samples if self.n_samples else math.nan

    @property
    def n_steps_skipped(self) -> int:
        """Steps not applied (= :attr:`n_skipped`; as :attr:`BatchStats.n_steps_skipped`)."""
        return self.n_skipped

    @property
    def n_samples_skipped(self) -> int:
        """Samples not learned because their step was skipped: with m = 1, one per skipped
        step (as :attr:`BatchStats.n_samples_skipped` counts a skipped minibatch's m)."""
        return self.n_skipped


def fast_path_unsupported(model: OnlineLogisticRegression, X: object) -> str | None:
    """Why :func:`learn_sequence` runs the per-sample ``learn_batch`` loop, or None.

    Parameters
    ----------
    model : OnlineLogisticRegression
    X : ndarray of shape (n, d), or SparseRows
        (Every kind of row goes through the compiled loop.)

    Returns
    -------
    str or None
        ``"controller"`` or ``"standardize"``; None when the compiled loop applies.
    """
    del X
    if model.controller is not None:
        return "controller"
    if model.inputs.enabled:  # μ, σ move after every step (.standardize)
        return "standardize"
    return None


def _per_sample_loop(
    model: OnlineLogisticRegression,
    X: Features,
    y: FloatArray,
    weights: FloatArray | None,
    losses: FloatArray,
) -> SequenceStats:
    """The definition: ``learn_batch`` on each single sample. A skipped step's loss is 0:
    its sample is neither learned nor counted in the progressive loss."""
    missed = skipped = clipped = 0
    last_eta = math.nan
    for i in range(len(y)):
        xi = X.slice_rows(i, i + 1) if isinstance(X, SparseRows) else X[i : i + 1]
        stats = model.learn_batch(xi, y[i : i + 1], None if weights is None else weights[i : i + 1])
        if stats.skipped:
            skipped += 1
        else:
            losses[i] = stats.loss
            missed += stats.n_misclassified
        clipped += stats.n_clipped
        last_eta = stats.learning_rate
    n = len(y)
    return SequenceStats(n, float(losses.sum()), missed, skipped, last_eta, False, losses, clipped)


def learn_sequence(
    model: OnlineLogisticRegression,
    X: ArrayLike | SparseRows,
    y: ArrayLike,
    sample_weight: ArrayLike | None = None,
    *,
    block_size: int | None = None,
) -> SequenceStats:
    """Apply n consecutive pure-online (m = 1) steps to ``model``, one per row of X.

    The result — weights, AdaGrad's accumulators, row scale, step and sample counters,
    running gradient statistics, progressive losses — is the one of
    ``for i in range(n): model.learn_batch(X[i:i+1], y[i:i+1], sample_weight[i:i+1])``
    up to floating-point round-off (the order of a few sums; tests: rtol 1e-9), computed by
    the compiled loop of :mod:`.online`; the same input gives the same bits.

    Unlike that loop, the whole input is validated before the first step: a bad label or
    weight anywhere raises ``ValueError`` and leaves the model untouched.

    Parameters
    ----------
    model : OnlineLogisticRegression
        Updated in place (through :mod:`.online`, or
        ``learn_batch`` for the configurations of :func:`fast_path_unsupported`).
    X : ndarray of shape (n, d), or SparseRows
    y : array of shape (n,)
        Labels in {0, 1}.
    sample_weight : array of shape (n,), optional
        Importance weights s_t ≥ 0.
    block_size : int, optional
        K ≥ 1, kept for callers that cut a stream into blocks of K: the result is the same
        bits however a stream is cut into calls, so it has no effect on the result (the lazy
        sparse loop carries its deferred work on the model between calls, :mod:`.deferred`).

    Returns
    -------
    SequenceStats
        Progressive (pre-step) losses, misclassified, skipped and clipped counts.
    """
    if block_size is not None and block_size < 1:
        raise ValueError("block_size must be >= 1")
    features, labels, weights = check_batch(X, y, sample_weight, model.n_features, allow_empty=True)
    n = len(labels)
    losses = np.zeros(n)
    if n == 0:
        return SequenceStats(0, 0.0, 0, 0, math.nan, True, losses)
    if fast_path_unsupported(model, features) is not None:
        return _per_sample_loop(model, features, labels, weights, losses)
    # Overflow to inf/nan on extreme input is expected and handled (such a step is skipped,
    # or left out of the statistics), as in learn_batch.
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        run = run_compiled(model, features, labels, weights, losses)
    return SequenceStats(
        n_samples=n,
        loss_sum=float(losses.sum()),
        n_misclassified=run.misclassified,
        n_skipped=run.skipped,
        learning_rate=run.last_learning_rate,
        fast_path=True,
        losses=losses,
        n_clipped=run.clipped,
    )
