"""The compiled MurmurHash3 (x86, 32-bit, seed 0) against an independent pure-Python
transcription of the reference algorithm, and against scikit-learn's published values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamsgd.core._murmurhash import murmurhash3_32

MASK = 0xFFFFFFFF


def reference_murmurhash3_32(key: bytes, seed: int = 0) -> int:
    """Appleby's MurmurHash3_x86_32, written out in Python (the oracle)."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & MASK
    n_blocks = len(key) // 4

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & MASK

    for i in range(n_blocks):
        k = int.from_bytes(key[4 * i : 4 * i + 4], "little")
        k = rotl((k * c1) & MASK, 15) * c2 & MASK
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & MASK
    tail = key[4 * n_blocks :]
    k = 0
    for j in reversed(range(len(tail))):
        k ^= tail[j] << (8 * j)
    if tail:
        h ^= rotl((k * c1) & MASK, 15) * c2 & MASK
    h ^= len(key)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK
    return h ^ (h >> 16)


def test_values_of_scikit_learn() -> None:
    # sklearn.utils.murmurhash3_32(key, seed=0, positive=True), computed with scikit-learn 1.9.
    expected = {b"": 0, b"hello": 613153351, b"foo=bar": 417846034, b"abcde": 3902511862}
    for key, value in expected.items():
        assert murmurhash3_32(key) == value


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=MASK))
def test_matches_reference(key: bytes, seed: int) -> None:
    assert murmurhash3_32(key, seed) == reference_murmurhash3_32(key, seed)
