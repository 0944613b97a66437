"""Progressive validation (test-then-train) of a labelled stream, and its metrics.

Every sample is scored with the weights *before* the step that learns it, so each score is
an honest out-of-sample prediction, as River's ``progressive_val_score`` computes it
(Blum, Kalai, Langford 1999). The runner (:class:`ProgressiveValidation`) takes decoded runs
(:func:`streamsgd.codec.decode_poll`), cuts them into minibatches with the service's
:class:`~streamsgd.training.buffer.MinibatchBuffer`, and for each minibatch of m samples

1. scores it: z = X w + b with :meth:`OnlineLogisticRegression.decision_function`, the raw
   row's score, which ``/predict`` answers and the step itself uses (a row whose norm exceeds
   κ s keeps its score; only its gradient is weighted by c_i = κ s / ‖v_i‖, see
   :mod:`streamsgd.core.row_scale`);
2. learns it with :meth:`OnlineLogisticRegression.learn_batch`.

At m = 1 this is the definition of the m = 1 steps, one ``learn_batch`` per sample; the
service's faster block path (:func:`streamsgd.core.sequential.learn_sequence`) takes the same
steps up to rounding but does not expose the pre-step scores.

The metrics are unweighted (importance weights change the steps, not the count of a
prediction) and cover every sample that was scored, including the samples of a step the
model skipped (a prediction was made; the step that would have made θ non-finite was not).

Metrics, over n scored samples with scores z_i and labels y_i ∈ {0, 1}::

    accuracy = (1/n) Σ_i [ (z_i ≥ 0) = y_i ]
    log_loss = (1/n) Σ_i softplus(z_i) − y_i z_i
    roc_auc  = P(z⁺ > z⁻) + ½ P(z⁺ = z⁻)   (Mann–Whitney U / (n₊ n₋), average ranks for ties)

Pure: no I/O, no clocks; the CLI (:mod:`streamsgd.cli.evaluate`) reads the source.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from ..codec import Decoded, DecodedRun, Rejection
from ..core.losses import log_loss, sigmoid
from ..core.model import BatchStats, OnlineLogisticRegression
from ..core.types import FloatArray
from .buffer import MinibatchBuffer

__all__ = [
    "ProgressiveResult",
    "ProgressiveValidation",
    "accuracy",
    "mean_log_loss",
    "roc_auc",
]


# ---------------------------------------------------------------------------- metrics
def _scores_and_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[FloatArray, FloatArray]:
    z = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if z.shape != y.shape:
        raise ValueError(f"{len(z)} scores for {len(y)} labels")
    return z, y


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Exact area under the ROC curve, ties counted one half.

    AUC = (R₊ − n₊(n₊ + 1)/2) / (n₊ n₋), with R₊ the sum of the positives' ranks among all n
    scores (rank 1 = smallest) and tied scores given the average of the ranks they span. This
    equals the fraction of (positive, negative) pairs ordered correctly, a tied pair counting
    ½ (Mann–Whitney U). O(n log n).

    Parameters
    ----------
    scores : array of shape (n,)
        Any monotone transform of p(y = 1 | x) (scores or probabilities). NaN scores make the
        result NaN.
    labels : array of shape (n,)
        0 or 1.

    Returns
    -------
    float
        In [0, 1]; NaN when one class is absent (the AUC is undefined) or a score is NaN.
    """
    z, y = _scores_and_labels(scores, labels)
    positive = y == 1.0
    n_positive = int(np.count_nonzero(positive))
    n_negative = len(y) - n_positive
    if n_positive == 0 or n_negative == 0 or np.isnan(z).any():
        return math.nan
    order = np.argsort(z, kind="mergesort")
    sorted_z = z[order]
    # Runs of equal scores: [starts[k], starts[k + 1]) in sorted order; each member gets the
    # average of the 1-based ranks the run spans.
    starts = np.flatnonzero(np.r_[True, sorted_z[1:] != sorted_z[:-1]])
    ends = np.r_[starts[1:], len(z)]
    average_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(z))
    ranks[order] = np.repeat(average_rank, ends - starts)
    u = float(ranks[positive].sum()) - n_positive * (n_positive + 1) / 2.0
    return u / (n_positive * n_negative)


def accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of samples with (z ≥ 0) = y, the model's ``predict`` rule; NaN when n = 0."""
    z, y = _scores_and_labels(scores, labels)
    if len(z) == 0:
        return math.nan
    return float(np.count_nonzero((z >= 0.0) == (y == 1.0))) / len(z)


def mean_log_loss(scores: ArrayLike, labels: ArrayLike) -> float:
    """(1/n) Σ softplus(z_i) − y_i z_i, computed from the scores (no clipping of p needed:
    finite for any finite z); NaN when n = 0 or a score is NaN."""
    z, y = _scores_and_labels(scores, labels)
    if len(z) == 0:
        return math.nan
    return float(log_loss(z, y).mean())


