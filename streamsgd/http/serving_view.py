"""``GET /healthz`` and ``POST /predict`` without an O(d) copy per request.

:meth:`~streamsgd.core.model.OnlineLogisticRegression.health` and ``predict_proba`` copy θ
at every call: at 2^22 hashed buckets (32 MB), 8 clients looping on ``/healthz`` took
training to 11 % of its idle rate. The endpoints read a :class:`ServingView` instead: the
model's health and θ for raw features, built once per model version (the model object,
``n_updates`` and ``n_samples_seen``, as ``/model``'s cache) and shared by every request on
that version, one build at a time. As for ``/model``, a build of t seconds is reused for
``REBUILD_FACTOR``·t seconds even when the model moved on (builds under 5 ms never are: a
small model's answers are always current), so that the views take at most about
1 / (1 + ``REBUILD_FACTOR``) of one core whatever the clients do. A prediction is then
p = σ(X a + c) with the view's raw θ = [a ; c]: O(nnz(X)) per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.losses import sigmoid
from ..core.model import OnlineLogisticRegression
from ..core.sparse import SparseRows
from ..core.standardize import InputFrame
from ..core.types import FloatArray
from ..core.validation import check_features
from .model_cache import MIN_THROTTLED_BUILD_SECONDS, REBUILD_FACTOR

_RAW = InputFrame()  # raw features scored with raw parameters: z = X a + c


@dataclass(frozen=True)
class ServingView:
    """One model version as the endpoints serve it.

    Attributes
    ----------
    key : (int, int, int)
        id of the model object, its ``n_updates`` and ``n_samples_seen``.
    health : str or None
        :meth:`OnlineLogisticRegression.health` of that version.
    theta : ndarray, shape (d + 1,)
        θ = [a ; c] for raw features (read-only), as ``parameters``.
    """

    key: tuple[int, int, int]
    health: str | None
    theta: FloatArray
    started: float
    finished: float

    def probabilities(self, X: FloatArray | SparseRows) -> FloatArray:
        """p(y = 1 | x) = σ(xᵀa + c) per row, shape (n,). With ``standardize`` the model
        scores ((x − μ)/σ)ᵀw + b: the same number, rounded in another order."""
        rows = check_features(X, len(self.theta) - 1)
        return sigmoid(_RAW.scores(rows, self.theta))


class ServingViewCache:
    """The current :class:`ServingView` (see the module docstring).

    Parameters
    ----------
    get_model : callable
        Returns the current model (the training loop may replace the object).
    """

    def __init__(self, get_model: Callable[[], OnlineLogisticRegression]) -> None:
        self._get_model = get_model
        self._lock = threading.Lock()
        self._view: ServingView | None = None
        self._model: OnlineLogisticRegression | None = None  # keeps its id() from reuse
        self.n_builds = 0

    def current(self) -> ServingView:
        """The cached view when still good for this request, else a new one."""
        arrived = time.monotonic()
        model = self._get_model()
        with self._lock:
            view = self._view
            if view is not None and self._model is model:
                took = view.finished - view.started
                fresh = view.key == (id(model), model.n_updates, model.n_samples_seen)
                shared = view.started >= arrived  # built for a request that came after ours
                throttled = took >= MIN_THROTTLED_BUILD_SECONDS and (
                    time.monotonic() - view.finished < REBUILD_FACTOR * took
                )
                if fresh or shared or throttled:
                    return view
            started = time.monotonic()
            # The version read before the copies: a step in between makes the view newer
            # than its key, never older (the next request rebuilds).
            key = (id(model), model.n_updates, model.n_samples_seen)
            health, theta = model.health(), model.parameters
            view = ServingView(key, health, theta, started, time.monotonic())
            self._view, self._model = view, model
            self.n_builds += 1
            return view
