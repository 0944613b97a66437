"""Stable feature hashing of named features into 2^b dimensions.

The hash is MurmurHash3 (x86, 32-bit, seed 0) of the UTF-8 feature name — the hash of
scikit-learn's ``FeatureHasher`` (``sklearn.utils.murmurhash3_32(name, 0, positive=True)``)
and of Vowpal Wabbit — and the bucket its low b bits, so a name maps to the same bucket in
every process, on every machine and in every language (Python's built-in ``hash()`` is
salted per process and must never be used for this).

Names are Vowpal Wabbit style (the decoder builds them): a numeric value v of key k is the
feature named k with value v; a string value v is the indicator feature named "k=v" with
value 1.

Earlier versions hashed with BLAKE2b-64: :data:`FEATURE_HASH` names the current hash, and a
checkpoint of a hashed model records it, so that a model hashed otherwise is refused.
"""

from __future__ import annotations

from ._murmurhash import murmurhash3_32

MAX_HASH_BITS = 30

FEATURE_HASH = "murmurhash3_x86_32/seed=0/utf-8"
"""The identity of the feature hash, stored in checkpoints of hashed models."""


def feature_hash(name: str) -> int:
    """32-bit unsigned MurmurHash3 (x86, seed 0) of a feature name's UTF-8 bytes.

    Raises
    ------
    UnicodeEncodeError
        For a name that is not valid Unicode (a lone surrogate).
    """
    return murmurhash3_32(name.encode("utf-8"), 0)


def feature_index(name: str, hash_bits: int) -> int:
    """Bucket of ``name`` in [0, 2**hash_bits): the low ``hash_bits`` bits of its hash."""
    return feature_hash(name) & ((1 << hash_bits) - 1)
