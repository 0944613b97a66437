"""Stable feature hashing of named features into 2^b dimensions.

The hash is the first 8 bytes of BLAKE2b of the UTF-8 feature name, so a name maps to the
same bucket in every process, on every machine and in every language that has BLAKE2b
(Python's built-in ``hash()`` is salted per process and must never be used for this).

Names are Vowpal Wabbit style (the decoder builds them): a numeric value v of key k is the
feature named k with value v; a string value v is the indicator feature named "k=v" with
value 1.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

MAX_HASH_BITS = 30


@lru_cache(maxsize=1 << 16)
def feature_hash(name: str) -> int:
    """64-bit unsigned hash of a feature name (little-endian BLAKE2b-64)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def feature_index(name: str, hash_bits: int) -> int:
    """Bucket of ``name`` in [0, 2**hash_bits)."""
    return feature_hash(name) & ((1 << hash_bits) - 1)
