"""JSON encoders of dense samples (floats round-trip exactly through repr)."""

from __future__ import annotations

import json
from typing import Any

from ..core.types import FloatArray


def encode_dense(x: FloatArray, y: float, weight: float | None = None) -> bytes:
    """One dense sample (x of shape (d,)) as a JSON record."""
    obj: dict[str, Any] = {"x": [float(v) for v in x], "y": int(y)}
    if weight is not None:
        obj["weight"] = float(weight)
    return json.dumps(obj, separators=(",", ":")).encode()


def encode_dense_batch(X: FloatArray, y: FloatArray) -> bytes:
    """Many dense samples (X of shape (n, d), y of shape (n,)) as one JSON batch record."""
    obj = {"X": [[float(v) for v in row] for row in X], "y": [int(v) for v in y]}
    return json.dumps(obj, separators=(",", ":")).encode()
