"""Fast pure-online learning: many consecutive m = 1 steps in one call.

Calling :meth:`OnlineLogisticRegression.learn_batch` once per sample costs a few dozen numpy
calls per sample (≈ 30 µs). :func:`learn_sequence` takes the *same* steps — one SGD step per
sample, each sample scored with the weights before its own step — but processes the samples in
blocks of K and needs only a handful of numpy calls per block, plus a short pure-Python scalar
recursion per sample (the block algebra is in :mod:`.block`).

The row scale s of the bounded-influence clipping (:mod:`.row_scale`) depends on the row
norms only, never on the weights: the clipping factors c_t of a block are computed before its
recursion, with the same arithmetic as the per-sample steps.

The running gradient statistics of the m = 1 steps are exponentially weighted moving
averages (EWMA, smoothing α) of g_t = r_t c_t [x_t ; 1] and of ‖g_t‖²; the whole run of steps
is folded in at once by :meth:`RunningGradientStatistics.fold_single_steps`, and the result
enters the model through :meth:`OnlineLogisticRegression.apply_block`.

Configurations the recursion does not cover — ``optimizer="adagrad"``, ``l1 > 0``, sparse
features (:class:`SparseRows`), ``standardize=True``, a factor a_t ≤ 0, or a row beyond
:data:`.row_scale.EXTREME_NORM` — fall back to calling ``learn_batch`` once per sample, which
is the definition. A block whose result is not finite (a step the model would skip) is undone
and replayed the same way, so skipped steps are counted exactly as in the per-sample loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .block import BlockTerms, GramSpans, block_steps, l2_block_terms
from .gradient_stats import SingleSteps
from .losses import log_loss, sigmoid
from .model import OnlineLogisticRegression
from .row_scale import augmented_norms, scale_sequence
from .sparse import SparseRows
from .types import FloatArray
from .validation import Features, check_batch

DEFAULT_BLOCK_SIZE = 32


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
        False when the whole call fell back to the per-sample ``learn_batch`` loop.
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
    """Why :func:`learn_sequence` must fall back to the per-sample loop, or None.

    Parameters
    ----------
    model : OnlineLogisticRegression
    X : ndarray of shape (n, d), or SparseRows

    Returns
    -------
    str or None
        A short reason (``"adagrad"``, ``"l1"``, ``"sparse"``, ``"standardize"``), None
        when the block recursion applies.
    """
    if model.optimizer != "sgd":
        return model.optimizer
    if model.l1 > 0.0:
        return "l1"
    if isinstance(X, SparseRows):
        return "sparse"
    if model.inputs.enabled:  # μ, σ move after every step: no fixed Gram matrix
        return "standardize"
    return None


@dataclass
class _LoopCounts:
    """Counts of the per-sample loop."""

    missed: int = 0
    skipped: int = 0
    clipped: int = 0
    last_eta: float = math.nan


def _per_sample_loop(
    model: OnlineLogisticRegression,
    X: Features,
    y: FloatArray,
    weights: FloatArray | None,
    start: int,
    stop: int,
    losses: FloatArray,
) -> _LoopCounts:
    """The definition: ``learn_batch`` on each single sample of [start, stop).

    Writes the per-sample losses into ``losses``: 0 for a skipped step, whose sample is
    neither learned nor counted in the progressive loss (as a skipped minibatch's are not).
    """
    counts = _LoopCounts()
    for i in range(start, stop):
        xi = X.slice_rows(i, i + 1) if isinstance(X, SparseRows) else X[i : i + 1]
        stats = model.learn_batch(xi, y[i : i + 1], None if weights is None else weights[i : i + 1])
        if stats.skipped:
            losses[i] = 0.0
            counts.skipped += 1
        else:
            losses[i] = stats.loss
            counts.missed += stats.n_misclassified
        counts.clipped += stats.n_clipped
        counts.last_eta = stats.learning_rate
    return counts


def learn_sequence(
    model: OnlineLogisticRegression,
    X: ArrayLike | SparseRows,
    y: ArrayLike,
    sample_weight: ArrayLike | None = None,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> SequenceStats:
    """Apply n consecutive pure-online (m = 1) steps to ``model``, one per row of X.

    The result — weights, row scale, step and sample counters, running gradient
    statistics — is the one of
    ``for i in range(n): model.learn_batch(X[i:i+1], y[i:i+1], sample_weight[i:i+1])``
    up to floating-point round-off, but for plain SGD without L1 on dense features it is
    computed in blocks of K = ``block_size`` samples with the Gram-matrix recursion::

        z_t = c_t [P_t x_tᵀw₀ + b₀ − Σ_{s<t} q_s (c_{t,s} x_tᵀx_s + 1)],
        q_t = η_t s_t c_t (σ(z_t) − y_t)

    (:mod:`.block`), which handles both learning-rate schedules, L2, both reductions and
    the clipping exactly. Other configurations run the per-sample ``learn_batch`` loop.

    Unlike that loop, the whole input is validated before the first step: a bad label or
    weight anywhere raises ``ValueError`` and leaves the model untouched.

    Parameters
    ----------
    model : OnlineLogisticRegression
        Updated in place (through :meth:`~OnlineLogisticRegression.apply_block` or
        ``learn_batch``).
    X : ndarray of shape (n, d), or SparseRows
    y : array of shape (n,)
        Labels in {0, 1}.
    sample_weight : array of shape (n,), optional
        Importance weights s_t ≥ 0.
    block_size : int
        K ≥ 1; the cost per sample is O(K) scalar work plus O(1/K) numpy calls.

    Returns
    -------
    SequenceStats
        Progressive (pre-step) losses, misclassified, skipped and clipped counts.
    """
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    features, labels, weights = check_batch(X, y, sample_weight, model.n_features, allow_empty=True)
    n = len(labels)
    losses = np.zeros(n)
    if n == 0:
        return SequenceStats(0, 0.0, 0, 0, math.nan, True, losses)
    if fast_path_unsupported(model, features) is not None:
        c = _per_sample_loop(model, features, labels, weights, 0, n, losses)
        return SequenceStats(
            n, float(losses.sum()), c.missed, c.skipped, c.last_eta, False, losses, c.clipped
        )
    assert isinstance(features, np.ndarray)
    # Overflow to inf/nan on extreme input is expected and handled (the block is replayed
    # step by step, or the statistics leave the step out), as in learn_batch.
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        run = _DenseSequence(model, np.ascontiguousarray(features), labels, weights, block_size)
        return run.learn()


class _DenseSequence:
    """One :func:`learn_sequence` call on dense features with plain SGD without L1.

    The blocks' results are kept here (θ, the step counter, s) and handed to the model by
    :meth:`OnlineLogisticRegression.apply_block` at each :meth:`flush`: before a block is
    replayed by the per-sample definition, and at the end.
    """

    def __init__(
        self,
        model: OnlineLogisticRegression,
        X: FloatArray,
        labels: FloatArray,
        weights: FloatArray | None,
        block_size: int,
    ) -> None:
        n = len(labels)
        self.model, self.X, self.labels, self.weights = model, X, labels, weights
        self.block_size = block_size
        self.losses = np.zeros(n)
        self.z = np.empty(n)  # the pre-step (clipped) scores of the fast-path samples
        self.clip_factors = np.ones(n)
        self.clip_caps = np.full(n, math.nan)  # κ s_t of the clipped rows
        self.counts = _LoopCounts()
        self.pending_from = 0  # first fast-path sample not handed to the model yet
        schedule = model.schedule
        # η for the steps n_updates, n_updates + 1, …; a block indexes it by its first step.
        self.first_update = model.n_updates
        if schedule.kind == "constant":
            self.etas = np.full(n, schedule.learning_rate)
        else:
            steps = np.arange(self.first_update, self.first_update + n, dtype=np.float64)
            self.etas = schedule.learning_rate / (1.0 + schedule.decay * steps) ** schedule.power
        self.eta_list = self.etas.tolist()
        self.label_list = labels.tolist()
        self.weight_list = None if weights is None else weights.tolist()
        self.squared_norms: FloatArray | None = None  # ‖x_t‖², when needed
        self.norm_list: list[float] | None = None  # ‖[x_t ; 1]‖, when clipping
        if model.clip_norm_ratio > 0.0 or model.gradient_statistics:
            self.squared_norms = np.vecdot(X, X)
        if model.clip_norm_ratio > 0.0:
            assert self.squared_norms is not None
            self.norm_list = augmented_norms(X, self.squared_norms + 1.0).tolist()
        self.grams = GramSpans(X, block_size, with_lists=not model.l2)
        self._load()

    def _load(self) -> None:
        """Start from the model's current state (at the start and after a replay)."""
        self.theta = self.model.parameters.copy()
        self.n_updates = self.model.n_updates
        self.row_scale = self.model.row_scale

    def learn(self) -> SequenceStats:
        n = len(self.labels)
        start = 0
        while start < n:
            stop = min(start + self.block_size, n)
            if not self._fast_block(start, stop):
                self._replay(start, stop)
            start = stop
        self.flush(n)
        c = self.counts
        return SequenceStats(
            n_samples=n,
            loss_sum=float(self.losses.sum()),
            n_misclassified=c.missed,
            n_skipped=c.skipped,
            learning_rate=c.last_eta,
            fast_path=True,
            losses=self.losses,
            n_clipped=c.clipped,
        )

    def _fast_block(self, start: int, stop: int) -> bool:
        """The steps of [start, stop) by the block recursion; False (nothing changed) when
        the block must be replayed by the per-sample definition instead."""
        model, k = self.model, stop - start
        Xb = self.X[start:stop]
        offset = self.n_updates - self.first_update  # ≤ start; smaller after skipped steps
        scales = None
        if self.norm_list is not None:
            scales = scale_sequence(
                self.norm_list[start:stop], self.row_scale, model.clip_norm_ratio
            )
            if scales.extreme:
                return False
        j = self.grams.block(start)
        w0, b0 = self.theta[:-1], float(self.theta[-1])
        u = Xb @ w0
        if model.l2:  # for m = 1, reduction "sum" scales λ₂ by m = 1: the same step
            factors = 1.0 - self.etas[offset : offset + k] * model.l2
            if not np.all(factors > 0.0):
                return False
            terms = l2_block_terms(self.grams.grams[j], self.grams.lower, u, b0, factors)
        else:
            u += b0
            terms = BlockTerms(u.tolist(), self.grams.lists[j], None, 1.0)
        qs, zs = block_steps(
            terms,
            self.eta_list[offset : offset + k],
            self.label_list[start:stop],
            None if self.weight_list is None else self.weight_list[start:stop],
            None if scales is None else scales.factors,
        )
        coef = np.array(qs) if terms.tail is None else np.array(qs) * terms.tail
        new_theta = np.empty_like(self.theta)
        if terms.shrink != 1.0:
            np.multiply(w0, terms.shrink, out=new_theta[:-1])
            new_theta[:-1] -= coef @ Xb
        else:
            np.subtract(w0, coef @ Xb, out=new_theta[:-1])
        new_theta[-1] = b0 - sum(qs)
        # inf/nan propagate through the sums: one check for every weight and score.
        # (A false alarm from finite values overflowing the sum only replays the block.)
        if not math.isfinite(float(new_theta.sum()) + sum(zs)):
            return False
        self.z[start:stop] = zs
        if scales is not None:
            self.row_scale = scales.scale
            if scales.factors is not None and scales.caps is not None:
                self.clip_factors[start:stop] = scales.factors
                self.clip_caps[start:stop] = scales.caps
                self.counts.clipped += k - int(np.isnan(self.clip_caps[start:stop]).sum())
        self.theta = new_theta
        self.n_updates += k
        self.counts.last_eta = self.eta_list[offset + k - 1]
        return True

    def _replay(self, start: int, stop: int) -> None:
        """Take the block's steps one by one by the definition (learn_batch per sample)."""
        self.flush(start)
        c = _per_sample_loop(
            self.model, self.X, self.labels, self.weights, start, stop, self.losses
        )
        self.counts.missed += c.missed
        self.counts.skipped += c.skipped
        self.counts.clipped += c.clipped
        self.counts.last_eta = c.last_eta
        self.pending_from = stop
        self._load()

    def flush(self, upto: int) -> None:
        """Hand the fast-path steps [pending_from, upto) to the model, with their losses
        and gradient statistics."""
        seg = slice(self.pending_from, upto)
        if upto <= self.pending_from:
            return
        z, labels = self.z[seg], self.labels[seg]
        losses = log_loss(z, labels)
        self.losses[seg] = losses
        missed = (z >= 0.0) != (labels == 1.0)
        self.counts.missed += int(np.count_nonzero(missed))
        steps = None
        if self.model.gradient_statistics:
            assert self.squared_norms is not None
            residuals = sigmoid(z) - labels
            if self.weights is not None:
                residuals *= self.weights[seg]
            r2 = residuals * residuals
            squared_norms = r2 * self.squared_norms[seg] + r2  # r_t² (‖x_t‖² + 1)
            caps = self.clip_caps[seg]
            clipped = ~np.isnan(caps)
            if clipped.any():  # ‖g_t‖² = r_t² (κ s_t)², g_t = r_t c_t [x_t ; 1]
                squared_norms[clipped] = r2[clipped] * caps[clipped] ** 2
                residuals *= self.clip_factors[seg]
            steps = SingleSteps(self.X[seg], residuals, squared_norms, losses, missed)
        self.model.apply_block(self.theta, upto - self.pending_from, self.row_scale, steps)
        self.pending_from = upto
