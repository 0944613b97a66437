"""Fast pure-online learning: many consecutive m = 1 steps in one call.

Calling :meth:`OnlineLogisticRegression.learn_batch` once per sample costs a few dozen numpy
calls per sample (≈ 30 µs). :func:`learn_sequence` takes the *same* steps — one SGD step per
sample, each sample scored with the weights before its own step — but processes the samples in
blocks of K and needs only a handful of numpy calls per block, plus a short pure-Python scalar
recursion per sample.

The block recursion (plain SGD, no L1; DESIGN §2 with m = 1)
-----------------------------------------------------------
One m = 1 step on sample t (importance weight s_t, 1-based step counter of the schedule
t₀ + t) is::

    r_t = s_t (σ(z_t) − y_t),   q_t = η_t r_t,   a_t = 1 − η_t λ₂
    w_{t+1} = a_t w_t − q_t x_t,                 b_{t+1} = b_t − q_t

Unrolled over a block that starts from (w₀, b₀), with P_t = Π_{u<t} a_u and
c_{t,s} = Π_{s<u<t} a_u = P_t / P_{s+1}::

    w_t = P_t w₀ − Σ_{s<t} q_s c_{t,s} x_s
    z_t = x_tᵀ w_t + b_t
        = P_t (x_tᵀ w₀) + b₀ − Σ_{s<t} q_s (c_{t,s} x_tᵀ x_s + 1)

so inside a block the scores need only the K × K Gram matrix G = X_B X_Bᵀ and the K
projections X_B w₀: O(K d) numpy work per block, O(K) scalar work per sample. After the block
w_K = P_K w₀ − X_Bᵀ (q ∘ c_K) and b_K = b₀ − Σ q_s. The products are taken in log space
(c_{t,s} = exp(L_t − L_{s+1}), L_t = Σ_{u<t} log a_u), so neither overflows.

The running gradient statistics of the m = 1 steps are exponentially weighted moving
averages (EWMA, smoothing α) of g_t = r_t [x_t ; 1] and of ‖g_t‖² = r_t² (‖x_t‖² + 1). Over
n steps each one unrolls to::

    ḡ_n = (1 − α)^n ḡ₀ + Σ_t α (1 − α)^(n−1−t) g_t

(started at the first value when it was still undefined), computed here for all but the last
step in closed form; the last step goes through
:meth:`RunningGradientStatistics.update` itself so that every derived quantity is exactly the
one that method computes.

Configurations the recursion does not cover — ``optimizer="adagrad"``, ``l1 > 0``, sparse
features (:class:`SparseRows`), or a factor a_t ≤ 0 — fall back to calling ``learn_batch``
once per sample, which is the definition. A block whose result is not finite (a step the model
would skip) is undone and replayed the same way, so skipped steps are counted exactly as in the
per-sample loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import mul

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .gradient_stats import BatchSums
from .losses import log_loss, sigmoid
from .model import OnlineLogisticRegression
from .sparse import SparseRows
from .types import FloatArray

DEFAULT_BLOCK_SIZE = 32
_GRAM_SPAN = 4096  # samples whose block Gram matrices are computed in one call


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
        The per-sample pre-step losses ℓ_t.
    """

    n_samples: int
    loss_sum: float
    n_misclassified: int
    n_skipped: int
    learning_rate: float
    fast_path: bool
    losses: FloatArray

    @property
    def loss(self) -> float:
        """Mean progressive loss Σ ℓ_t / n (NaN when n = 0)."""
        return self.loss_sum / self.n_samples if self.n_samples else math.nan


def fast_path_unsupported(model: OnlineLogisticRegression, X: object) -> str | None:
    """Why :func:`learn_sequence` must fall back to the per-sample loop, or None.

    Parameters
    ----------
    model : OnlineLogisticRegression
    X : ndarray of shape (n, d), or SparseRows

    Returns
    -------
    str or None
        A short reason (``"adagrad"``, ``"l1"``, ``"sparse"``), None when the block
        recursion applies.
    """
    if model.optimizer != "sgd":
        return model.optimizer
    if model.l1 > 0.0:
        return "l1"
    if isinstance(X, SparseRows):
        return "sparse"
    return None


def _validate(
    model: OnlineLogisticRegression,
    X: ArrayLike | SparseRows,
    y: ArrayLike,
    sample_weight: ArrayLike | None,
) -> tuple[FloatArray | SparseRows, FloatArray, FloatArray | None]:
    features = model._check_features(X)
    labels = np.asarray(y, dtype=np.float64).reshape(-1)
    if features.shape[0] != len(labels):
        raise ValueError(f"X has {features.shape[0]} rows but y has {len(labels)} labels")
    if np.any((labels != 0.0) & (labels != 1.0)):
        raise ValueError("labels must be 0 or 1")
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if weights.shape != labels.shape or np.any(~(weights >= 0.0)) or np.any(np.isinf(weights)):
            raise ValueError("sample_weight must be finite, >= 0 and of shape (n,)")
    return features, labels, weights


