"""Online logistic regression trained by minibatch-averaged SGD: the estimator and its state.

The step arithmetic lives in :mod:`.step`, the bounded-influence row scale in
:mod:`.row_scale`, the input checks in :mod:`.validation`.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .controller import NoiseController
from .deferred import DeferredWork, deferred_state, restore_deferred, settle
from .gradient_stats import BatchSums, RunningGradientStatistics
from .losses import sigmoid
from .row_scale import initial_scale, next_scale, vector_norm
from .schedules import LearningRateSchedule
from .sparse import SparseRows
from .standardize import InputFrame, input_frame
from .step import SPARSE_STEP_MAX_DENSITY, BatchStats, batch_sums, propose_step
from .types import FloatArray
from .validation import Features, check_batch, check_features, check_model_settings

__all__ = ["SPARSE_STEP_MAX_DENSITY", "BatchStats", "Features", "OnlineLogisticRegression"]

STATE_FORMAT = "streamsgd.OnlineLogisticRegression/1"


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

    Bounded influence of one sample (:mod:`.row_scale`): with κ = ``clip_norm_ratio`` > 0
    every sample is scored and learned as c_i [x_i ; 1] with c_i = min(1, κ s / ‖[x_i ; 1]‖),
    s a robust running typical row norm, so that one record moves θ by at most η κ s like an
    ordinary sample of norm κ s; κ = 0 disables clipping (and keeps s fixed).
    A step that would make θ non-finite is skipped (``BatchStats.skipped``); :meth:`health`
    reports a model that is nevertheless not finite or whose ‖w‖ exceeded
    ``max_weight_norm``.

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
        α₀ of the EWMAs in :class:`RunningGradientStatistics` (window ≈ 1/α₀ steps, widened
        while the noise scale exceeds it).
    gradient_statistics : bool
        Compute Σ‖g_i‖² and the running variance statistics (the default). False takes the
        same steps without them (no row norms ‖x_i‖²): ``gradient_variance`` is then NaN
        and the running statistics stay undefined.
    clip_norm_ratio : float
        κ ≥ 0 of the bounded-influence clipping above (0 disables it).
    max_weight_norm : float
        ‖w‖ above which :meth:`health` reports ``"weight_norm"``.
    controller : NoiseController, optional
        Chooses η per step and the next batch size (:mod:`.controller`; ``reduction="mean"``
        only). None (the default): η_t = schedule(n_updates).
    standardize : bool
        Learn on standardised dense features (:mod:`.standardize`); θ reported for raw ones.
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
        clip_norm_ratio: float = 10.0,
        max_weight_norm: float = 1e6,
        controller: NoiseController | None = None,
        standardize: bool = False,
    ) -> None:
        check_model_settings(
            n_features, reduction=reduction, optimizer=optimizer, l1=l1, l2=l2,
            adagrad_epsilon=adagrad_epsilon, clip_norm_ratio=clip_norm_ratio,
            max_weight_norm=max_weight_norm, controlled=controller is not None,
            gradient_statistics=gradient_statistics,
        )  # fmt: skip
        self.controller = controller
        self.n_features = int(n_features)
        self.schedule = LearningRateSchedule(learning_rate, learning_rate_schedule, decay, power)
        self.l2, self.l1 = float(l2), float(l1)
        self.reduction, self.optimizer = reduction, optimizer
        self.adagrad_epsilon = float(adagrad_epsilon)
        self.gradient_statistics = bool(gradient_statistics)
        self.clip_norm_ratio, self.max_weight_norm = float(clip_norm_ratio), float(max_weight_norm)
        self.row_scale = initial_scale(self.n_features)  # s of the clipping
        # θ = [w ; b]. A dense step replaces it; a sparse step writes its few columns in
        # place under _lock, which readers in other threads (HTTP, metrics) take for their
        # snapshot (``parameters``), so that they always see one consistent θ.
        self._theta: FloatArray = np.zeros(self.n_features + 1)
        self._lock = threading.Lock()
        self._squared_gradient_sum: FloatArray | None = (
            np.zeros(self.n_features + 1) if optimizer == "adagrad" else None
        )
        self.n_updates = self.n_samples_seen = 0
        self.gradient_stats = RunningGradientStatistics(smoothing=stats_smoothing)
        # Scratch of the sparse kernel (column and row sparse sets, any content): allocated
        # with the first sparse batch, O(1) (np.empty touches no page).
        self._workspace: NDArray[np.intp] | None = None
        self.inputs: InputFrame = input_frame(self.n_features, bool(standardize))
        self.deferred: DeferredWork | None = None  # of the O(nnz) m = 1 loop (.deferred)

    # ------------------------------------------------------------------ parameters
    @property
    def learning_rate(self) -> float:
        return self.schedule.learning_rate

    def _snapshot(self) -> FloatArray:
        with self._lock:
            return self._theta.copy() if self.deferred is None else self.deferred.folded(self)

    @property
    def coef_(self) -> FloatArray:
        """w (for raw features), shape (n_features,)."""
        return self.inputs.raw_parameters(self._snapshot())[:-1]

    @property
    def intercept_(self) -> float:
        """b (for raw features)."""
        return float(self.inputs.raw_parameters(self._snapshot())[-1])

    @property
    def parameters(self) -> FloatArray:
        """θ = [w ; b] for raw features, shape (d + 1,): a read-only copy, thread-consistent."""
        snapshot = self.inputs.raw_parameters(self._snapshot())
        snapshot.flags.writeable = False
        return snapshot

    def health(self) -> str | None:
        """None when the model is usable, else why not: ``"non_finite"`` (a weight or the
        intercept is NaN or infinite) or ``"weight_norm"`` (‖w‖ > ``max_weight_norm``)."""
        theta = self._snapshot()
        if not np.isfinite(theta).all():
            return "non_finite"
        return "weight_norm" if vector_norm(theta[:-1]) > self.max_weight_norm else None

    # ------------------------------------------------------------------ inference
    def decision_function(self, X: ArrayLike | SparseRows) -> FloatArray:
        """z = X w + b, shape (n,) (standardize: w, b applied to the standardised X)."""
        return self.inputs.scores(check_features(X, self.n_features), self._snapshot())

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
        """Per-batch sums under the current weights and row scale (see :class:`BatchSums`
        and :func:`.step.batch_sums`). O(m·d). Extreme rows overflow quietly (handled)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self._batch_sums(X, y, sample_weight)

    def _batch_sums(
        self, X: Features, y: FloatArray, sample_weight: FloatArray | None
    ) -> BatchSums:
        controller, workspace = self.controller, self._workspace
        settle(self)
        if workspace is None and isinstance(X, SparseRows):
            workspace = self._workspace = np.empty((2, self.n_features), dtype=np.intp)
        columns = workspace is not None and not (self.l1 or self.l2)
        return batch_sums(
            self._theta,
            X,
            y,
            sample_weight,
            row_scale=self.row_scale,
            clip_norm_ratio=self.clip_norm_ratio,
            gradient_statistics=self.gradient_statistics,
            column_workspace=workspace[0] if columns and workspace is not None else None,
            curvature_direction=controller.curvature_direction(self._theta) if controller else None,
            inputs=self.inputs,
            row_workspace=None if workspace is None else workspace[1],
        )

    def apply_step(self, sums: BatchSums) -> tuple[float, bool]:
        """Take one step from the batch sums; returns (η_t, skipped).

        The step is skipped (weights, counters, row scale and statistics unchanged) when it
        would make any weight non-finite.
        """
        m, controller = sums.n_samples, self.controller
        settle(self)  # (a no-op unless the O(nnz) m = 1 loop ran last)
        eta, gain = (self.schedule(self.n_updates), 1.0) if controller is None else (
            controller.step_size(sums, self.gradient_stats, self.schedule, l2=self.l2,
                                 optimizer=self.optimizer)
        )  # fmt: skip
        regularization = self._regularization() if m >= 2 else None  # ρ before the step
        proposal = propose_step(
            self._theta, sums, eta, reduction=self._step_reduction(), l1=self.l1, l2=self.l2,
            squared_gradient_sum=self._squared_gradient_sum, adagrad_epsilon=self.adagrad_epsilon,
        )  # fmt: skip
        if not proposal.finite:
            return eta, True
        if proposal.active is None:
            self._theta = proposal.values
            if proposal.accumulated is not None:
                self._squared_gradient_sum = proposal.accumulated
        else:
            with self._lock:  # in place: a copy of θ would cost O(n_features)
                self._theta[proposal.active] = proposal.values
            if self._squared_gradient_sum is not None and proposal.accumulated is not None:
                self._squared_gradient_sum[proposal.active] = proposal.accumulated
        self.n_updates += 1
        self.n_samples_seen += m
        self.inputs.fold_batch(sums.moments)
        if self.clip_norm_ratio > 0.0:
            self.row_scale = next_scale(self.row_scale, sums.capped_norm_sum / m)
        # Extreme (finite) inputs can overflow Σ‖g_i‖² alone; keep it out of the EWMAs.
        changes = self.gradient_stats.change.n_changes
        if math.isfinite(sums.gradient_squared_norm_sum):
            self.gradient_stats.update(sums, self._regularization() if m < 2 else regularization)
        if self.gradient_stats.change.n_changes != changes and controller is not None:
            self._restart_accumulators()
        if controller is not None:
            controller.step_applied(sums, self.gradient_stats, eta, gain, l2=self.l2)
        return eta, False

    def _restart_accumulators(self) -> None:
        """A detected change of the stream (:mod:`.drift`): AdaGrad's Σ ḡ² describes the old
        problem and would keep the steps small; it starts again (O(d), once per change)."""
        if self._squared_gradient_sum is not None:
            self._squared_gradient_sum[:] = 0.0

    def _step_reduction(self) -> str:
        """AdaGrad with a controller steps on Σ_i g_i: at a fixed m the step of the mean
        (AdaGrad is scale-invariant); when m changes, the per-sample step stays (.controller)."""
        adagrad = self._squared_gradient_sum is not None
        return "sum" if self.controller is not None and adagrad else self.reduction

    def _regularization(self) -> FloatArray | None:
        """ρ = λ₂ [w ; 0] at the current weights (None without an L2 term)."""
        return np.append(self.l2 * self._theta[:-1], 0.0) if self.l2 else None

    def apply_block(
        self,
        theta: FloatArray,
        n_steps: int,
        row_scale: float,
        squared_gradient_sum: FloatArray | None = None,
    ) -> None:
        """Adopt ``n_steps`` m = 1 steps of a compiled loop (:mod:`.online`): θ, s, G after."""
        if self.controller is not None:
            raise ValueError("a model with a controller learns through learn_batch only")
        with self._lock:
            self._theta = theta
        if squared_gradient_sum is not None and self._squared_gradient_sum is not None:
            self._squared_gradient_sum = squared_gradient_sum
        self.n_updates += n_steps
        self.n_samples_seen += n_steps
        self.row_scale = row_scale

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
        X, y, weights = check_batch(X, y, sample_weight, self.n_features, allow_empty=False)
        if self.controller is None and not self.l2 and len(y) >= 2:
            # Compiled end to end (kernels, step, statistics): no numpy operation that could
            # overflow runs, so no errstate context (≈ 1 µs, a tenth of an m = 32 step).
            sums = self._batch_sums(X, y, weights)
            eta, skipped = self.apply_step(sums)
            return BatchStats(sums, eta, skipped)
        # Overflow to inf/nan is expected on extreme input and handled: such a step is
        # skipped (apply_step checks), so it must not also raise or warn.
        with np.errstate(over="ignore", invalid="ignore"):
            sums = self._batch_sums(X, y, weights)
            eta, skipped = self.apply_step(sums)
            return BatchStats(sums, eta, skipped)

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
            "clip_norm_ratio": self.clip_norm_ratio,
            "max_weight_norm": self.max_weight_norm,
            "standardize": self.inputs.enabled,
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
            "row_scale": self.row_scale,
            "controller": None if self.controller is None else self.controller.get_state(),
            "standardizer": self.inputs.get_state(),
        } | deferred_state(self)

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
        # States written before clipping existed have no s: start it as a new model would.
        row_scale = float(state.get("row_scale", model.row_scale))
        if not (math.isfinite(row_scale) and row_scale > 0.0):
            raise ValueError(f"model state has an invalid row scale {row_scale!r}")
        model.row_scale = row_scale
        stored = state.get("controller")
        model.controller = None if stored is None else NoiseController.from_state(stored)
        model.inputs = model.inputs.restored(state.get("standardizer"))
        return restore_deferred(model, state.get("deferred"))
