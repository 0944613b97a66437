"""The read side of the linear model: θ, its thread-consistent snapshot, and the scores.

A :class:`LinearScorer` holds θ = [w ; b] (for the learning frame of its inputs) and answers
every reader — ``/predict``, ``evaluate``, the metrics, the health check — from one
consistent snapshot; the learner (:class:`.model.OnlineLogisticRegression`) extends it.
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .losses import sigmoid
from .row_scale import vector_norm
from .sparse import SparseRows
from .standardize import InputFrame, input_frame
from .types import FloatArray
from .validation import check_features


class LinearScorer:
    """p(y = 1 | x) = σ(wᵀx + b) for θ = [w ; b] of d features (the raw row scored).

    Parameters
    ----------
    n_features : int
        d.
    max_weight_norm : float
        ‖w‖ above which :meth:`health` reports ``"weight_norm"``.
    standardize : bool
        θ is learned on standardised dense features (:mod:`.standardize`), reported for raw ones.
    """

    # ------------------------------------------------------------------ parameters

    def __init__(self, n_features: int, max_weight_norm: float, standardize: bool) -> None:
        self.n_features = int(n_features)
        self.max_weight_norm = float(max_weight_norm)
        # θ = [w ; b]. A dense step replaces it; a sparse step writes its few columns in
        # place under _lock, which readers in other threads (HTTP, metrics) take for their
        # snapshot (``parameters``), so that they always see one consistent θ.
        self._theta: FloatArray = np.zeros(self.n_features + 1)
        self._lock = threading.Lock()
        self.inputs: InputFrame = input_frame(self.n_features, standardize)

    def _snapshot(self) -> FloatArray:
        with self._lock:
            return self._theta.copy()

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
