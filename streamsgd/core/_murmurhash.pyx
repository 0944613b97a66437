# cython: language_level=3
"""MurmurHash3 (x86, 32-bit; Austin Appleby's public-domain reference algorithm).

The hash of scikit-learn's ``FeatureHasher`` (``sklearn.utils.murmurhash3_32``) and of
Vowpal Wabbit: a bucket computed here can be checked against either. Other compiled modules
``cimport`` :func:`murmurhash3_x86_32` to hash bytes without a Python call.
"""

from libc.stdint cimport uint32_t


cdef inline uint32_t _rotl32(uint32_t x, int r) noexcept nogil:
    return (x << r) | (x >> (32 - r))


cdef inline uint32_t _read_block(const unsigned char* p) noexcept nogil:
    # Little-endian load, independent of the host's byte order and alignment.
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef uint32_t murmurhash3_x86_32(const unsigned char* data, Py_ssize_t length,
                                 uint32_t seed) noexcept nogil:
    cdef uint32_t c1 = 0xcc9e2d51U
    cdef uint32_t c2 = 0x1b873593U
    cdef uint32_t h = seed
    cdef uint32_t k
    cdef Py_ssize_t n_blocks = length // 4
    cdef Py_ssize_t i
    cdef const unsigned char* tail
    for i in range(n_blocks):
        k = _read_block(data + 4 * i)
        k *= c1
        k = _rotl32(k, 15)
        k *= c2
        h ^= k
        h = _rotl32(h, 13)
        h = h * 5 + <uint32_t>0xe6546b64U
    tail = data + 4 * n_blocks
    k = 0
    if length & 3 == 3:
        k ^= (<uint32_t>tail[2]) << 16
    if length & 3 >= 2:
        k ^= (<uint32_t>tail[1]) << 8
    if length & 3 >= 1:
        k ^= tail[0]
        k *= c1
        k = _rotl32(k, 15)
        k *= c2
        h ^= k
    h ^= <uint32_t>length
    h ^= h >> 16
    h *= <uint32_t>0x85ebca6bU
    h ^= h >> 13
    h *= <uint32_t>0xc2b2ae35U
    h ^= h >> 16
    return h


def murmurhash3_32(key: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit of ``key`` as an unsigned int in [0, 2**32).

    Equals ``sklearn.utils.murmurhash3_32(key, seed, positive=True)``.
    """
    cdef const unsigned char[:] view = key
    if len(key) == 0:
        return murmurhash3_x86_32(<const unsigned char*>b"", 0, <uint32_t>seed)
    return murmurhash3_x86_32(&view[0], len(key), <uint32_t>seed)
