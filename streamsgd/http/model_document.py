"""The model as a JSON document: one definition for ``GET /model`` and ``streamsgd inspect``.

Every number in the document is finite or ``null``: JSON has no NaN or Infinity, and a
document that a strict parser refuses is worse than one that says "no value" (a model whose
weights went non-finite shows ``null`` coefficients and its ``health`` reason).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.model import OnlineLogisticRegression
from ..core.types import FloatArray


def finite_or_none(value: float | np.floating[Any]) -> float | None:
    """``value`` as a float when finite, else None (JSON ``null``)."""
    number = float(value)
    return number if math.isfinite(number) else None


def finite_list(values: FloatArray) -> list[float | None]:
    """A 1-D array as a list with each non-finite entry replaced by None."""
    if np.isfinite(values).all():  # the usual case: one C pass, no per-element Python
        return values.tolist()
    return [finite_or_none(v) for v in values.tolist()]


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float (also inside lists, tuples, dicts and numpy
    arrays) replaced by None, and numpy scalars and arrays turned into Python ones."""
    if isinstance(value, float | np.floating):
        return finite_or_none(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, Mapping):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value


def model_document(
    model: OnlineLogisticRegression,
    extra: Mapping[str, Any] | None = None,
    sparse_coef: bool = False,
) -> dict[str, Any]:
    """The model as JSON-ready data: weights, counters, hyper-parameters, gradient
    statistics and health, then the ``extra`` fields (for example the progressive loss, or
    a checkpoint's offsets and totals), all finite or None.

    Parameters
    ----------
    model : OnlineLogisticRegression
        θ = [w ; b] with w of shape (n_features,).
    extra : mapping, optional
        Fields appended to the document (they may override none of the model's own).
    sparse_coef : bool
        Send w as its non-zero entries (``coef_indices``, ``coef_values``) instead of
        ``coef``: what ``GET /model`` does for a hashed model, whose 2^b weights are mostly 0.

    Returns
    -------
    dict
        ``coef`` (list of n_features) or, with ``sparse_coef``, ``coef_indices`` and
        ``coef_values`` (ascending indices of the non-zero weights, and those weights; a
        NaN counts as non-zero), then ``coef_format`` (``"dense"`` or ``"sparse"``),
        ``intercept``, ``n_features``, ``n_updates``,
        ``n_samples_seen``, ``params``, ``gradient_statistics``, ``health`` (None when
        healthy, else the reason), ``digest`` (:func:`weights_digest`) and the extra fields.
    """
    theta = model.parameters
    stats = model.gradient_stats
    document: dict[str, Any] = {
        **coef_fields(theta[:-1], sparse_coef),
        "intercept": finite_or_none(theta[-1]),
        "n_features": model.n_features,
        "n_updates": model.n_updates,
        "n_samples_seen": model.n_samples_seen,
        "params": json_ready(model.get_params()),
        "gradient_statistics": {
            "gradient_variance": finite_or_none(stats.per_sample_variance),
            "gradient_estimator_variance": finite_or_none(stats.estimator_variance),
            "true_gradient_squared_norm": finite_or_none(stats.true_gradient_squared_norm),
            "gradient_noise_scale": finite_or_none(stats.noise_scale),
            "norm_test_ratio": finite_or_none(stats.norm_test_ratio),
        },
        "health": model.health(),
        "digest": weights_digest(theta),
    }
    clash = document.keys() & (extra or {}).keys()
    if clash:
        raise ValueError(f"extra fields would replace the model's own: {sorted(clash)}")
    document.update(json_ready(dict(extra or {})))
    return document


def coef_fields(coef: FloatArray, sparse: bool) -> dict[str, Any]:
    """w as ``coef`` (every entry) or as ``coef_indices`` and ``coef_values`` (the entries
    that are not 0), with ``coef_format`` saying which."""
    if not sparse:
        return {"coef": finite_list(coef), "coef_format": "dense"}
    indices = np.flatnonzero(coef)
    return {
        "coef_indices": indices.tolist(),
        "coef_values": finite_list(coef[indices]),
        "coef_format": "sparse",
    }


def weights_digest(theta: FloatArray) -> str:
    """sha256 (hex) of θ = [w ; b]'s bytes as little-endian float64: replicas that hold the
    same model, bit for bit, show the same digest."""
    return hashlib.sha256(np.ascontiguousarray(theta, dtype="<f8").tobytes()).hexdigest()
