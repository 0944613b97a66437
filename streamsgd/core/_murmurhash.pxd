from libc.stdint cimport uint32_t


cdef uint32_t murmurhash3_x86_32(const unsigned char* data, Py_ssize_t length,
                                 uint32_t seed) noexcept nogil
