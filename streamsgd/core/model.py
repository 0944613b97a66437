"""Online logistic regression trained by minibatch-averaged SGD: the estimator and its state.

The step arithmetic lives in :mod:`.step`, the optimiser (schedule, AdaGrad, L2, L1) in
:mod:`.optimizer`, the bounded-influence row scale in :mod:`.row_scale`, the input checks
in :mod:`.validation`, the state document's migrations in :mod:`.state_format`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .compiled_steps import BatchesStats, LastGradient, run_steps
from .controller import NoiseController
from .deferred import DeferredWork, deferred_state, restore_deferred, settle
from .gradient_stats import BatchSums, RunningGradientStatistics
from .optimizer import Optimizer, alarm_context
from .row_scale import initial_scale, next_scale
from .schedules import LearningRateSchedule
from .scorer import LinearScorer
from .sparse import SparseRows
from .state_format import STATE_FORMAT, upgrade_model_state
from .step import SPARSE_STEP_MAX_DENSITY, BatchStats, batch_sums
from .types import FloatArray
from .validation import Features, check_batch, check_model_settings

__all__ = [
    "SPARSE_STEP_MAX_DENSITY",
    "STATE_FORMAT",
    "BatchStats",
    "Features",
    "OnlineLogisticRegression",
]


class OnlineLogisticRegression(LinearScorer):
    """Binary logistic regression p(y=1 | x) = σ(wᵀx + b), learned one minibatch at a time.

    Each call of :meth:`learn_batch` takes one step on the mean of the per-sample gradients,
    after scoring the batch with the pre-step weights (test-then-train)::

        ḡ = (1/m) Σ_i s_i (σ(z_i) − y_i) [x_i ; 1]
        w ← prox_{η_t λ₁}( w − η_t (ḡ_w + λ₂ w) ),   b ← b − η_t ḡ_b

    with prox_τ(v) = sign(v) max(|v| − τ, 0), s_i the optional importance weights; the
    intercept is never regularised. ``reduction="sum"`` steps on the gradient of Σ_i (s_i ℓ_i
    + λ₂‖w‖²/2 + λ₁‖w‖₁) instead (``sum`` with η/m takes the step of ``mean`` with η).

    ``optimizer="adagrad"`` scales each coordinate of the same averaged gradient by
    1/(√(Σ_steps ḡ_j²) + ε) (Duchi et al. 2011); the L1 threshold is scaled the same way.
    Under a ``controller`` (``auto``) it steps on the sum, A ← γ^m A + (m ḡ)²: not a
    mean-gradient step but AdaGrad on ḡ with the rate η·m (per coordinate η m/√A_j).

    Bounded influence of one sample (:mod:`.row_scale`): with κ = ``clip_norm_ratio`` > 0 a
    sample is scored on its raw row v = [x_i ; 1], its gradient weighted by min(1, 3κs/‖v‖)
    min(1, 100κs/‖v‖) (s a robust running median row norm): one record moves θ by at most
    3ηκs; κ = 0 disables it (and keeps s fixed).
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
    adagrad_half_life_samples : float
        h ≥ 0: AdaGrad's accumulators forget, A ← γ^m A + ḡ² with γ = 2^(−1/h), so that its
        steps can follow a drifting stream (0: never forget, A ← A + ḡ²).
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
        adagrad_half_life_samples: float = 0.0,
        stats_smoothing: float = 0.05,
        gradient_statistics: bool = True,
        clip_norm_ratio: float = 10.0,
        max_weight_norm: float = 1e6,
        controller: NoiseController | None = None,
        standardize: bool = False,
    ) -> None:
        check_model_settings(
            n_features,
            reduction=reduction,
            optimizer=optimizer,
            l1=l1,
            l2=l2,
            adagrad_epsilon=adagrad_epsilon,
            adagrad_half_life_samples=adagrad_half_life_samples,
            clip_norm_ratio=clip_norm_ratio,
            max_weight_norm=max_weight_norm,
            controlled=controller is not None,
            gradient_statistics=gradient_statistics,
        )
        super().__init__(n_features, max_weight_norm, bool(standardize))
        self.controller = controller
        self.optim = Optimizer(
            self.n_features + 1,
            LearningRateSchedule(learning_rate, learning_rate_schedule, decay, power),
            l2=l2,
            l1=l1,
            reduction=reduction,
            optimizer=optimizer,
            adagrad_epsilon=adagrad_epsilon,
            adagrad_half_life_samples=adagrad_half_life_samples,
        )
        self.gradient_statistics = bool(gradient_statistics)
        self.clip_norm_ratio = float(clip_norm_ratio)
        self.row_scale = initial_scale(self.n_features)  # s of the clipping
        self.n_updates = self.n_samples_seen = 0
        self.gradient_stats = RunningGradientStatistics(smoothing=stats_smoothing)
        # Scratch of the sparse kernel (column and row sparse sets, any content): allocated
        # with the first sparse batch, O(1) (np.empty touches no page).
        self._workspace: NDArray[np.intp] | None = None
        self.deferred: DeferredWork | None = None  # of the O(nnz) m = 1 loop (.deferred)

    # ------------------------------------------------------------------ optimiser
    # The optimiser's settings and state under the names the m = 1 loops (.online) read.
    @property
    def schedule(self) -> LearningRateSchedule:
        return self.optim.schedule

    @property
    def learning_rate(self) -> float:
        return self.optim.schedule.learning_rate

    @property
    def l1(self) -> float:
        return self.optim.l1

    @property
    def l2(self) -> float:
        return self.optim.l2

    @property
    def reduction(self) -> str:
        return self.optim.reduction

    @property
    def optimizer(self) -> str:
        return self.optim.kind

    @property
    def adagrad_epsilon(self) -> float:
        return self.optim.epsilon

    @property
    def adagrad_half_life_samples(self) -> float:
        return self.optim.half_life_samples

    @property
    def _squared_gradient_sum(self) -> FloatArray | None:
        """AdaGrad's accumulators A, shape (d + 1,) (None for plain SGD)."""
        return self.optim.accumulator

    @_squared_gradient_sum.setter
    def _squared_gradient_sum(self, accumulator: FloatArray | None) -> None:
        self.optim.accumulator = accumulator

    def _snapshot(self) -> FloatArray:
        """θ for readers: folded from the O(nnz) m = 1 loop's deferred work (.deferred)."""
        with self._lock:
            return self._theta.copy() if self.deferred is None else self.deferred.folded(self)

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
        controller = self.controller
        settle(self)
        workspace = self._sparse_workspace(X)
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

    def _sparse_workspace(self, X: Features) -> NDArray[np.intp] | None:
        """The sparse kernels' scratch (any content), allocated with the first sparse batch."""
        if self._workspace is None and isinstance(X, SparseRows):
            self._workspace = np.empty((2, self.n_features), dtype=np.intp)
        return self._workspace

    def apply_step(self, sums: BatchSums) -> tuple[float, bool]:
        """Take one step from the batch sums; returns (η_t, skipped).

        The step is skipped (weights, counters, row scale and statistics unchanged) when it
        would make any weight non-finite.
        """
        m, controller, optim = sums.n_samples, self.controller, self.optim
        settle(self)  # (a no-op unless the O(nnz) m = 1 loop ran last)
        if controller is None:
            eta, gain = optim.schedule(self.n_updates), 1.0
        else:
            eta, gain = controller.step_size(
                sums, self.gradient_stats, optim.schedule, l2=optim.l2, optimizer=optim.kind
            )
        regularization = optim.regularization(self._theta) if m >= 2 else None  # ρ before
        proposal = optim.propose(self._theta, sums, eta, controlled=controller is not None)
        if not proposal.finite:
            return eta, True
        if proposal.active is None:
            self._theta = proposal.values
        else:
            with self._lock:  # in place: a copy of θ would cost O(n_features)
                self._theta[proposal.active] = proposal.values
        optim.adopt(proposal, m)
        self.n_updates += 1
        self.n_samples_seen += m
        reframe = self.inputs.fold_batch(sums.moments)
        if reframe is not None:  # the standardiser's restart took over (.standardize)
            with self._lock:
                self._theta = reframe.theta(self._theta)
            if optim.accumulator is not None:
                optim.accumulator = reframe.accumulators(optim.accumulator)
        if self.clip_norm_ratio > 0.0:
            self.row_scale = next_scale(self.row_scale, sums.n_above_scale, m)
        # Extreme (finite) inputs can overflow Σ‖g_i‖² alone; keep it out of the EWMAs.
        before = alarm_context(self.gradient_stats.change)
        if math.isfinite(sums.gradient_squared_norm_sum):
            if m < 2:  # ρ at the weights after the step (.gradient_stats)
                regularization = optim.regularization(self._theta)
            self.gradient_stats.update(sums, regularization)
        if controller is not None:  # A shrinks once the batch after an alarm confirms it
            optim.follow_alarms(before, self.gradient_stats, sums)
            controller.step_applied(sums, self.gradient_stats, eta, gain, l2=optim.l2)
        return eta, False

    def compiled_for(self, batch_size: int) -> bool:
        """Whether steps of m = ``batch_size`` run in the compiled loop (:mod:`.multi_step`):
        m ≥ 2, no controller and no standardisation."""
        return batch_size >= 2 and self.controller is None and not self.inputs.enabled

    def compiled_steps(
        self, X: Features, y: FloatArray, weights: FloatArray | None, m: int, last: bool
    ) -> tuple[BatchesStats, LastGradient]:
        """Steps of m rows each on a validated X in one compiled call (when
        :meth:`compiled_for`; :func:`.compiled_steps.run_steps`): the same bits as
        :meth:`batch_sums` + :meth:`apply_step` per batch."""
        settle(self)
        parts = (self._theta, self.optim, self.gradient_stats, self._sparse_workspace(X))
        counters = (self.n_updates, self.n_samples_seen, self.row_scale)
        influence = (self.clip_norm_ratio, self.gradient_statistics)
        with self._lock:  # θ changes in place (readers in other threads take the lock)
            counters, stats, gradient = run_steps(
                parts, (X, y, weights), m, counters, influence, last
            )
        self.n_updates, self.n_samples_seen, self.row_scale = counters
        return stats, gradient

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
        if self.compiled_for(len(y)):
            # One compiled call: the sums, the step and the statistics of batch_sums +
            # apply_step, without their dozen Python calls (≈ 20 µs a step at m = 256).
            stats, last = self.compiled_steps(X, y, weights, len(y), True)
            return stats.step(0, last)
        # Overflow to inf/nan is expected on extreme input and handled: such a step is
        # skipped (apply_step checks), so it must not also raise or warn.
        with np.errstate(over="ignore", invalid="ignore"):
            sums = self._batch_sums(X, y, weights)
            eta, skipped = self.apply_step(sums)
            return BatchStats(sums, eta, skipped)

    # ------------------------------------------------------------------ state
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, enough to build an identical untrained model (under
        ``auto``, ``reduction="mean"`` is AdaGrad on ḡ with the rate η·m: class docstring)."""
        return {
            "n_features": self.n_features,
            **self.optim.get_params(),
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
            "squared_gradient_sum": self.optim.accumulator_state(),
            **self.optim.counter_state(),
            "n_updates": self.n_updates,
            "n_samples_seen": self.n_samples_seen,
            "gradient_stats": self.gradient_stats.get_state(),
            "row_scale": self.row_scale,
            "controller": None if self.controller is None else self.controller.get_state(),
            "standardizer": self.inputs.get_state(),
        } | deferred_state(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OnlineLogisticRegression:
        """The model of a state document (earlier layouts upgraded by :mod:`.state_format`);
        ValueError for a malformed one."""
        state = upgrade_model_state(state)
        model = cls(**state["params"])
        theta = np.asarray(state["theta"], dtype=np.float64)
        if theta.shape != (model.n_features + 1,):
            raise ValueError("model state has weights of the wrong shape")
        model._theta = theta.copy()
        model.optim.restore_accumulator(state["squared_gradient_sum"])
        model.optim.restore_counters(state)
        model.n_updates = int(state["n_updates"])
        model.n_samples_seen = int(state["n_samples_seen"])
        model.gradient_stats = RunningGradientStatistics.from_state(state["gradient_stats"])
        model.gradient_stats.smoothing = float(state["params"]["stats_smoothing"])
        stored_scale = state["row_scale"]  # None: s starts as a new model's
        row_scale = model.row_scale if stored_scale is None else float(stored_scale)
        if not (math.isfinite(row_scale) and row_scale > 0.0):
            raise ValueError(f"model state has an invalid row scale {row_scale!r}")
        model.row_scale = row_scale
        stored = state["controller"]
        model.controller = None if stored is None else NoiseController.from_state(stored)
        model.inputs = model.inputs.restored(state["standardizer"])
        return restore_deferred(model, state["deferred"])
