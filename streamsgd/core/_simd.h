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

/* The same for four rows x[0..3] at once (w read once for the four): z[k] = x[k]ᵀw and
 * q[k] = ‖x[k]‖², each a pair of partial sums (even and odd elements) added at the end.
 * ``ahead`` (or NULL): the 4 n doubles the caller reads next, fetched meanwhile (one cache
 * line per iteration; a hint only, no value depends on it): a batch streamed from memory
 * waited on every block's first loads. */
static inline void ssgd_dot4_and_squares(const double* const* x, const double* w, ptrdiff_t n,
                                         double* z, double* q, const double* ahead) {
    ssgd_v2 z0 = {0.0, 0.0}, z1 = z0, z2 = z0, z3 = z0, q0 = z0, q1 = z0, q2 = z0, q3 = z0;
    ssgd_v2 b, a;
    const double *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    ptrdiff_t j = 0;
    for (; j + 2 <= n; j += 2) {
        if (ahead) __builtin_prefetch(ahead + 4 * j);
        b = ssgd_load(w + j);
        a = ssgd_load(x0 + j);
        z0 += a * b;
        q0 += a * a;
        a = ssgd_load(x1 + j);
        z1 += a * b;
        q1 += a * a;
        a = ssgd_load(x2 + j);
        z2 += a * b;
        q2 += a * a;
        a = ssgd_load(x3 + j);
        z3 += a * b;
        q3 += a * a;
    }
    z[0] = z0[0] + z0[1];
    z[1] = z1[0] + z1[1];
    z[2] = z2[0] + z2[1];
    z[3] = z3[0] + z3[1];
    q[0] = q0[0] + q0[1];
    q[1] = q1[0] + q1[1];
    q[2] = q2[0] + q2[1];
    q[3] = q3[0] + q3[1];
    if (j < n) { /* odd n: the last element */
        z[0] += x0[j] * w[j];
        z[1] += x1[j] * w[j];
        z[2] += x2[j] * w[j];
        z[3] += x3[j] * w[j];
        q[0] += x0[j] * x0[j];
        q[1] += x1[j] * x1[j];
        q[2] += x2[j] * x2[j];
        q[3] += x3[j] * x3[j];
    }
}

/* y ← y + ((a0 x0 + a1 x1) + (a2 x2 + a3 x3)): four rows' rank-one updates with one load and
 * one store of y (a row at a time, the loop is bound by the stores to y). */
static inline void ssgd_axpy4(const double* a, const double* const* x, double* y, ptrdiff_t n) {
    ssgd_v2 a0 = {a[0], a[0]}, a1 = {a[1], a[1]}, a2 = {a[2], a[2]}, a3 = {a[3], a[3]}, t;
    const double *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    ptrdiff_t j = 0;
    for (; j + 2 <= n; j += 2) {
        t = ssgd_load(y + j)
            + ((a0 * ssgd_load(x0 + j) + a1 * ssgd_load(x1 + j))
               + (a2 * ssgd_load(x2 + j) + a3 * ssgd_load(x3 + j)));
        memcpy(y + j, &t, sizeof t);
    }
    if (j < n) y[j] += (a[0] * x0[j] + a[1] * x1[j]) + (a[2] * x2[j] + a[3] * x3[j]);
}

#endif