def _per_sample_loop(
    model: OnlineLogisticRegression,
    X: FloatArray | SparseRows,
    y: FloatArray,
    weights: FloatArray | None,
    start: int,
    stop: int,
    losses: FloatArray,
) -> tuple[int, int, float]:
    """The definition: ``learn_batch`` on each single sample of [start, stop).

    Writes the per-sample losses into ``losses``; returns (misclassified, skipped, last η).
    """
    missed = skipped = 0
    eta = math.nan
    for i in range(start, stop):
        xi = X.slice_rows(i, i + 1) if isinstance(X, SparseRows) else X[i : i + 1]
        stats = model.learn_batch(xi, y[i : i + 1], None if weights is None else weights[i : i + 1])
        losses[i] = stats.loss
        missed += stats.n_misclassified
        skipped += int(stats.skipped)
        eta = stats.learning_rate
    return missed, skipped, eta


def _ewma_closed_form(
    previous: FloatArray | float | None, values: FloatArray, alpha: float
) -> FloatArray | float:
    """EWMA q ← q + α (v_t − q) over the rows of ``values`` (shape (n,) or (n, k)), n ≥ 1.

    ``previous`` None or NaN means undefined: the average then starts at ``values[0]``.
    Result: (1 − α)^n q₀ + Σ_t α (1 − α)^(n−1−t) v_t, or without q₀ the first weight is
    (1 − α)^(n−1).
    """
    n = values.shape[0]
    decay = 1.0 - alpha
    weights = alpha * np.power(decay, np.arange(n - 1, -1, -1, dtype=np.float64))
    undefined = previous is None or (np.ndim(previous) == 0 and math.isnan(float(previous)))
    if undefined:
        weights[0] = decay ** (n - 1)
        return weights @ values
    return decay**n * previous + weights @ values


def _fold_statistics(
    model: OnlineLogisticRegression,
    X: FloatArray,
    residuals: FloatArray,
    losses: FloatArray,
    misclassified: NDArray[np.bool_],
) -> None:
    """Fold n consecutive applied m = 1 steps (rows of X with residuals
    r_t = s_t(σ(z_t) − y_t)) into ``model.gradient_stats`` exactly as the per-step
    ``apply_step`` would: a step whose ‖g_t‖² overflows is applied but left out of the
    statistics, the others go through the EWMAs in order."""
    stats = model.gradient_stats
    alpha = stats.smoothing
    r2 = residuals * residuals
    squared_norms = r2 * np.vecdot(X, X) + r2  # ‖g_t‖² = r_t² (‖x_t‖² + 1)
    kept = np.isfinite(squared_norms)
    if not kept.all():
        X, residuals, squared_norms = X[kept], residuals[kept], squared_norms[kept]
        losses, misclassified = losses[kept], misclassified[kept]
    n = len(residuals)
    if n == 0:
        return
    head = n - 1
    if head > 0:
        # Like RunningGradientStatistics.update: the across-step mean gradient is only
        # kept until a batch with m ≥ 2 has been seen.
        if not stats._within_batch_seen:
            r = residuals[:head]
            gradients = np.empty((head, X.shape[1] + 1))
            np.multiply(X[:head], r[:, None], out=gradients[:, :-1])
            gradients[:, -1] = r
            stats.mean_gradient = np.asarray(
                _ewma_closed_form(stats.mean_gradient, gradients, alpha), dtype=np.float64
            )
        stats.mean_squared_norm = float(
            _ewma_closed_form(stats.mean_squared_norm, squared_norms[:head], alpha)
        )
        stats.mean_gradient_squared_norm = float(
            _ewma_closed_form(stats.mean_gradient_squared_norm, squared_norms[:head], alpha)
        )
    # The last step through the method itself: it also sets last_batch_size and the
    # across-step variance estimates, which depend only on the state after the step.
    r_last = float(residuals[-1])
    gradient = np.empty(X.shape[1] + 1)
    gradient[:-1] = r_last * X[-1]
    gradient[-1] = r_last
    stats.update(
        BatchSums(
            n_samples=1,
            gradient_sum=gradient,
            gradient_squared_norm_sum=float(squared_norms[-1]),
            loss_sum=float(losses[-1]),
            n_misclassified=int(misclassified[-1]),
        )
    )