# ---------------------------------------------------------------------------- the runner
@dataclass(frozen=True)
class ProgressiveResult:
    """What a progressive validation measured.

    Attributes
    ----------
    scores : ndarray of shape (n,)
        Each sample's pre-step score z_i = wᵀx_i + b, in stream order.
    labels : ndarray of shape (n,)
    step_sizes : ndarray of shape (n_steps,)
        m of every step attempted, in order (Σ = n); with ``scores`` it gives the loss trace.
    n_updates : int
        Steps applied (the model's ``n_updates`` gained during the run).
    n_rejected : int
        Records the decoder rejected (no sample, no prediction).
    n_samples_skipped : int
        Samples of steps not applied (scored, not learned).
    batch_size : int
        The m requested for the last step (the configured or controlled batch size).
    learning_rate : float
        η of the last step (NaN when there was none).
    """

    scores: FloatArray
    labels: FloatArray
    step_sizes: np.ndarray
    n_updates: int
    n_rejected: int
    n_samples_skipped: int
    batch_size: int
    learning_rate: float

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def probabilities(self) -> FloatArray:
        """σ(z_i): each sample's pre-step p(y = 1 | x)."""
        return sigmoid(self.scores)

    @property
    def accuracy(self) -> float:
        return accuracy(self.scores, self.labels)

    @property
    def log_loss(self) -> float:
        return mean_log_loss(self.scores, self.labels)

    @property
    def roc_auc(self) -> float:
        return roc_auc(self.scores, self.labels)

    def loss_trace(self) -> FloatArray:
        """Progressive mean log loss after each step, shape (n_steps,): entry k is the mean
        loss of the samples of steps 0..k."""
        losses = log_loss(self.scores, self.labels)
        ends = np.cumsum(self.step_sizes)
        return np.cumsum(losses)[ends - 1] / ends if len(ends) else np.zeros(0)


BatchSizeSource = int | Callable[[], int]


@dataclass
class ProgressiveValidation:
    """Test-then-train over decoded runs, minibatch by minibatch.

    Parameters
    ----------
    model : OnlineLogisticRegression
        Learns in place.
    batch_size : int or callable returning int
        m of the next step, asked once per step (after the previous step), so a controller
        may change it during the run (``--batch-size auto``); an int is a fixed m.
    max_samples : int, optional
        Take at most this many samples from the stream.
    on_step : callable, optional
        Called with each step's :class:`BatchStats` after it (a controller observes the
        stream's gradient statistics through it).

    Usage: :meth:`feed` each poll's decoded items, then :meth:`finish` once the stream ends.
    """

    model: OnlineLogisticRegression
    batch_size: BatchSizeSource = 32
    max_samples: int | None = None
    on_step: Callable[[BatchStats], None] | None = None
    buffer: MinibatchBuffer = field(default_factory=MinibatchBuffer)
    n_rejected: int = 0
    n_samples_skipped: int = 0
    n_samples_taken: int = 0
    _scores: list[FloatArray] = field(default_factory=list)
    _labels: list[FloatArray] = field(default_factory=list)
    _step_sizes: list[int] = field(default_factory=list)
    _last_batch_size: int = 0
    _pending_batch_size: int | None = None
    _last_learning_rate: float = math.nan
    _updates_before: int | None = None

    def next_batch_size(self) -> int:
        """m of the next step (≥ 1)."""
        m = self.batch_size() if callable(self.batch_size) else self.batch_size
        if m < 1:
            raise ValueError(f"batch size must be >= 1, got {m}")
        return int(m)

    @property
    def remaining(self) -> int | None:
        """Samples the stream may still contribute (None: unbounded)."""
        if self.max_samples is None:
            return None
        return self.max_samples - self.n_samples_taken - len(self.buffer)

    @property
    def done(self) -> bool:
        """True once ``max_samples`` samples were taken."""
        return self.remaining == 0

    def feed(self, decoded: Iterable[Decoded]) -> None:
        """Buffer one poll's decoded runs (rejections are counted) and take every full step."""
        if self._updates_before is None:
            self._updates_before = self.model.n_updates
        for item in decoded:
            if isinstance(item, Rejection):
                self.n_rejected += 1
                continue
            assert isinstance(item, DecodedRun)
            remaining = self.remaining
            if remaining is not None and remaining <= 0:
                break
            self.buffer.append_decoded(item, remaining)
            self._steps(final=False)

    def finish(self) -> ProgressiveResult:
        """Take the remaining (possibly partial) minibatch and return the result."""
        if self._updates_before is None:
            self._updates_before = self.model.n_updates
        self._steps(final=True)
        empty = np.zeros(0)
        return ProgressiveResult(
            scores=np.concatenate(self._scores) if self._scores else empty,
            labels=np.concatenate(self._labels) if self._labels else empty,
            step_sizes=np.asarray(self._step_sizes, dtype=np.int64),
            n_updates=self.model.n_updates - self._updates_before,
            n_rejected=self.n_rejected,
            n_samples_skipped=self.n_samples_skipped,
            batch_size=self._last_batch_size or self.next_batch_size(),
            learning_rate=self._last_learning_rate,
        )

    def _steps(self, *, final: bool) -> None:
        """Steps while a full minibatch is buffered (``final``: also a last partial one)."""
        while len(self.buffer):
            # m is decided once per step, after the previous one, and kept while the
            # buffer fills: the source of m is asked exactly once per step.
            if self._pending_batch_size is None:
                self._pending_batch_size = self.next_batch_size()
            m = self._pending_batch_size
            if len(self.buffer) < m and not final:
                return
            self._pending_batch_size = None
            self._step(m)

    def _step(self, m: int) -> None:
        batch = self.buffer.take(m)
        # The pre-step score, unclipped: what /predict answers with these weights.
        z = self.model.decision_function(batch.X)
        stats = self.model.learn_batch(batch.X, batch.y, batch.sample_weight)
        self._scores.append(z)
        self._labels.append(batch.y)
        self._step_sizes.append(batch.n_samples)
        self.n_samples_taken += batch.n_samples
        self.n_samples_skipped += batch.n_samples if stats.skipped else 0
        self._last_batch_size = m
        self._last_learning_rate = stats.learning_rate
        if self.on_step is not None:
            self.on_step(stats)
