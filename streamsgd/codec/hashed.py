"""Named features hashed into 2^b buckets (VW style, as in :mod:`streamsgd.core.hashing`):
a string value v of key k is the indicator feature "k=v" with value 1, a number v the
feature k with value v; features that share a bucket add up."""

from __future__ import annotations

import math
from itertools import chain, compress, repeat
from operator import add, is_
from typing import Any

import numpy as np

from ..core.hashing import FEATURE_HASH, feature_index
from ..core.sparse import SparseRows
from .records import RecordRejected

# Feature names whose bucket a hasher remembers (hashing a name costs ≈ 0.5 µs, a lookup
# ≈ 0.05 µs; categorical streams repeat their names).
BUCKET_CACHE_SIZE = 1 << 18


class FeatureHasher:
    """Rows of named features as :class:`SparseRows` of ``2**hash_bits`` columns."""

    def __init__(self, hash_bits: int) -> None:
        self.hash_bits = hash_bits
        self.n_features = 1 << hash_bits
        self._bucket_of: dict[str, int] = {}

    def row(self, features: Any) -> SparseRows:
        """One record's ``features`` object as one sparse row; raises :class:`RecordRejected`."""
        if not isinstance(features, dict):
            raise RecordRejected("invalid_schema", "'features' must be an object")
        buckets = self._buckets(features)
        # Sorted columns: the cheapest form for SparseRows.row_squared_norms.
        keys = sorted(buckets)
        indices = np.fromiter(keys, dtype=np.int64, count=len(keys))
        values = np.fromiter((buckets[k] for k in keys), dtype=np.float64, count=len(keys))
        return SparseRows.from_rows([(indices, values)], self.n_features)

    def rows(self, rows: list[Any]) -> SparseRows | None:
        """Many records' ``features`` objects at once, or None if any would be rejected (then
        decode them one by one with :meth:`row`, which names the reason)."""
        if set(map(type, rows)) != {dict}:
            return None
        if set(map(type, chain.from_iterable(map(dict.values, rows)))) <= {str}:
            try:
                return self._indicator_rows(rows)
            except RecordRejected:
                return None
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indices: list[int] = []
        values: list[float] = []
        try:
            for i, features in enumerate(rows, 1):
                buckets = self._buckets(features)
                keys = sorted(buckets)  # as row(): sorted, distinct columns per row
                indices += keys
                values += map(buckets.__getitem__, keys)
                indptr[i] = len(indices)
        except RecordRejected:
            return None
        return SparseRows(
            indptr,
            np.array(indices, dtype=np.int64),
            np.array(values, dtype=np.float64),
            self.n_features,
        )

    def _indicator_rows(self, rows: list[dict[str, str]]) -> SparseRows:
        """:meth:`rows` when every value is a string (categorical indicators, value 1): the
        names of the whole run in one pass, then one sort of (row, column) keys. The same
        CSR as record by record: each row's columns sorted and distinct, a column hit k
        times within a row holding k (sums of ones are exact in any order)."""
        # "key=value" for every feature of the run, iterated in C (keys and values of each
        # dict come in the same order).
        names = list(
            map(
                add,
                map(add, chain.from_iterable(rows), repeat("=")),
                chain.from_iterable(map(dict.values, rows)),
            )
        )
        bucket_of = self._bucket_of
        columns = list(map(bucket_of.get, names))
        if None in columns:
            new_names = set(compress(names, map(is_, columns, repeat(None))))
            if len(bucket_of) + len(new_names) > BUCKET_CACHE_SIZE:
                bucket_of.clear()  # bounded memory under an unbounded vocabulary
            for name in new_names:
                bucket_of[name] = _index(name, self.hash_bits)
            columns = list(map(bucket_of.__getitem__, names))
        d = self.n_features
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        row_of = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        keys = np.sort(row_of * d + np.array(columns, dtype=np.int64))
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, len(keys)))
        kept = keys[starts]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.bincount(kept // d, minlength=len(rows)), out=indptr[1:])
        return SparseRows(indptr, kept % d, counts.astype(np.float64), d)

    def _buckets(self, features: dict[str, Any]) -> dict[int, float]:
        """Bucket → summed value of one record's named features."""
        bucket_of = self._bucket_of
        buckets: dict[int, float] = {}
        for key, raw in features.items():
            kind = type(raw)  # exact types: bool (a subclass of int) is refused
            if kind is str:
                name, value = f"{key}={raw}", 1.0
            elif kind is float or kind is int:
                try:
                    name, value = key, float(raw)
                except OverflowError:  # a JSON integer beyond the float range
                    raise RecordRejected("non_finite", f"feature {key!r} is out of range") from None
                if not math.isfinite(value):
                    raise RecordRejected("non_finite", f"feature {key!r} is NaN or infinite")
            else:
                raise RecordRejected(
                    "invalid_schema", f"feature {key!r} must be a number or a string"
                )
            index = bucket_of.get(name)
            if index is None:
                if len(bucket_of) >= BUCKET_CACHE_SIZE:
                    bucket_of.clear()  # bounded memory under an unbounded vocabulary
                index = bucket_of[name] = _index(name, self.hash_bits)
            buckets[index] = buckets.get(index, 0.0) + value
        return buckets


def _index(name: str, hash_bits: int) -> int:
    """:func:`feature_index`, or ``invalid_schema`` for a name with no UTF-8 form (a lone
    surrogate, which the lenient JSON parser lets through as ``"\\ud800"``)."""
    try:
        return feature_index(name, hash_bits)
    except UnicodeEncodeError:
        raise RecordRejected(
            "invalid_schema", f"feature name {name!r:.60} is not valid Unicode"
        ) from None


def feature_hash_state(hash_bits: int | None) -> dict[str, Any] | None:
    """What a checkpoint records of the feature hash: None for a dense model, else the hash's
    identity (:data:`~streamsgd.core.hashing.FEATURE_HASH`) and b."""
    return None if hash_bits is None else {"hash": FEATURE_HASH, "hash_bits": hash_bits}


def feature_hash_mismatch(stored: Any, hash_bits: int | None) -> str | None:
    """Why a checkpoint whose ``feature_hash`` entry is ``stored`` (absent: None) cannot be
    resumed by a run hashing with ``hash_bits`` (None: dense), in one line; None if it can.

    A hashed checkpoint written before the hash became MurmurHash3 has no entry; its weights
    belong to other buckets, so it is refused (a 0.x format: no migration, retrain). Dense
    checkpoints never had one and still load.
    """
    if stored == feature_hash_state(hash_bits):
        return None
    if hash_bits is None:
        return (
            f"the checkpoint holds a model of hashed named features ({stored!r:.80}): "
            "run with the same --hash-bits, or use another --checkpoint-dir"
        )
    if stored is None:
        return (
            "the checkpoint holds a model without the current feature hash: either dense, or "
            "hashed by an older streamsgd with BLAKE2b; named features are now hashed with "
            f"MurmurHash3 x86-32 ({FEATURE_HASH}), so the model must be retrained: "
            "use another --checkpoint-dir"
        )
    return (
        f"the checkpoint's feature hash {stored!r:.80} is not this run's "
        f"{feature_hash_state(hash_bits)!r}: the model must be retrained with this hash "
        "(use another --checkpoint-dir)"
    )
