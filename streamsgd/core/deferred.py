"""The deferred work of the O(nnz) m = 1 loop, carried by the model from one call to the
next (:mod:`._online_sparse`, :mod:`._online_lazy`).

While a model holds a :class:`DeferredWork`, its θ[:d] holds v and its mean gradient holds
m, with w = σ · prox_{U − U_j}(v) and M = μ m (lazy L2 scale σ, cumulative L1 threshold U,
EWMA decay μ). Folding that into θ costs O(d); doing it at the end of every call made the
result depend on how the stream was cut into calls and cost O(d) per block. So:

* readers of θ (predictions, ``/model``, the health check, checkpoints) get a folded
  *copy* (:meth:`DeferredWork.materialized`): the carried state is left as it is, so a
  read never changes what is learned next;
* any other kind of step (a minibatch, the dense or scattered m = 1 loop) first folds in
  place (:meth:`DeferredWork.settle`) — points that depend on the stream only;
* the loop itself folds when σ or μ gets tiny and every 65,536 samples;
* a checkpoint carries v, m and the carried scalars (:meth:`DeferredWork.get_state`), so a
  restart continues bit for bit.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, TypeVar

import numpy as np

from . import _online_sparse
from .types import FloatArray

_EMPTY = np.zeros(0)


class _Statistics(Protocol):
    mean_gradient: FloatArray | None

    def get_state(self) -> dict[str, Any]: ...


class Holder(Protocol):
    """What the deferred work reads and writes of the model (θ, G, M, the lock)."""

    _theta: FloatArray
    _squared_gradient_sum: FloatArray | None
    _lock: threading.Lock
    deferred: DeferredWork | None

    @property
    def gradient_stats(self) -> _Statistics: ...


class DeferredWork:
    """σ, μ, U and the running sums of the lazy loop (``carry``, shape (9,)), U at each
    coordinate's last update (``last``, shape (d,) with L1, else empty) and the step
    settings they were taken under (``settings``, the slots of ``_online_math``)."""

    def __init__(self, settings: FloatArray, carry: FloatArray, last: FloatArray) -> None:
        self.settings = settings
        self.carry = carry
        self.last = last

    @classmethod
    def fresh(cls, settings: FloatArray, n_features: int, l1: float) -> DeferredWork:
        """A canonical start (slot 0 of ``carry`` = 0: the loop starts σ = μ = 1, U = 0)."""
        last = np.zeros(n_features) if l1 else _EMPTY
        return cls(settings, np.zeros(_online_sparse.CARRY_SLOTS), last)

    def settle(self, theta: FloatArray, accum: FloatArray | None, mean: FloatArray | None) -> None:
        """Fold into θ = [w ; b] and M in place (O(d)); the carried state is spent."""
        _online_sparse.fold(
            theta,
            _EMPTY if accum is None else accum,
            _EMPTY if mean is None else mean,
            self.settings,
            self.carry,
            self.last,
        )

    def folded(self, model: Holder) -> FloatArray:
        """A folded copy of the model's θ (the caller holds its lock)."""
        return self.materialized(model._theta.copy(), model._squared_gradient_sum)

    def materialized(
        self, theta: FloatArray, accum: FloatArray | None, mean: FloatArray | None = None
    ) -> FloatArray:
        """θ folded (and M folded in place when ``mean`` is given): ``theta`` and ``mean``
        must be copies; the carried state is not changed. Returns ``theta``."""
        _online_sparse.fold(
            theta,
            _EMPTY if accum is None else accum,
            _EMPTY if mean is None else mean,
            self.settings,
            self.carry.copy(),
            self.last.copy(),
        )
        return theta

    def get_state(self, theta: FloatArray, mean: FloatArray | None) -> dict[str, Any]:
        """The raw v (``theta``), m (``mean``) and the carried state, as copies."""
        return {
            "theta": theta.copy(),
            "mean_gradient": None if mean is None else mean.copy(),
            "settings": self.settings.copy(),
            "carry": self.carry.copy(),
            "last": self.last.copy(),
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], n_features: int
    ) -> tuple[DeferredWork, FloatArray, FloatArray | None]:
        """(the work, raw θ, raw M) of :meth:`get_state`; ValueError on a malformed part."""
        theta = np.array(state["theta"], dtype=np.float64)
        mean = state["mean_gradient"]
        mean = None if mean is None else np.array(mean, dtype=np.float64)
        settings = np.array(state["settings"], dtype=np.float64)
        carry = np.array(state["carry"], dtype=np.float64)
        last = np.array(state["last"], dtype=np.float64).reshape(-1)
        if theta.shape != (n_features + 1,) or (mean is not None and mean.shape != theta.shape):
            raise ValueError("deferred m = 1 state has arrays of the wrong shape")
        if carry.shape != (_online_sparse.CARRY_SLOTS,) or len(last) not in (0, n_features):
            raise ValueError("deferred m = 1 state has a carry of the wrong shape")
        if not (np.isfinite(carry).all() and np.isfinite(theta).all()):
            raise ValueError("deferred m = 1 state is not finite")
        return cls(settings, carry, last), theta, mean


def settle(model: Holder) -> None:
    """Fold the model's deferred work into its θ and M in place, under its lock (O(d));
    a no-op without one. Before any step other than the O(nnz) m = 1 loop."""
    work = model.deferred
    if work is not None:
        with model._lock:
            mean = model.gradient_stats.mean_gradient
            work.settle(model._theta, model._squared_gradient_sum, mean)
            model.deferred = None


def deferred_state(model: Holder) -> dict[str, Any]:
    """The part of the model's state its deferred work changes: the statistics with M
    folded, and the work itself (raw v, m, carry) under ``deferred``; {} without one. (θ of
    the state is folded by the model's snapshot.)"""
    work = model.deferred
    if work is None:
        return {}
    with model._lock:
        stats, mean = model.gradient_stats.get_state(), model.gradient_stats.mean_gradient
        if stats["mean_gradient"] is not None:
            accum = model._squared_gradient_sum
            work.materialized(model._theta.copy(), accum, stats["mean_gradient"])
        return {"gradient_stats": stats, "deferred": work.get_state(model._theta, mean)}


_Model = TypeVar("_Model", bound=Holder)


def restore_deferred(model: _Model, stored: dict[str, Any] | None) -> _Model:
    """``model`` (just rebuilt from a state) with the deferred work of ``stored`` restored
    (its raw v and m replace the folded θ and M); unchanged when ``stored`` is None (a
    state written folded: every state before the work was carried)."""
    if stored is not None:
        work, model._theta, mean = DeferredWork.from_state(stored, len(model._theta) - 1)
        model.deferred, model.gradient_stats.mean_gradient = work, mean
    return model