def learn_sequence(
    model: OnlineLogisticRegression,
    X: ArrayLike | SparseRows,
    y: ArrayLike,
    sample_weight: ArrayLike | None = None,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> SequenceStats:
    """Apply n consecutive pure-online (m = 1) steps to ``model``, one per row of X.

    The result — weights, step and sample counters, running gradient statistics — is the
    one of ``for i in range(n): model.learn_batch(X[i:i+1], y[i:i+1], sample_weight[i:i+1])``
    up to floating-point round-off, but for plain SGD without L1 on dense features it is
    computed in blocks of K = ``block_size`` samples with the Gram-matrix recursion::

        z_t = P_t x_tᵀw₀ + b₀ − Σ_{s<t} η_s r_s (c_{t,s} x_tᵀx_s + 1),
        r_t = s_t (σ(z_t) − y_t)

    (module docstring), which handles both learning-rate schedules, L2 and both reductions
    exactly. Other configurations run the per-sample ``learn_batch`` loop.

    Unlike that loop, the whole input is validated before the first step: a bad label or
    weight anywhere raises ``ValueError`` and leaves the model untouched.

    Parameters
    ----------
    model : OnlineLogisticRegression
        Updated in place (``_theta``, ``n_updates``, ``n_samples_seen``, ``gradient_stats``).
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
        Progressive (pre-step) losses, misclassified and skipped counts.
    """
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    features, labels, weights = _validate(model, X, y, sample_weight)
    n = len(labels)
    losses = np.zeros(n)
    if n == 0:
        return SequenceStats(0, 0.0, 0, 0, math.nan, True, losses)

    if fast_path_unsupported(model, features) is not None:
        missed, skipped, eta = _per_sample_loop(model, features, labels, weights, 0, n, losses)
        return SequenceStats(n, float(losses.sum()), missed, skipped, eta, False, losses)

    assert isinstance(features, np.ndarray)
    # Overflow to inf/nan on extreme input is expected and handled (the block is replayed
    # step by step, or the statistics leave the step out), as in learn_batch.
    with np.errstate(over="ignore", invalid="ignore"):
        return _learn_dense(model, np.ascontiguousarray(features), labels, weights, block_size)


def _learn_dense(
    model: OnlineLogisticRegression,
    Xd: FloatArray,
    labels: FloatArray,
    weights: FloatArray | None,
    block_size: int,
) -> SequenceStats:
    """The block recursion for plain SGD without L1 on dense features (module docstring)."""
    n = len(labels)
    losses = np.zeros(n)
    schedule = model.schedule
    l2 = model.l2  # for m = 1, reduction "sum" scales λ₂ by m = 1: the same step
    constant = schedule.kind == "constant"
    eta0 = schedule.learning_rate
    exp = math.exp

    # η for the steps n_updates, n_updates + 1, …; a block indexes it by its first step.
    first_update = model.n_updates
    if constant:
        all_etas = np.full(n, eta0)
    else:
        steps = np.arange(first_update, first_update + n, dtype=np.float64)
        all_etas = eta0 / (1.0 + schedule.decay * steps) ** schedule.power
    all_eta_list = all_etas.tolist()
    label_list = labels.tolist()
    weight_list = None if weights is None else weights.tolist()
    z_all = np.empty(n)
    n_missed = n_skipped = 0
    last_eta = math.nan
    pending_from = 0  # first fast-path sample whose statistics are not folded in yet

    def flush(upto: int) -> None:
        nonlocal pending_from, n_missed
        if upto > pending_from:
            seg = slice(pending_from, upto)
            seg_losses = log_loss(z_all[seg], labels[seg])
            losses[seg] = seg_losses
            missed = (z_all[seg] >= 0.0) != (labels[seg] == 1.0)
            n_missed += int(np.count_nonzero(missed))
            residuals = sigmoid(z_all[seg]) - labels[seg]
            if weights is not None:
                residuals *= weights[seg]
            _fold_statistics(model, Xd[seg], residuals, seg_losses, missed)
        pending_from = upto

    def replay(start: int, stop: int) -> None:
        """Take the block's steps one by one by the definition (learn_batch per sample)."""
        nonlocal pending_from, n_missed, n_skipped, last_eta
        flush(start)
        missed, skipped, last_eta = _per_sample_loop(
            model, Xd, labels, weights, start, stop, losses
        )
        n_missed += missed
        n_skipped += skipped
        pending_from = stop

    # Gram matrices of many blocks at once (one batched matmul and one tolist per span).
    span = max(block_size, (_GRAM_SPAN // block_size) * block_size)
    span_start = span_stop = 0
    grams: FloatArray = np.empty((0, block_size, block_size))
    gram_lists: list[list[float]] = []
    # Strictly lower triangle (s < t), row-major: row t is the t entries s = 0 … t−1.
    lower = np.tril_indices(block_size, -1)

    start = 0
    while start < n:
        stop = min(start + block_size, n)
        k = stop - start
        Xb = Xd[start:stop]
        if start >= span_stop:
            span_start, span_stop = start, min(start + span, n)
            full = (span_stop - span_start) // block_size
            blocks = Xd[span_start : span_start + full * block_size].reshape(
                full, block_size, Xd.shape[1]
            )
            grams = np.matmul(blocks, blocks.transpose(0, 2, 1))
            if span_start + full * block_size < span_stop:
                last = Xd[span_start + full * block_size : span_stop]
                tail_gram = np.zeros((1, block_size, block_size))
                tail_gram[0, : len(last), : len(last)] = last @ last.T
                grams = np.concatenate((grams, tail_gram))
            if not l2:
                gram_lists = (grams[:, lower[0], lower[1]] + 1.0).tolist()
        j = (start - span_start) // block_size
        theta = model._theta
        w0, b0 = theta[:-1], float(theta[-1])
        n0 = model.n_updates
        offset = n0 - first_update  # ≤ start; smaller after skipped steps
        etas = all_etas[offset : offset + k]
        u = Xb @ w0
        if l2:
            gram = grams[j]
            factors = 1.0 - etas * l2
            if not np.all(factors > 0.0):
                replay(start, stop)
                start = stop
                continue
            log_p = np.zeros(k + 1)
            np.cumsum(np.log(factors), out=log_p[1:])  # L_t, t = 0..k
            # c_{t,s} = exp(L_t − L_{s+1}) for s < t (entries s ≥ t are never read).
            decay = np.exp(np.minimum(log_p[:k, None] - log_p[None, 1:], 0.0))
            rows, cols = lower[0][: k * (k - 1) // 2], lower[1][: k * (k - 1) // 2]
            coupling = (gram[rows, cols] * decay[rows, cols] + 1.0).tolist()
            base = (np.exp(log_p[:k]) * u + b0).tolist()
            tail = np.exp(log_p[k] - log_p[1:])  # c_{K,s}
            shrink = math.exp(log_p[k])  # P_K
        else:
            coupling = gram_lists[j]  # x_tᵀx_s + 1 for s < t, row after row
            u += b0
            base = u.tolist()
            tail = None
            shrink = 1.0
        ys = label_list[start:stop]
        eta_list = all_eta_list[offset : offset + k]
        qs: list[float] = []
        zs: list[float] = []
        append_q, append_z = qs.append, zs.append
        # map() stops at the end of qs (t items) before drawing from ``entries``, so row t
        # of the triangle is consumed exactly by step t.
        entries = iter(coupling)
        # The scalar recursion: z_t from the block's start and the earlier q_s, then
        # q_t = η_t s_t (σ(z_t) − y_t), with σ from e = exp(−|z_t|) (never overflows).
        if weight_list is None:
            for t in range(k):
                zt = base[t] - sum(map(mul, qs, entries))
                e = exp(-abs(zt))
                if zt >= 0.0:
                    append_q(eta_list[t] * (1.0 / (1.0 + e) - ys[t]))
                else:
                    append_q(eta_list[t] * (e / (1.0 + e) - ys[t]))
                append_z(zt)
        else:
            sws = weight_list[start:stop]
            for t in range(k):
                zt = base[t] - sum(map(mul, qs, entries))
                e = exp(-abs(zt))
                p = 1.0 / (1.0 + e) if zt >= 0.0 else e / (1.0 + e)
                append_q(eta_list[t] * ((p - ys[t]) * sws[t]))
                append_z(zt)
        coef = np.array(qs) if tail is None else np.array(qs) * tail
        new_theta = np.empty_like(theta)
        if shrink != 1.0:
            np.multiply(w0, shrink, out=new_theta[:-1])
            new_theta[:-1] -= coef @ Xb
        else:
            np.subtract(w0, coef @ Xb, out=new_theta[:-1])
        new_theta[-1] = b0 - sum(qs)
        # inf/nan propagate through the sums: one check for every weight and score.
        # (A false alarm from finite values overflowing the sum only replays the block.)
        if not math.isfinite(float(new_theta.sum()) + sum(zs)):
            replay(start, stop)  # a step of this block would be skipped
            start = stop
            continue
        z_all[start:stop] = zs
        model._theta = new_theta
        model.n_updates = n0 + k
        model.n_samples_seen += k
        last_eta = eta_list[-1]
        start = stop
    flush(n)
    return SequenceStats(
        n_samples=n,
        loss_sum=float(losses.sum()),
        n_misclassified=n_missed,
        n_skipped=n_skipped,
        learning_rate=last_eta,
        fast_path=True,
        losses=losses,
    )
