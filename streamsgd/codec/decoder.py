"""The :class:`Decoder`: record values to :class:`Samples`, or a :class:`RecordRejected`
naming the reason."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from ..core.sparse import SparseRows
from ..core.types import FloatArray
from .binary import BINARY_MAGIC, decode_binary
from .hashed import FeatureHasher, feature_hash_state
from .records import (
    DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_MAX_SAMPLE_WEIGHT,
    Features,
    RecordRejected,
    Samples,
    check_dense_row,
    check_dense_rows,
    dense_matrix,
    dense_rows,
    label,
    parse_json,
    weight,
)

DenseRow = tuple[list[Any], float, float | None]


class Decoder:
    """Turns record values into :class:`Samples` for a model with ``n_features`` inputs.

    Parameters
    ----------
    n_features : int
        Dense dimension d; with ``hash_bits`` it must equal 2**hash_bits.
    hash_bits : int or None
        b for named features; when set, samples are returned as :class:`SparseRows`.
    max_record_bytes : int
        Larger records are rejected as ``too_large`` before parsing.

    Examples
    --------
    >>> decoder = Decoder(n_features=3)
    >>> samples = decoder.decode(b'{"x": [0.5, -1.0, 2.0], "y": 1}')
    >>> samples.X, samples.y
    (array([[ 0.5, -1. ,  2. ]]), array([1.]))
    >>> decoder.decode(b'{"x": [0.5], "y": 1}')
    Traceback (most recent call last):
    ...
    streamsgd.codec.records.RecordRejected: ...
    """

    def __init__(
        self,
        n_features: int,
        hash_bits: int | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        max_sample_weight: float = DEFAULT_MAX_SAMPLE_WEIGHT,
    ) -> None:
        if hash_bits is not None and n_features != 1 << hash_bits:
            raise ValueError("with hash_bits, n_features must be 2**hash_bits")
        self.n_features = n_features
        self.hash_bits = hash_bits
        self.max_record_bytes = max_record_bytes
        self.max_sample_weight = max_sample_weight
        self._hasher = None if hash_bits is None else FeatureHasher(hash_bits)

    @property
    def sparse(self) -> bool:
        return self.hash_bits is not None

    @property
    def feature_hash(self) -> dict[str, Any] | None:
        """The feature hash a checkpoint records (None: no hashing); see
        :func:`~streamsgd.codec.hashed.feature_hash_mismatch`."""
        return feature_hash_state(self.hash_bits)

    # ------------------------------------------------------------ one record
    def parse(self, value: bytes | None) -> Any:
        """The JSON document of a record value, size-checked; raises :class:`RecordRejected`
        (``empty``, ``too_large``, ``too_deep``, ``invalid_json``). Binary values go to
        :meth:`decode` instead."""
        if not value:
            raise RecordRejected("empty", "empty record")
        if len(value) > self.max_record_bytes:
            raise RecordRejected(
                "too_large", f"{len(value)} bytes > limit of {self.max_record_bytes}"
            )
        try:
            return parse_json(value)
        except RecursionError:
            raise RecordRejected("too_deep", "JSON nested too deeply") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise RecordRejected("invalid_json", str(exc).splitlines()[0][:200]) from None

    def decode(self, value: bytes | None) -> Samples:
        """Decode one record value; raises :class:`RecordRejected`."""
        if value and len(value) <= self.max_record_bytes and value[:4] == BINARY_MAGIC:
            X, y, w = decode_binary(value, self.n_features, self.max_sample_weight)
            return Samples(self._maybe_sparse(X), y, w)
        return self.decode_object(self.parse(value))

    def decode_object(self, obj: Any) -> Samples:
        """Decode a parsed JSON record; raises :class:`RecordRejected`."""
        if not isinstance(obj, dict):
            raise RecordRejected("invalid_schema", "record must be a JSON object")
        if "X" in obj:
            return self._decode_dense_batch(obj)
        if "y" not in obj:
            raise RecordRejected("missing_label", "record has no 'y'")
        y = np.array([label(obj["y"])])
        w = (
            None
            if "weight" not in obj
            else np.array([weight(obj["weight"], self.max_sample_weight)])
        )
        if "x" in obj:
            return Samples(self._maybe_sparse(dense_rows([obj["x"]], self.n_features, "x")), y, w)
        if "features" in obj:
            return Samples(self._hash(obj["features"]), y, w)
        raise RecordRejected("invalid_schema", "record needs 'x', 'features' or 'X'")

    def decode_dense_row(self, value: bytes | None) -> DenseRow | None:
        """The commonest record, one dense sample ``{"x": [...], "y": ...}``, without numpy:
        its values as a Python list (validated except for finiteness, which the caller
        checks for many rows at once with :func:`dense_matrix`), the label and the weight.
        None when the record has another form (decode it with :meth:`decode`); raises
        :class:`RecordRejected` like :meth:`decode`."""
        if self.sparse or not value or len(value) > self.max_record_bytes:
            return None
        if value[:1] != b"{":
            return None
        try:
            obj = parse_json(value)
        except (RecursionError, UnicodeDecodeError, ValueError):
            return None  # the full decoder gives the reason
        return self.dense_row(obj)

    def dense_row(self, obj: Any) -> DenseRow | None:
        """:meth:`decode_dense_row` of an already parsed record."""
        if self.sparse or type(obj) is not dict or "x" not in obj or "X" in obj or "y" not in obj:
            return None
        # The checks of decode_object in its order, so the reasons agree.
        y = label(obj["y"])
        w = weight(obj["weight"], self.max_sample_weight) if "weight" in obj else None
        x = obj["x"]
        check_dense_row(x, self.n_features, "x")
        return x, y, w

    def decode_unlabelled(self, obj: Any) -> Features:
        """Feature rows of a prediction request: ``{"x": [...]}``, ``{"X": [[...], ...]}``
        or ``{"features": {...}}``; raises :class:`RecordRejected`."""
        if not isinstance(obj, dict):
            raise RecordRejected("invalid_schema", "request must be a JSON object")
        if "X" in obj:
            return self._maybe_sparse(dense_rows(obj["X"], self.n_features, "X"))
        if "x" in obj:
            return self._maybe_sparse(dense_rows([obj["x"]], self.n_features, "x"))
        if "features" in obj:
            return self._hash(obj["features"])
        raise RecordRejected("invalid_schema", "request needs 'x', 'X' or 'features'")

    # ------------------------------------------------------------ a run of records
    def decode_run(self, values: Sequence[bytes | None]) -> tuple[Features, FloatArray] | None:
        """The run lane: records that are each one sample without weight, dense
        ``{"x": [...], "y": ...}`` or with hashing named ``{"features": {...}, "y": ...}``.
        Returns the rows — X of shape (n, d), or n :class:`SparseRows` rows — and y of shape
        (n,), equal to what :meth:`decode` gives record by record. None as soon as any
        record is of another form or is rejected; then decode the run one record at a
        time, which names each reason.

        Each value is parsed on its own (joining them into one document would let records
        that are invalid alone combine into valid ones). The dense checks are C-level passes
        over the whole run; named features cost one dictionary lookup each.
        """
        objs = self.parse_run(values)
        return None if objs is None else self.run_rows(objs)

    def parse_run(self, values: Sequence[bytes | None]) -> list[Any] | None:
        """Every value parsed by orjson, or None if any is empty, too large or not strict JSON."""
        if not values:
            return None
        try:
            if max(map(len, values)) > self.max_record_bytes:  # type: ignore[arg-type]
                return None
            return list(map(orjson.loads, values))  # type: ignore[arg-type]
        except (orjson.JSONDecodeError, TypeError):  # TypeError: a tombstone (None)
            return None

    def run_rows(self, objs: list[Any]) -> tuple[Features, FloatArray] | None:
        """:meth:`decode_run` of already parsed records."""
        field = "features" if self.sparse else "x"
        if set(map(type, objs)) != {dict} or set(chain.from_iterable(objs)) != {field, "y"}:
            return None
        labels = list(map(itemgetter("y"), objs))
        if not ({int, bool}.issuperset(map(type, labels)) and set(labels) <= {0, 1, -1}):
            return None  # (True and False hash as 1 and 0)
        y = np.array(labels, dtype=np.float64)
        np.maximum(y, 0.0, out=y)  # the label −1 reads as 0
        rows = list(map(itemgetter(field), objs))
        if self._hasher is not None:
            X = self._hasher.rows(rows)
            return None if X is None else (X, y)
        try:
            check_dense_rows(rows, self.n_features, "x")
            return dense_matrix(rows, "x"), y
        except RecordRejected:
            return None

    # ------------------------------------------------------------ helpers
    def _hash(self, features: Any) -> SparseRows:
        if self._hasher is None:
            raise RecordRejected(
                "hashing_disabled", "named 'features' need --hash-bits (feature hashing)"
            )
        return self._hasher.row(features)

    def _decode_dense_batch(self, obj: dict[str, Any]) -> Samples:
        rows = obj["X"]
        if not isinstance(rows, list) or not rows:
            raise RecordRejected("invalid_schema", "'X' must be a non-empty list of rows")
        if "y" not in obj:
            raise RecordRejected("missing_label", "batch has no 'y'")
        labels = obj["y"]
        if not isinstance(labels, list) or len(labels) != len(rows):
            raise RecordRejected("invalid_schema", "'y' must be a list as long as 'X'")
        X = dense_rows(rows, self.n_features, "X")
        y = np.array([label(v) for v in labels])
        w = None
        if "weight" in obj:
            ws = obj["weight"]
            if not isinstance(ws, list) or len(ws) != len(rows):
                raise RecordRejected("invalid_weight", "'weight' must be a list as long as 'X'")
            w = np.array([weight(v, self.max_sample_weight) for v in ws])
        return Samples(self._maybe_sparse(X), y, w)

    def _maybe_sparse(self, X: FloatArray) -> Features:
        if not self.sparse:
            return X
        rows = [(np.flatnonzero(row), row[np.flatnonzero(row)]) for row in X]
        return SparseRows.from_rows(rows, self.n_features)
