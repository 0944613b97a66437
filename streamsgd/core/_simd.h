/* Dot products of the minibatch kernels (_rows.pxd), in a fixed order of operations.
 *
 * Strict floating point (no -ffast-math) forbids the compiler to reorder a sum, so a plain
 * loop runs one dependent addition per element. These functions fix another order
 * explicitly: eight partial sums, held as four pairs in GCC/Clang vector types (two
 * doubles each: SSE2 on x86-64, NEON on arm64; no -march flag needed), combined at the end
 * in a fixed tree. The order is the same on every host, so replicas still compute every
 * step bit for bit alike.
 */
#ifndef STREAMSGD_SIMD_H
#define STREAMSGD_SIMD_H

#include <stddef.h>
#include <string.h>

typedef double ssgd_v2 __attribute__((vector_size(16)));

static inline ssgd_v2 ssgd_load(const double* p) {
    ssgd_v2 v;
    memcpy(&v, p, sizeof v); /* unaligned load */
    return v;
}

static inline double ssgd_tree(ssgd_v2 s0, ssgd_v2 s1, ssgd_v2 s2, ssgd_v2 s3) {
    ssgd_v2 s = (s0 + s1) + (s2 + s3);
    return s[0] + s[1];
}

/* aᵀb */
static inline double ssgd_dot(const double* a, const double* b, ptrdiff_t n) {
    ssgd_v2 s0 = {0.0, 0.0}, s1 = s0, s2 = s0, s3 = s0;
    ptrdiff_t j = 0;
    double tail = 0.0;
    for (; j + 8 <= n; j += 8) {
        s0 += ssgd_load(a + j) * ssgd_load(b + j);
        s1 += ssgd_load(a + j + 2) * ssgd_load(b + j + 2);
        s2 += ssgd_load(a + j + 4) * ssgd_load(b + j + 4);
        s3 += ssgd_load(a + j + 6) * ssgd_load(b + j + 6);
    }
    for (; j < n; j++) tail += a[j] * b[j];
    return ssgd_tree(s0, s1, s2, s3) + tail;
}

/* aᵀb, and ‖a‖² into *squares: one read of a for both. */
static inline double ssgd_dot_and_squares(const double* a, const double* b, ptrdiff_t n,
                                          double* squares) {
    ssgd_v2 s0 = {0.0, 0.0}, s1 = s0, s2 = s0, s3 = s0;
    ssgd_v2 q0 = s0, q1 = s0, q2 = s0, q3 = s0, x;
    ptrdiff_t j = 0;
    double tail = 0.0, tail_squares = 0.0;
    for (; j + 8 <= n; j += 8) {
        x = ssgd_load(a + j);
        s0 += x * ssgd_load(b + j);
        q0 += x * x;
        x = ssgd_load(a + j + 2);
        s1 += x * ssgd_load(b + j + 2);
        q1 += x * x;
        x = ssgd_load(a + j + 4);
        s2 += x * ssgd_load(b + j + 4);
        q2 += x * x;
        x = ssgd_load(a + j + 6);
        s3 += x * ssgd_load(b + j + 6);
        q3 += x * x;
    }
    for (; j < n; j++) {
        tail += a[j] * b[j];
        tail_squares += a[j] * a[j];
    }
    *squares = ssgd_tree(q0, q1, q2, q3) + tail_squares;
    return ssgd_tree(s0, s1, s2, s3) + tail;
}

#endif
