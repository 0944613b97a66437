"""One step's sums as one float64 vector, so that N replicas reduce them with one allreduce.

Every replica scores its local batch (m_k ≥ 0 samples, possibly none) under the shared
state, packs the sums with :func:`pack_sums`, and the collective adds the vectors of all
replicas element-wise. Every field is a sum over samples (:class:`~.batch_sums.BatchSums`,
:class:`~.standardize.MomentSums`), so the reduced vector holds exactly the sums of the
union batch of M = Σ_k m_k samples (up to the order of the floating-point additions), and
:func:`unpack_sums` gives every replica the same step to apply: the single-trainer step on
the union batch.

Layout (d = n_features; the optional blocks exist when the model has them)::

    [ m, Σ‖g_i‖², Σℓ_i, misclassified, Σ min(‖v_i‖, κs), clipped, Σ s_i‖v_i‖², no_curvature,
      Σ g_i (d + 1),
      Σ s_i σ'(z_i) v_i v_iᵀ u (d + 1)       — with a controller
      n, S₁ (d), S₂ (d) ]                    — with standardisation

Counts are exact in float64 up to 2⁵³. ``no_curvature`` counts the replicas whose batch
had no curvature product (sparse rows): the reduced step then has none either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .batch_sums import BatchSums
from .model import OnlineLogisticRegression
from .standardize import MomentSums
from .types import FloatArray

_SCALARS = 8  # the leading scalar slots above


@dataclass(frozen=True)
class SumsLayout:
    """Where each sum sits in the packed vector of one model's step.

    Attributes
    ----------
    n_features : int
        d.
    curvature : bool
        The model has a controller (its batches carry a curvature product).
    moments : bool
        The model standardises its inputs (its batches carry moment sums).
    """

    n_features: int
    curvature: bool
    moments: bool

    @classmethod
    def of(cls, model: OnlineLogisticRegression) -> SumsLayout:
        return cls(model.n_features, model.controller is not None, model.inputs.enabled)

    @property
    def size(self) -> int:
        """Length of the packed vector."""
        d = self.n_features
        size = _SCALARS + d + 1
        if self.curvature:
            size += d + 1
        if self.moments:
            size += 1 + 2 * d
        return size


def local_sums(
    model: OnlineLogisticRegression,
    X: object | None,
    y: FloatArray | None,
    sample_weight: FloatArray | None = None,
) -> FloatArray:
    """The packed sums of this replica's batch under the model's current state.

    Parameters
    ----------
    model : OnlineLogisticRegression
        The replicated model (not changed).
    X : ndarray of shape (m, d), SparseRows, or None
        The local batch; None (or m = 0) for a replica with nothing to contribute.
    y : ndarray of shape (m,), or None
    sample_weight : ndarray of shape (m,), optional

    Returns
    -------
    ndarray of shape (SumsLayout.of(model).size,)
    """
    layout = SumsLayout.of(model)
    vector = np.zeros(layout.size)
    if X is None or y is None or len(y) == 0:
        if not model.gradient_statistics:
            vector[1] = vector[6] = math.nan  # as a batch without row norms has
        return vector
    sums = model.batch_sums(X, y, sample_weight)  # type: ignore[arg-type]
    vector[:_SCALARS] = (
        sums.n_samples,
        sums.gradient_squared_norm_sum,
        sums.loss_sum,
        sums.n_misclassified,
        sums.n_above_scale,
        sums.n_clipped,
        sums.row_squared_norm_sum,
        1.0 if layout.curvature and sums.curvature_product_sum is None else 0.0,
    )
    d1 = layout.n_features + 1
    start = _SCALARS
    vector[start : start + d1] = sums.dense_gradient_sum(layout.n_features)
    start += d1
    if layout.curvature:
        curvature = sums.dense_curvature_product_sum(layout.n_features)
        if curvature is not None:
            vector[start : start + d1] = curvature
        start += d1
    moments = sums.moments
    if layout.moments and moments is not None:
        vector[start] = moments.n_samples
        vector[start + 1 : start + 1 + layout.n_features] = moments.deviation_sum
        vector[start + 1 + layout.n_features :] = moments.squared_deviation_sum
    return vector


def reduced_sums(model: OnlineLogisticRegression, vector: FloatArray) -> BatchSums | None:
    """The union batch's sums from the reduced vector, ready for
    :meth:`~.model.OnlineLogisticRegression.apply_step`; None when no replica had a sample.

    A standardising model gets the union batch's moment sums (``BatchSums.moments``; the
    shift K = μ is the shared running mean, the same on every replica), which the step folds.
    """
    layout = SumsLayout.of(model)
    if vector.shape != (layout.size,):
        raise ValueError(f"reduced vector of shape {vector.shape}, expected ({layout.size},)")
    n_samples = int(vector[0])
    if n_samples == 0:
        return None
    d1 = layout.n_features + 1
    start = _SCALARS
    gradient_sum = vector[start : start + d1].copy()
    start += d1
    curvature = None
    if layout.curvature:
        if vector[7] == 0.0:
            curvature = vector[start : start + d1].copy()
        start += d1
    moments = None
    if layout.moments:
        frame_mean = model.inputs.frame.mean  # type: ignore[attr-defined]
        d = layout.n_features
        moments = MomentSums(
            int(vector[start]),
            frame_mean,
            vector[start + 1 : start + 1 + d].copy(),
            vector[start + 1 + d :].copy(),
        )
    return BatchSums(
        n_samples=n_samples,
        gradient_sum=gradient_sum,
        gradient_squared_norm_sum=float(vector[1]),
        loss_sum=float(vector[2]),
        n_misclassified=int(vector[3]),
        n_above_scale=int(vector[4]),
        n_clipped=int(vector[5]),
        row_squared_norm_sum=float(vector[6]),
        curvature_product_sum=curvature,
        moments=moments,
    )
