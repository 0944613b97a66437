"""The model's state document and every migration of it, in one place.

A state document (:meth:`.model.OnlineLogisticRegression.get_state`) holds the format name,
the constructor arguments, θ, the optimiser's accumulators, the counters, the running
statistics, the row scale, the controller and the standardiser. Keys added since the format
was first written are filled in here, so that the readers (the ``from_state`` methods) read
one layout: a missing part starts as a new model's would (the statistics: as a restart).
"""

from __future__ import annotations

import math
from typing import Any

from .batch_latency import (
    DEFAULT_MAX_BATCH_LATENCY_SECONDS,
    STEP_COST_SECONDS,
    sample_cost_seconds,
)
from .noise_state import MEAN_STEPS_CAP, MIN_SMOOTHING, STATE_FLOATS

STATE_FORMAT = "streamsgd.OnlineLogisticRegression/1"


def upgrade_model_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` in the current layout (a shallow copy); ValueError for another format.

    * no ``row_scale`` (written before clipping existed): None, s starts as a new model's;
    * no ``controller``, ``standardizer`` or ``deferred`` (the O(nnz) m = 1 loop's carried
      work, :mod:`.deferred`): None;
    * no ``accumulated_samples`` (n, the samples AdaGrad's A holds; written before a change
      alarm shrank A by W/n instead of zeroing it): ``n_samples_seen``;
    * no ``pending_alarm`` (written before an alarm waited for the next batch to confirm it):
      None, no alarm pending;
    * params without ``adagrad_half_life_samples`` (written before AdaGrad could forget):
      0, never forget;
    * a standardiser without ``restarted`` (written before its restart after warm-up
      existed): restarted (it does not restart a model that may be long past warm-up).
    """
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"unsupported model state format {state.get('format')!r}")
    upgraded = dict(state)
    upgraded["params"] = {"adagrad_half_life_samples": 0.0, **state["params"]}
    for key in ("row_scale", "controller", "standardizer", "deferred"):
        upgraded.setdefault(key, None)
    upgraded.setdefault("accumulated_samples", upgraded["n_samples_seen"])
    upgraded.setdefault("pending_alarm", None)
    standardizer = upgraded["standardizer"]
    if standardizer is not None and "restarted" not in standardizer:
        upgraded["standardizer"] = {
            **standardizer,
            "restarted": True,
            "fresh": None,
        }
    if upgraded["controller"] is not None:
        upgraded["controller"] = upgrade_controller_state(upgraded["controller"])
    return upgraded


def upgrade_controller_state(state: dict[str, Any]) -> dict[str, Any]:
    """No ``curvature`` (written before the curvature cap): None, a fresh estimate; no
    latency budget, cost model or arrival rate (written before m was bounded by them): the
    defaults, the cost of d = 20 dense rows, and a backlog (a restart adopts the configured
    budget and cost model, :meth:`.NoiseController.resume`)."""
    upgraded = dict(state)
    upgraded.setdefault("max_batch_latency_seconds", DEFAULT_MAX_BATCH_LATENCY_SECONDS)
    upgraded.setdefault("step_cost_seconds", STEP_COST_SECONDS)
    upgraded.setdefault("sample_cost_seconds", sample_cost_seconds(20, False))
    upgraded.setdefault("arrival_rate", math.nan)
    curvature = upgraded.setdefault("curvature", None)
    if curvature is not None:
        upgraded["curvature"] = upgrade_curvature_state(curvature)
    return upgraded


def upgrade_curvature_state(state: dict[str, Any]) -> dict[str, Any]:
    """No ``scale``: ``product`` is y itself (κ = 1); no ``squared_norm``: None (computed)."""
    upgraded = dict(state)
    upgraded.setdefault("scale", 1.0)
    upgraded.setdefault("squared_norm", None)
    return upgraded


def upgrade_statistics_state(state: dict[str, Any]) -> dict[str, Any]:
    """The running statistics' document in the current layout (a shallow copy).

    * no ``min_smoothing``: the default α_min; no ``window_smoothing``: α₀; a missing
      estimate: NaN (restarts it);
    * no ``objective_gradient_squared_norm`` (written before the L2 term counted): ‖ḡ‖²'s;
    * no ``window_batch_size``: the last m; no ``single_steps``: 0;
    * no ``scaled_weight_square_sum`` (D was per step): D ← m² D, u = v/m²;
    * no ``within_batch_steps`` (written before n was counted): past the mean phase;
    * no ``change``: None, a fresh detector.
    """
    upgraded = dict(state)
    upgraded.setdefault("min_smoothing", MIN_SMOOTHING)
    if "objective_gradient_squared_norm" not in upgraded:
        upgraded["objective_gradient_squared_norm"] = upgraded.get(
            "mean_gradient_squared_norm", math.nan
        )
    upgraded.setdefault("window_batch_size", upgraded["last_batch_size"])
    upgraded.setdefault("single_steps", 0)
    if "scaled_weight_square_sum" not in upgraded:
        m = upgraded["window_batch_size"] or 1
        upgraded["squared_deviation"] = upgraded.get("squared_deviation", math.nan) * m * m
        upgraded["scaled_weight_square_sum"] = upgraded.get("weight_square_sum", math.nan) / (m * m)
    upgraded.setdefault("within_batch_steps", MEAN_STEPS_CAP)
    upgraded.setdefault("change", None)
    upgraded.setdefault("window_smoothing", upgraded["smoothing"])
    for key in STATE_FLOATS:
        upgraded.setdefault(key, math.nan)
    return upgraded
