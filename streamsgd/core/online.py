"""The bridge between the model and the compiled m = 1 loops (:mod:`._online_dense`,
:mod:`._online_sparse`): the model's settings and state as the flat vectors the loops read,
the choice of loop, and the adoption of the result by the model.

Which loop (all take exactly the steps of one ``learn_batch`` per sample):

* dense rows: :func:`._online_dense.run_dense`, O(d) per step;
* sparse rows (:class:`SparseRows`): :func:`._online_sparse.run_sparse`, O(nnz) per step
  (lazy L2 scale, cumulative L1, AdaGrad at the active coordinates, running ‖M‖², M·w,
  ‖w‖²), except where the step itself is O(d) — AdaGrad with L2 (λ₂ w_j enters every
  coordinate's accumulator), AdaGrad that forgets (every A_j decays every step), L1 with
  L2 while the across-step statistics need ‖w‖² every step, or a factor 1 − η λ₂ ≤ 0 —
  which scatter each row into a dense one (:func:`._online_dense.run_scattered`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _online_dense, _online_sparse
from .deferred import DeferredWork, settle
from .model import OnlineLogisticRegression
from .row_scale import SCALE_SMOOTHING, augmented_norms, squared_row_norms
from .single_steps import adopt_statistics, statistics_vector
from .sparse import SparseRows
from .types import FloatArray
from .validation import Features

_EMPTY = np.zeros(0)


@dataclass(frozen=True)
class CompiledRun:
    """Counts of one compiled run of n steps (the losses are written in place)."""

    applied: int
    skipped: int
    misclassified: int
    clipped: int
    last_learning_rate: float


def settings_vector(model: OnlineLogisticRegression) -> FloatArray:
    """The model's step settings in the slot order of ``_online_math.load_settings``."""
    schedule = model.schedule
    return np.array(
        [
            schedule.learning_rate,
            1.0 if schedule.kind == "inverse_scaling" else 0.0,
            schedule.decay,
            schedule.power,
            model.l1,
            model.l2,
            1.0 if model.optimizer == "adagrad" else 0.0,
            model.adagrad_epsilon,
            model.clip_norm_ratio,
            1.0 if model.gradient_statistics else 0.0,
            1.0 - SCALE_SMOOTHING,
            SCALE_SMOOTHING,
            model.optim.forget_per_sample,
        ]
    )


def lazy_sparse_supported(model: OnlineLogisticRegression) -> bool:
    """Whether the O(nnz) loop takes these steps (module docstring)."""
    if model.optimizer == "adagrad" and model.optim.forget_per_sample != 1.0:
        return False  # every coordinate's A decays every step: O(d) (the scattered loop)
    if not model.l2:
        return True
    if model.optimizer == "adagrad":
        return False
    # 1 − η_t λ₂ > 0 for every η_t: the schedules never increase η.
    if not model.schedule(model.n_updates) * model.l2 < 1.0:
        return False
    across = model.gradient_statistics and not model.gradient_stats.within_batch_seen
    return not (model.l1 and across)


def run_compiled(
    model: OnlineLogisticRegression,
    X: Features,
    y: FloatArray,
    weights: FloatArray | None,
    losses: FloatArray,
) -> CompiledRun:
    """Take the n = len(y) steps of one ``learn_batch`` per sample in a compiled loop and
    hand the result to the model (:func:`_adopt_block`).

    The result is the same bits however a stream is cut into calls: the dense loops are
    exact under any cut, and the lazy sparse loop leaves its deferred work on the model
    (:mod:`.deferred`) instead of folding it (O(d)) at the end of the call."""
    squared, norms = _EMPTY, _EMPTY
    if not isinstance(X, SparseRows):  # (the sparse loops read each row's norm themselves)
        X = np.ascontiguousarray(X)
        if model.clip_norm_ratio > 0.0 or model.gradient_statistics:
            squared = squared_row_norms(X) + 1.0  # ‖[x_t ; 1]‖², as the per-sample step
        if model.clip_norm_ratio > 0.0:
            norms = augmented_norms(X, squared)
    settings = settings_vector(model)
    lazy = isinstance(X, SparseRows) and lazy_sparse_supported(model)
    work = model.deferred
    if work is not None and not (lazy and np.array_equal(work.settings, settings)):
        settle(model)  # another loop, or other settings: θ and M must be w and M
        work = None
    # θ and AdaGrad's G are updated in place (no O(d) copy per call), under the model's
    # lock: a reader in another thread (HTTP, metrics) waits for the call and never sees a
    # half-applied run or the lazy loop's v without its deferred work.
    theta = model._theta
    accum = _EMPTY if model._squared_gradient_sum is None else model._squared_gradient_sum
    stats, mean = statistics_vector(model.gradient_stats, model.n_features)
    scalars = np.array([float(model.n_updates), model.row_scale, math.nan])
    state = (theta, accum, mean, settings, stats, scalars, losses)
    w = _EMPTY if weights is None else weights
    with model._lock:
        if isinstance(X, SparseRows):
            arrays = (X.indptr, X.indices, X.values, y, w)
            if lazy:
                work = work or DeferredWork.fresh(settings, model.n_features, model.l1)
                counts = _online_sparse.run_sparse(*arrays, *state, work.carry, work.last)
                model.deferred = work
            else:
                counts = _online_dense.run_scattered(*arrays, *state)
        else:
            counts = _online_dense.run_dense(X, y, w, norms, squared, *state)
    applied, skipped, missed, clipped = counts
    _adopt_block(
        model,
        theta,
        applied,
        float(scalars[1]),
        None if model._squared_gradient_sum is None else accum,
    )
    if model.gradient_statistics:
        adopt_statistics(model.gradient_stats, stats, mean)
    return CompiledRun(applied, skipped, missed, clipped, float(scalars[2]))


def _adopt_block(
    model: OnlineLogisticRegression,
    theta: FloatArray,
    n_steps: int,
    row_scale: float,
    squared_gradient_sum: FloatArray | None,
) -> None:
    """The model adopts ``n_steps`` m = 1 steps of a compiled loop: θ, s, G after."""
    if model.controller is not None:
        raise ValueError("a model with a controller learns through learn_batch only")
    with model._lock:
        model._theta = theta
    optim = model.optim
    if squared_gradient_sum is not None and optim.accumulator is not None:
        optim.accumulator = squared_gradient_sum
    model.n_updates += n_steps
    model.n_samples_seen += n_steps
    optim.accumulated_samples = optim.held_samples(n_steps)
    model.row_scale = row_scale
