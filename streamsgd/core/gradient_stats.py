"""Per-minibatch sums of per-sample gradients and the variance statistics derived from them.

Notation (docs/design.md, The math): g_i = r_i · [x_i ; 1] ∈ R^(d+1) is the per-sample
gradient of the loss with respect to (w, b), m the batch size, ḡ = (1/m) Σ_i g_i.

Everything is derived from the additive sums in :class:`BatchSums`, so the sums of several
replicas' batches can be added and give exactly the statistics of the union batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .types import FloatArray, IndexArray


@dataclass
class BatchSums:
    """Additive sums over the samples of one minibatch.

    Attributes
    ----------
    n_samples : int
        m.
    gradient_sum : ndarray of shape (d + 1,), or (k + 1,) with ``gradient_columns``
        Σ_i g_i; the last entry is the intercept component Σ_i r_i.
    gradient_squared_norm_sum : float
        Σ_i ‖g_i‖² = Σ_i r_i² (‖x_i‖² + 1) (with a clipped row: r_i² (κ s)²).
    loss_sum : float
        Σ_i ℓ_i (unweighted, pre-step weights).
    n_misclassified : int
        Number of samples with (z_i ≥ 0) ≠ y_i.
    gradient_columns : ndarray of shape (k,), optional
        Sparse batches (m ≥ 2, few entries): the distinct feature columns the batch touches;
        ``gradient_sum[:-1]`` then holds Σ_i g_i at these columns only (every other column
        of Σ_i g_i is exactly 0), so that a step costs O(k), not O(d).
    capped_norm_sum : float
        Σ_i min(‖[x_i ; 1]‖, κ s), the batch's contribution to the running row scale s
        (:mod:`.row_scale`); 0 when clipping is disabled.
    n_clipped : int
        Samples whose row was scaled down to norm κ s.
    """

    n_samples: int
    gradient_sum: FloatArray
    gradient_squared_norm_sum: float
    loss_sum: float
    n_misclassified: int
    gradient_columns: IndexArray | None = None
    capped_norm_sum: float = 0.0
    n_clipped: int = 0

    def __add__(self, other: BatchSums) -> BatchSums:
        columns = None
        if self.gradient_columns is None and other.gradient_columns is None:
            gradient = self.gradient_sum + other.gradient_sum
        elif self.gradient_columns is not None and other.gradient_columns is not None:
            both = np.concatenate((self.gradient_columns, other.gradient_columns))
            columns, inverse = np.unique(both, return_inverse=True)
            gradient = np.empty(len(columns) + 1)
            gradient[:-1] = np.bincount(
                inverse.reshape(-1),
                weights=np.concatenate((self.gradient_sum[:-1], other.gradient_sum[:-1])),
                minlength=len(columns),
            )
            gradient[-1] = self.gradient_sum[-1] + other.gradient_sum[-1]
        else:
            dense = other if self.gradient_columns is not None else self
            d = len(dense.gradient_sum) - 1
            gradient = self.dense_gradient_sum(d) + other.dense_gradient_sum(d)
        return BatchSums(
            self.n_samples + other.n_samples,
            gradient,
            self.gradient_squared_norm_sum + other.gradient_squared_norm_sum,
            self.loss_sum + other.loss_sum,
            self.n_misclassified + other.n_misclassified,
            columns,
            self.capped_norm_sum + other.capped_norm_sum,
            self.n_clipped + other.n_clipped,
        )

    def dense_gradient_sum(self, n_features: int) -> FloatArray:
        """Σ_i g_i over all d = ``n_features`` columns and the intercept, shape (d + 1,)."""
        if self.gradient_columns is None:
            return self.gradient_sum
        dense = np.zeros(n_features + 1)
        dense[self.gradient_columns] = self.gradient_sum[:-1]
        dense[-1] = self.gradient_sum[-1]
        return dense

    @property
    def mean_gradient(self) -> FloatArray:
        """ḡ = (1/m) Σ g_i, shape (d + 1,) (at ``gradient_columns`` and the intercept
        when those are set)."""
        return self.gradient_sum / self.n_samples

    @cached_property
    def mean_gradient_squared_norm(self) -> float:
        """‖ḡ‖² = ‖Σ g_i‖² / m²."""
        g = self.gradient_sum
        return float(g @ g) / (self.n_samples * self.n_samples)

    @cached_property
    def gradient_variance(self) -> float:
        """tr Σ̂ = (1/(m−1)) (Σ‖g_i‖² − m‖ḡ‖²), the unbiased (ddof = 1) trace of the
        per-sample gradient covariance; NaN for m = 1. Clipped at 0 against round-off."""
        m = self.n_samples
        if m < 2:
            return math.nan
        centred = self.gradient_squared_norm_sum - m * self.mean_gradient_squared_norm
        return max(centred, 0.0) / (m - 1)


def _ewma(previous: float, value: float, smoothing: float) -> float:
    return value if math.isnan(previous) else previous + smoothing * (value - previous)


def ewma_closed_form(
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


@dataclass(frozen=True)
class SingleSteps:
    """n consecutive applied m = 1 steps, as the running statistics see them.

    Step t learned the row x_t with the gradient g_t = a_t [x_t ; 1], where
    a_t = s_t (σ(z_t) − y_t) c_t (c_t the clipping factor).

    Attributes
    ----------
    features : ndarray of shape (n, d)
        x_t.
    gradient_scales : ndarray of shape (n,)
        a_t.
    squared_norms : ndarray of shape (n,)
        ‖g_t‖² (+inf when it overflows: that step is left out of the statistics, as
        ``apply_step`` leaves it out).
    losses : ndarray of shape (n,)
        ℓ_t.
    misclassified : bool ndarray of shape (n,)
    """

    features: FloatArray
    gradient_scales: FloatArray
    squared_norms: FloatArray
    losses: FloatArray
    misclassified: NDArray[np.bool_]

    @property
    def n_steps(self) -> int:
        return len(self.gradient_scales)


@dataclass
class RunningGradientStatistics:
    """Exponentially weighted running estimates of the gradient noise across steps.

    Each quantity q is smoothed as q̄ ← q̄ + α (q − q̄), started at its first value, with
    α = ``smoothing`` (an effective window of about 1/α steps).

    With m ≥ 2 the per-step inputs are within-batch unbiased estimates:
    tr Σ̂ (per-sample variance), tr Σ̂ / m (variance of ḡ), ‖ḡ‖² and
    |G|²_est = ‖ḡ‖² − tr Σ̂ / m. The noise scale B_noise = tr Σ / |G|² (McCandlish et al.
    2018) is the ratio of the *separately smoothed* numerator and denominator; the norm-test
    ratio (Byrd et al. 2012) is smoothed(tr Σ̂/m) / smoothed(‖ḡ‖²), and the batch is large
    enough for the step when it is ≤ θ².

    With m = 1 there is no within-batch variance. Then the estimate is across steps: EWMAs of
    g and of ‖g‖² give tr Σ ≈ (E‖g‖² − ‖E g‖²) / (1 − c) and |G|² ≈ ‖E g‖² − c · tr Σ,
    where c = α / (2 − α) is the variance of an EWMA relative to one draw (stationarity
    assumed; the weights move between steps, so this is an estimate across steps).
    The within-batch estimates are used as soon as any batch has m ≥ 2.
    """

    smoothing: float = 0.05
    per_sample_variance: float = math.nan
    estimator_variance: float = math.nan
    mean_gradient_squared_norm: float = math.nan
    true_gradient_squared_norm: float = math.nan
    # Across-step moments, kept for m = 1.
    mean_gradient: FloatArray | None = None
    mean_squared_norm: float = math.nan
    last_batch_size: int = 0
    _within_batch_seen: bool = field(default=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"stats_smoothing must be in (0, 1], got {self.smoothing}")

    def update(self, sums: BatchSums) -> None:
        """Fold one applied minibatch into the running estimates. O(d)."""
        a = self.smoothing
        m = sums.n_samples
        self.last_batch_size = m
        sq_norm = sums.mean_gradient_squared_norm
        # The across-step mean gradient only serves m = 1 before any larger batch: an O(d)
        # vector update per step, made only while it can still be used.
        if m == 1 and not self._within_batch_seen:
            g_mean = sums.mean_gradient
            self.mean_gradient = (
                g_mean
                if self.mean_gradient is None
                else self.mean_gradient + a * (g_mean - self.mean_gradient)
            )
        self.mean_squared_norm = _ewma(
            self.mean_squared_norm, sums.gradient_squared_norm_sum / m, a
        )
        self.mean_gradient_squared_norm = _ewma(self.mean_gradient_squared_norm, sq_norm, a)
        if m >= 2:
            trace = sums.gradient_variance
            self._within_batch_seen = True
            self.per_sample_variance = _ewma(self.per_sample_variance, trace, a)
            self.estimator_variance = _ewma(self.estimator_variance, trace / m, a)
            self.true_gradient_squared_norm = _ewma(
                self.true_gradient_squared_norm, sq_norm - trace / m, a
            )
        elif not self._within_batch_seen and self.mean_gradient is not None:
            # m = 1 and no larger batch seen yet (after one, its estimates stand)
            c = a / (2.0 - a)
            mean_norm = float(self.mean_gradient @ self.mean_gradient)
            # At α = 1 the EWMAs hold one step only: no variance across steps to estimate.
            spread = max(self.mean_squared_norm - mean_norm, 0.0)
            trace = spread / (1.0 - c) if c < 1.0 else math.nan
            self.per_sample_variance = trace
            self.estimator_variance = trace
            self.true_gradient_squared_norm = mean_norm - c * trace

    def fold_single_steps(self, steps: SingleSteps) -> None:
        """Fold n consecutive applied m = 1 steps exactly as n calls of :meth:`update` would
        (up to round-off), in O(n d) numpy work: all but the last in closed form
        (:func:`ewma_closed_form`), the last through :meth:`update` itself, so that every
        derived quantity is the one that method computes."""
        alpha = self.smoothing
        kept = np.isfinite(steps.squared_norms)
        X, scales, squared_norms = steps.features, steps.gradient_scales, steps.squared_norms
        if not kept.all():
            X, scales, squared_norms = X[kept], scales[kept], squared_norms[kept]
        n = len(scales)
        if n == 0:
            return
        head = n - 1
        if head > 0:
            # As in update: the across-step mean gradient is only kept until a batch with
            # m ≥ 2 has been seen.
            if not self._within_batch_seen:
                gradients = np.empty((head, X.shape[1] + 1))
                np.multiply(X[:head], scales[:head, None], out=gradients[:, :-1])
                gradients[:, -1] = scales[:head]
                self.mean_gradient = np.asarray(
                    ewma_closed_form(self.mean_gradient, gradients, alpha), dtype=np.float64
                )
            self.mean_squared_norm = float(
                ewma_closed_form(self.mean_squared_norm, squared_norms[:head], alpha)
            )
            self.mean_gradient_squared_norm = float(
                ewma_closed_form(self.mean_gradient_squared_norm, squared_norms[:head], alpha)
            )
        # The last step through the method itself: it also sets last_batch_size and the
        # across-step variance estimates, which depend only on the state after the step.
        last = float(scales[-1])
        gradient = np.empty(X.shape[1] + 1)
        gradient[:-1] = last * X[-1]
        gradient[-1] = last
        index = np.flatnonzero(kept)[-1]
        self.update(
            BatchSums(
                n_samples=1,
                gradient_sum=gradient,
                gradient_squared_norm_sum=float(squared_norms[-1]),
                loss_sum=float(steps.losses[index]),
                n_misclassified=int(steps.misclassified[index]),
            )
        )

    @property
    def noise_scale(self) -> float:
        """B_noise = smoothed tr Σ / smoothed |G|²; NaN until defined, inf when |G|² ≤ 0."""
        trace, g2 = self.per_sample_variance, self.true_gradient_squared_norm
        if math.isnan(trace) or math.isnan(g2):
            return math.nan
        return trace / g2 if g2 > 0.0 else math.inf

    @property
    def norm_test_ratio(self) -> float:
        """smoothed(tr Σ̂/m) / smoothed(‖ḡ‖²); the Byrd norm test passes when ≤ θ²."""
        num, den = self.estimator_variance, self.mean_gradient_squared_norm
        if math.isnan(num) or math.isnan(den):
            return math.nan
        return num / den if den > 0.0 else math.inf

    def get_state(self) -> dict[str, Any]:
        return {
            "smoothing": self.smoothing,
            "per_sample_variance": self.per_sample_variance,
            "estimator_variance": self.estimator_variance,
            "mean_gradient_squared_norm": self.mean_gradient_squared_norm,
            "true_gradient_squared_norm": self.true_gradient_squared_norm,
            "mean_gradient": self.mean_gradient,
            "mean_squared_norm": self.mean_squared_norm,
            "last_batch_size": self.last_batch_size,
            "within_batch_seen": self._within_batch_seen,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunningGradientStatistics:
        stats = cls(smoothing=float(state["smoothing"]))
        for key in (
            "per_sample_variance",
            "estimator_variance",
            "mean_gradient_squared_norm",
            "true_gradient_squared_norm",
            "mean_squared_norm",
        ):
            setattr(stats, key, float(state[key]))
        mean = state["mean_gradient"]
        stats.mean_gradient = None if mean is None else np.asarray(mean, dtype=np.float64)
        stats.last_batch_size = int(state["last_batch_size"])
        stats._within_batch_seen = bool(state["within_batch_seen"])
        return stats
