"""Online logistic regression trained by minibatch-averaged SGD."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .gradient_stats import BatchSums, RunningGradientStatistics
from .losses import sigmoid
from .schedules import LearningRateSchedule
from .sparse import SparseRows
from .types import FloatArray

Features = FloatArray | SparseRows

REDUCTIONS = ("mean", "sum")
OPTIMIZERS = ("sgd", "adagrad")
STATE_FORMAT = "streamsgd.OnlineLogisticRegression/1"
# A sparse minibatch keeps its gradient at the columns it touches while nnz < this × d;
# measured at d = 2^18: O(nnz) column sums cost ≈ 6 ns per entry, the dense step ≈ 1.5 ns
# per column.
SPARSE_STEP_MAX_DENSITY = 0.125


@dataclass(frozen=True)
class BatchStats:
    """What one call of :meth:`OnlineLogisticRegression.learn_batch` measured.

    Attributes
    ----------
    n_samples : int
        m, the number of samples in the minibatch.
    loss : float
        Mean log loss of the batch under the pre-step weights (progressive validation).
    n_misclassified : int
        Samples whose pre-step prediction (z ≥ 0 ↔ class 1) differs from the label.
    gradient_norm : float
        ‖ḡ‖ over (w, b), the loss part only (no regulariser).
    gradient_variance : float
        tr Σ̂ of the per-sample loss gradients over (w, b), ddof = 1; NaN when m = 1.
    learning_rate : float
        η_t used by the step.
    skipped : bool
        True when the step would have made the weights non-finite and was not applied.
    sums : BatchSums
        The additive per-batch sums everything above is derived from.
    """

    n_samples: int
    loss: float
    n_misclassified: int
    gradient_norm: float
    gradient_variance: float
    learning_rate: float
    skipped: bool
    sums: BatchSums

    @property
    def estimator_variance(self) -> float:
        """tr Σ̂ / m: variance of the averaged gradient ḡ that the step uses."""
        return self.gradient_variance / self.n_samples


class OnlineLogisticRegression:
    """Binary logistic regression p(y=1 | x) = σ(wᵀx + b), learned one minibatch at a time.

    Each call of :meth:`learn_batch` takes one step on the mean of the per-sample gradients,
    after scoring the batch with the pre-step weights (test-then-train)::

        ḡ = (1/m) Σ_i s_i (σ(z_i) − y_i) [x_i ; 1]
        w ← prox_{η_t λ₁}( w − η_t (ḡ_w + λ₂ w) ),   b ← b − η_t ḡ_b

    with prox_τ(v) = sign(v) max(|v| − τ, 0) and s_i the optional importance weights.
    The intercept is never regularised. ``reduction="sum"`` steps on the gradient of the
    summed objective Σ_i (s_i ℓ_i + λ₂‖w‖²/2 + λ₁‖w‖₁) instead, so ``sum`` with η/m takes
    the same step as ``mean`` with η.

    ``optimizer="adagrad"`` scales each coordinate of the same averaged gradient by
    1/(√(Σ_steps ḡ_j²) + ε) (Duchi et al. 2011); the L1 threshold is scaled the same way.

    Parameters
    ----------
    n_features : int
        d.
    learning_rate : float
        η₀ > 0.
    learning_rate_schedule : {"constant", "inverse_scaling"}
        η_t = η₀, or η_t = η₀ / (1 + decay·t)^power with t = ``n_updates``.
    decay, power : float
        Parameters of ``inverse_scaling``.
    l2, l1 : float
        λ₂, λ₁ ≥ 0; may be combined (elastic net).
    reduction : {"mean", "sum"}
    optimizer : {"sgd", "adagrad"}
    adagrad_epsilon : float
        ε of AdaGrad.
    stats_smoothing : float
        α of the EWMAs in :class:`RunningGradientStatistics` (window ≈ 1/α steps).
    gradient_statistics : bool
        Compute Σ‖g_i‖² and the running variance statistics (the default). False takes the
        same steps without them (no row norms ‖x_i‖²): ``gradient_variance`` is then NaN
        and the running statistics stay undefined.
    """

    def __init__(
        self,
        n_features: int,
        *,
        learning_rate: float = 0.1,
        learning_rate_schedule: str = "constant",
        decay: float = 1.0,
        power: float = 0.5,
        l2: float = 0.0,
        l1: float = 0.0,
        reduction: str = "mean",
        optimizer: str = "sgd",
        adagrad_epsilon: float = 1e-8,
        stats_smoothing: float = 0.05,
        gradient_statistics: bool = True,
    ) -> None:
        if not (isinstance(n_features, int | np.integer) and n_features >= 1):
            raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if not (l2 >= 0.0 and l1 >= 0.0):
            raise ValueError("l2 and l1 must be >= 0")
        if not adagrad_epsilon > 0.0:
            raise ValueError("adagrad_epsilon must be > 0")
        self.n_features = int(n_features)
        self.schedule = LearningRateSchedule(learning_rate, learning_rate_schedule, decay, power)
        self.l2 = float(l2)
        self.l1 = float(l1)
        self.reduction = reduction
        self.optimizer = optimizer
        self.adagrad_epsilon = float(adagrad_epsilon)
        self.gradient_statistics = bool(gradient_statistics)
        # θ = [w ; b]. A dense step replaces it; a sparse step writes its few columns in
        # place under _lock, which readers in other threads (HTTP, metrics) take for their
        # snapshot (``parameters``), so that they always see one consistent θ.
        self._theta: FloatArray = np.zeros(self.n_features + 1)
        self._lock = threading.Lock()
        self._squared_gradient_sum: FloatArray | None = (
            np.zeros(self.n_features + 1) if optimizer == "adagrad" else None
        )
        self.n_updates = 0
        self.n_samples_seen = 0
        self.gradient_stats = RunningGradientStatistics(smoothing=stats_smoothing)
        self._column_workspace: NDArray[np.intp] | None = None  # see batch_sums

    # ------------------------------------------------------------------ parameters
    @property
    def learning_rate(self) -> float:
        return self.schedule.learning_rate

    def _snapshot(self) -> FloatArray:
        with self._lock:
            return self._theta.copy()

    @property
    def coef_(self) -> FloatArray:
        """w, shape (n_features,)."""
        return self._snapshot()[:-1]

    @property
    def intercept_(self) -> float:
        """b."""
        return float(self._theta[-1])

    @property
    def parameters(self) -> FloatArray:
        """θ = [w ; b], shape (n_features + 1,): a read-only copy of the current weights,
        consistent even while another thread trains the model."""
        snapshot = self._snapshot()
        snapshot.flags.writeable = False
        return snapshot

    # ------------------------------------------------------------------ inference
    def _check_features(self, X: ArrayLike | SparseRows) -> Features:
        if isinstance(X, SparseRows):
            if X.n_features != self.n_features:
                raise ValueError(f"X has {X.n_features} features, expected {self.n_features}")
            return X
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n, {self.n_features}), got {X.shape}")
        return X

    @staticmethod
    def _scores(X: Features, theta: FloatArray) -> FloatArray:
        w, b = theta[:-1], theta[-1]
        if isinstance(X, SparseRows):
            return X.matvec(w) + b
        return X @ w + b

    def decision_function(self, X: ArrayLike | SparseRows) -> FloatArray:
        """z = X w + b, shape (n,)."""
        return self._scores(self._check_features(X), self._snapshot())

    def predict_proba(self, X: ArrayLike | SparseRows) -> FloatArray:
        """p(y = 1 | x) for each row, shape (n,)."""
        return sigmoid(self.decision_function(X))

    def predict(self, X: ArrayLike | SparseRows) -> NDArray[np.int64]:
        """Class labels in {0, 1}, shape (n,)."""
        return (self.decision_function(X) >= 0.0).astype(np.int64)

    # ------------------------------------------------------------------ learning
    def batch_sums(
        self, X: Features, y: FloatArray, sample_weight: FloatArray | None = None
    ) -> BatchSums:
        """Per-batch sums under the current weights (see :class:`BatchSums`). O(m·d).

        σ(z) and ℓ share e = exp(−|z|): σ(z) = [z ≥ 0 ? 1 : e] / (1 + e) and, for
        y ∈ {0, 1}, ℓ = log1p(e) + max((1 − 2y)·z, 0) (the forms of :mod:`.losses`). At
        m = 256 the step is bound by the number of numpy calls, not by arithmetic.
        """
        theta = self._theta
        z = X.matvec(theta[:-1]) if isinstance(X, SparseRows) else X @ theta[:-1]
        z += theta[-1]
        e = np.abs(z)
        np.negative(e, out=e)
        np.exp(e, out=e)
        positive = z >= 0.0
        r = np.where(positive, 1.0, e)
        r /= e + 1.0
        r -= y
        # For y ∈ {0, 1}, δ = [z ≥ 0] − y is ±1 exactly on the misclassified samples and
        # 0 elsewhere, and Σ max((1 − 2y)·z, 0) = zᵀδ: one vector for both. Only an
        # overflowed score (z = ±inf) makes zᵀδ NaN (inf · 0); the max form is exact there.
        wrong = positive - y
        loss_sum = float(np.log1p(e).sum() + z @ wrong)
        if math.isnan(loss_sum):
            loss_sum = float(np.log1p(e).sum() + np.maximum((1.0 - 2.0 * y) * z, 0.0).sum())
        n_misclassified = int(np.count_nonzero(wrong))
        if sample_weight is not None:
            r *= sample_weight
        columns = None
        if (
            isinstance(X, SparseRows)
            and len(y) >= 2
            and not (self.l1 or self.l2)
            and SPARSE_STEP_MAX_DENSITY * self.n_features > len(X.indices)
        ):
            # Only the columns the batch touches move (no regulariser reaches the others):
            # keep the gradient at those columns, so the step costs O(nnz), not
            # O(n_features). (A dense pass is cheaper once nnz nears n_features.)
            if self._column_workspace is None:
                self._column_workspace = np.empty(self.n_features, dtype=np.intp)
            columns, column_sums = X.rmatvec_columns(r, self._column_workspace)
            gradient_sum = np.empty(len(columns) + 1)
            gradient_sum[:-1] = column_sums
        else:
            gradient_sum = np.empty(self.n_features + 1)
            if isinstance(X, SparseRows):
                gradient_sum[:-1] = X.rmatvec(r)
            else:
                np.matmul(r, X, out=gradient_sum[:-1])
        gradient_sum[-1] = r.sum()
        squared_norm_sum = math.nan
        if self.gradient_statistics:
            # ‖g_i‖² = r_i² ‖[x_i ; 1]‖²: one more pass over X, for the row norms.
            row_sq = X.row_squared_norms() if isinstance(X, SparseRows) else np.vecdot(X, X)
            row_sq += 1.0
            squared_norm_sum = float((r * r) @ row_sq)
        return BatchSums(
            n_samples=len(y),
            gradient_sum=gradient_sum,
            gradient_squared_norm_sum=squared_norm_sum,
            loss_sum=loss_sum,
            n_misclassified=n_misclassified,
            gradient_columns=columns,
        )

    def apply_step(self, sums: BatchSums) -> tuple[float, bool]:
        """Take one step from the batch sums; returns (η_t, skipped).

        The step is skipped (weights, counters and statistics unchanged) when it would
        make any weight non-finite.
        """
        m = sums.n_samples
        eta = self.schedule(self.n_updates)
        if sums.gradient_columns is not None:
            return eta, self._apply_sparse_step(sums, eta)
        theta = self._theta
        if self.reduction == "mean":
            direction = sums.gradient_sum / m
            l2, l1 = self.l2, self.l1
        else:
            direction = sums.gradient_sum.copy()
            l2, l1 = self.l2 * m, self.l1 * m
        if l2:
            direction[:-1] += l2 * theta[:-1]
        if self._squared_gradient_sum is not None:
            accumulated = self._squared_gradient_sum + direction * direction
            step_size: FloatArray | float = eta / (np.sqrt(accumulated) + self.adagrad_epsilon)
        else:
            accumulated = None
            step_size = eta
        new_theta = theta - step_size * direction
        if l1:
            threshold = (step_size[:-1] if isinstance(step_size, np.ndarray) else step_size) * l1
            w = new_theta[:-1]
            new_theta[:-1] = np.sign(w) * np.maximum(np.abs(w) - threshold, 0.0)
        if not np.isfinite(new_theta).all():
            return eta, True
        self._theta = new_theta
        if accumulated is not None:
            self._squared_gradient_sum = accumulated
        self.n_updates += 1
        self.n_samples_seen += m
        # Extreme (finite) inputs can overflow Σ‖g_i‖² alone; keep it out of the EWMAs.
        if math.isfinite(sums.gradient_squared_norm_sum):
            self.gradient_stats.update(sums)
        return eta, False

    def _apply_sparse_step(self, sums: BatchSums, eta: float) -> bool:
        """:meth:`apply_step` for a gradient kept at its columns (no L1, no L2): the same
        arithmetic on those columns and the intercept, which are the only entries the
        dense step changes. Returns ``skipped``."""
        assert sums.gradient_columns is not None and not (self.l1 or self.l2)
        m = sums.n_samples
        active = np.append(sums.gradient_columns, self.n_features)  # + the intercept
        direction = sums.gradient_sum / m if self.reduction == "mean" else sums.gradient_sum
        theta = self._theta
        if self._squared_gradient_sum is not None:
            accumulated = self._squared_gradient_sum[active] + direction * direction
            step_size = eta / (np.sqrt(accumulated) + self.adagrad_epsilon)
            moved = theta[active] - step_size * direction
        else:
            moved = theta[active] - eta * direction
        if not np.isfinite(moved).all():
            return True
        with self._lock:  # in place: a copy of θ would cost O(n_features)
            theta[active] = moved
        if self._squared_gradient_sum is not None:
            self._squared_gradient_sum[active] = accumulated
        self.n_updates += 1
        self.n_samples_seen += m
        if math.isfinite(sums.gradient_squared_norm_sum):
            self.gradient_stats.update(sums)
        return False

    def learn_batch(
        self,
        X: ArrayLike | SparseRows,
        y: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> BatchStats:
        """Score the minibatch with the current weights, then take one SGD step on it.

        Parameters
        ----------
        X : ndarray of shape (m, n_features), or SparseRows
            m ≥ 1.
        y : array of shape (m,)
            Labels in {0, 1}.
        sample_weight : array of shape (m,), optional
            Importance weights s_i ≥ 0, multiplying each sample's gradient.

        Returns
        -------
        BatchStats
            Pre-step loss and gradient statistics of this batch, and the η used.
        """
        X = self._check_features(X)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        m = len(y)
        if m == 0 or X.shape[0] != m:
            raise ValueError(f"X has {X.shape[0]} rows but y has {m} labels (need ≥ 1)")
        # y(1 − y) is 0 exactly for y ∈ {0, 1} (NaN and ±inf give non-zero): one pass.
        if np.count_nonzero(y * (1.0 - y)):
            raise ValueError("labels must be 0 or 1")
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            if weights.shape != (m,) or np.any(~(weights >= 0.0)) or np.any(np.isinf(weights)):
                raise ValueError("sample_weight must be finite, >= 0 and of shape (m,)")
        # Overflow to inf/nan is expected on extreme input and handled: such a step is
        # skipped (apply_step checks), so it must not also raise or warn.
        with np.errstate(over="ignore", invalid="ignore"):
            sums = self.batch_sums(X, y, weights)
            eta, skipped = self.apply_step(sums)
            return BatchStats(
                n_samples=m,
                loss=sums.loss_sum / m,
                n_misclassified=sums.n_misclassified,
                gradient_norm=math.sqrt(sums.mean_gradient_squared_norm),
                gradient_variance=sums.gradient_variance,
                learning_rate=eta,
                skipped=skipped,
                sums=sums,
            )

    # ------------------------------------------------------------------ state
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, enough to build an identical untrained model."""
        return {
            "n_features": self.n_features,
            "learning_rate": self.schedule.learning_rate,
            "learning_rate_schedule": self.schedule.kind,
            "decay": self.schedule.decay,
            "power": self.schedule.power,
            "l2": self.l2,
            "l1": self.l1,
            "reduction": self.reduction,
            "optimizer": self.optimizer,
            "adagrad_epsilon": self.adagrad_epsilon,
            "stats_smoothing": self.gradient_stats.smoothing,
            "gradient_statistics": self.gradient_statistics,
        }

    def get_state(self) -> dict[str, Any]:
        """Everything needed to resume bit-for-bit: params, weights, optimiser state,
        counters and running statistics (numpy arrays and plain Python values)."""
        return {
            "format": STATE_FORMAT,
            "params": self.get_params(),
            "theta": self._snapshot(),
            "squared_gradient_sum": None
            if self._squared_gradient_sum is None
            else self._squared_gradient_sum.copy(),
            "n_updates": self.n_updates,
            "n_samples_seen": self.n_samples_seen,
            "gradient_stats": self.gradient_stats.get_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OnlineLogisticRegression:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported model state format {state.get('format')!r}")
        model = cls(**state["params"])
        theta = np.asarray(state["theta"], dtype=np.float64)
        if theta.shape != (model.n_features + 1,):
            raise ValueError("model state has weights of the wrong shape")
        model._theta = theta.copy()
        # The optimiser named by params wins: AdaGrad resumes its accumulators, or starts
        # them at zero when the model was trained with plain SGD so far.
        if model.optimizer == "adagrad" and state["squared_gradient_sum"] is not None:
            model._squared_gradient_sum = np.asarray(
                state["squared_gradient_sum"], dtype=np.float64
            ).copy()
        model.n_updates = int(state["n_updates"])
        model.n_samples_seen = int(state["n_samples_seen"])
        model.gradient_stats = RunningGradientStatistics.from_state(state["gradient_stats"])
        model.gradient_stats.smoothing = float(state["params"]["stats_smoothing"])
        return model
