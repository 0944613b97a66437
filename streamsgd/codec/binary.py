"""The binary batch format, little-endian: ``b"SSGD"``, u8 version = 1, u8 flags (bit 0:
weights present), u16 reserved = 0, u32 n_samples, u32 n_features, f64[n·d] X row-major,
u8[n] labels (0/1), then f64[n] weights if flagged. No pickle; any language can write it."""

from __future__ import annotations

import struct

import numpy as np

from ..core.types import FloatArray
from .records import DEFAULT_MAX_SAMPLE_WEIGHT, RecordRejected

BINARY_MAGIC = b"SSGD"
BINARY_HEADER = struct.Struct("<4sBBHII")


def decode_binary(
    value: bytes, n_features: int, max_weight: float = DEFAULT_MAX_SAMPLE_WEIGHT
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """X of shape (n, d), labels of shape (n,) and weights of shape (n,) or None.

    Raises
    ------
    RecordRejected
        ``invalid_binary``, ``wrong_dimension``, ``non_finite``, ``invalid_label`` or
        ``invalid_weight``.
    """
    if len(value) < BINARY_HEADER.size:
        raise RecordRejected("invalid_binary", "truncated header")
    _, version, flags, _, n, d = BINARY_HEADER.unpack_from(value)
    if version != 1 or flags & ~1:
        raise RecordRejected("invalid_binary", f"unsupported version {version} / flags {flags}")
    has_weight = bool(flags & 1)
    expected = BINARY_HEADER.size + 8 * n * d + n + (8 * n if has_weight else 0)
    if n == 0 or len(value) != expected:
        raise RecordRejected("invalid_binary", f"{len(value)} bytes, header implies {expected}")
    if d != n_features:
        raise RecordRejected("wrong_dimension", f"{d} features, expected {n_features}")
    at = BINARY_HEADER.size
    X = np.frombuffer(value, dtype="<f8", count=n * d, offset=at).reshape(n, d)
    at += 8 * n * d
    labels = np.frombuffer(value, dtype=np.uint8, count=n, offset=at)
    at += n
    if not np.isfinite(X).all():
        raise RecordRejected("non_finite", "X contains NaN or infinity")
    if np.any(labels > 1):
        raise RecordRejected("invalid_label", "binary labels must be 0 or 1")
    weight = None
    if has_weight:
        weight = np.frombuffer(value, dtype="<f8", count=n, offset=at).astype(np.float64)
        if not ((weight >= 0).all() and (weight <= max_weight).all()):  # NaN fails both
            raise RecordRejected("invalid_weight", f"weights must be in [0, {max_weight:g}]")
    return X.astype(np.float64), labels.astype(np.float64), weight


def encode_binary(X: FloatArray, y: FloatArray, weight: FloatArray | None = None) -> bytes:
    """Many dense samples (X of shape (n, d), y of shape (n,)) as one binary batch record."""
    X = np.ascontiguousarray(X, dtype="<f8")
    n, d = X.shape
    header = BINARY_HEADER.pack(BINARY_MAGIC, 1, 1 if weight is not None else 0, 0, n, d)
    parts = [header, X.tobytes(), np.asarray(y, dtype=np.uint8).tobytes()]
    if weight is not None:
        parts.append(np.asarray(weight, dtype="<f8").tobytes())
    return b"".join(parts)
