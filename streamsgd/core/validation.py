"""The input checks of the core: features, labels and importance weights of a batch, and
the settings of the estimator.

Every entry point that learns (``learn_batch``, ``learn_sequence``) or scores
(``decision_function`` and the methods built on it) goes through these functions, so that
the rules and the error messages are the same everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._labels import count_invalid_labels
from .sparse import SparseRows
from .types import FloatArray

Features = FloatArray | SparseRows
"""A batch of feature rows: dense (m, d) float64, or :class:`SparseRows`."""


def check_features(X: ArrayLike | SparseRows, n_features: int) -> Features:
    """X as float64 of shape (n, ``n_features``), or the given :class:`SparseRows`.

    Raises
    ------
    ValueError
        Wrong number of columns, or not two-dimensional.
    """
    if isinstance(X, SparseRows):
        if X.n_features != n_features:
            raise ValueError(f"X has {X.n_features} features, expected {n_features}")
        return X
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X must have shape (n, {n_features}), got {X.shape}")
    return X


def check_labels(y: ArrayLike) -> FloatArray:
    """y as float64 of shape (n,), every label 0 or 1.

    Raises
    ------
    ValueError
        A label outside {0, 1} (NaN and ±inf included).
    """
    labels = np.asarray(y, dtype=np.float64).reshape(-1)
    if not labels.flags.c_contiguous:
        labels = np.ascontiguousarray(labels)
    # y(1 − y) is 0 exactly for y ∈ {0, 1} (NaN and ±inf give non-zero): one compiled pass.
    if count_invalid_labels(labels):
        raise ValueError("labels must be 0 or 1")
    return labels


def check_sample_weight(sample_weight: ArrayLike | None, n_samples: int) -> FloatArray | None:
    """Importance weights as float64 of shape (n,), each finite and ≥ 0; None stays None.

    Raises
    ------
    ValueError
        Wrong shape, a negative, NaN or infinite weight.
    """
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if weights.shape != (n_samples,) or np.any(~(weights >= 0.0)) or np.any(np.isinf(weights)):
        raise ValueError(f"sample_weight must be finite, >= 0 and of shape ({n_samples},)")
    return weights


def check_batch(
    X: ArrayLike | SparseRows,
    y: ArrayLike,
    sample_weight: ArrayLike | None,
    n_features: int,
    *,
    allow_empty: bool,
) -> tuple[Features, FloatArray, FloatArray | None]:
    """Validate a whole labelled batch before anything is learned from it.

    Parameters
    ----------
    X : array-like of shape (n, n_features), or SparseRows
    y : array-like of shape (n,)
    sample_weight : array-like of shape (n,), optional
    n_features : int
    allow_empty : bool
        Whether n = 0 is accepted (a sequence may be empty, a minibatch may not).

    Returns
    -------
    (X, y, sample_weight) as float64 arrays (X may stay SparseRows).
    """
    features = check_features(X, n_features)
    labels = check_labels(y)
    n = len(labels)
    if features.shape[0] != n or (n == 0 and not allow_empty):
        raise ValueError(f"X has {features.shape[0]} rows but y has {n} labels (need ≥ 1)")
    return features, labels, check_sample_weight(sample_weight, n)


REDUCTIONS = ("mean", "sum")
OPTIMIZERS = ("sgd", "adagrad")


def check_model_settings(
    n_features: Any,
    *,
    reduction: str,
    optimizer: str,
    l1: float,
    l2: float,
    adagrad_epsilon: float,
    adagrad_half_life_samples: float,
    clip_norm_ratio: float,
    max_weight_norm: float,
    controlled: bool,
    gradient_statistics: bool,
) -> None:
    """ValueError for settings :class:`.model.OnlineLogisticRegression` cannot take."""
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
    if not 0.0 <= adagrad_half_life_samples < math.inf:
        raise ValueError(
            f"adagrad_half_life_samples must be finite and >= 0, got {adagrad_half_life_samples}"
        )
    if not 0.0 <= clip_norm_ratio < math.inf:
        raise ValueError(f"clip_norm_ratio must be finite and >= 0, got {clip_norm_ratio}")
    if not max_weight_norm > 0.0:
        raise ValueError(f"max_weight_norm must be > 0, got {max_weight_norm}")
    if controlled and not (reduction == "mean" and gradient_statistics):
        raise ValueError("a controller needs reduction='mean' and gradient_statistics")
