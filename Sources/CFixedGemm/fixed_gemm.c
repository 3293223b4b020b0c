// A small matrix product whose per-element arithmetic is fixed (see fixed_gemm.h).
// One vector body, compiled twice: for baseline x86-64 and for AVX, chosen at run time.
// Products and sums are separate statements and contraction is off, so no compiler or
// target may fuse them; both versions therefore produce the same bits.
#include "fixed_gemm.h"
#include <stdatomic.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#pragma clang fp contract(off)
// The 8-float vectors never cross a non-inlined call, so the ABI note is moot.
#pragma clang diagnostic ignored "-Wpsabi"
#pragma STDC FP_CONTRACT OFF

enum { MR = 6, NR = 16 };

// 8 floats; aligned(4) permits unaligned loads and stores through it.
typedef float v8 __attribute__((vector_size(32), aligned(4)));

#define INLINE static inline __attribute__((always_inline))

INLINE v8 load8(const float *p) { return *(const v8 *)p; }
INLINE void store8(float *p, v8 v) { *(v8 *)p = v; }
INLINE v8 splat8(float x) { return (v8){x, x, x, x, x, x, x, x}; }

// One MR x NR tile: c (ldc) += a (lda) x pack (NR floats per step of depth).
INLINE void tile_6x16(ptrdiff_t depth, const float *a, ptrdiff_t lda, const float *p, float *c, ptrdiff_t ldc) {
    v8 c00 = load8(c), c01 = load8(c + 8);
    v8 c10 = load8(c + ldc), c11 = load8(c + ldc + 8);
    v8 c20 = load8(c + 2 * ldc), c21 = load8(c + 2 * ldc + 8);
    v8 c30 = load8(c + 3 * ldc), c31 = load8(c + 3 * ldc + 8);
    v8 c40 = load8(c + 4 * ldc), c41 = load8(c + 4 * ldc + 8);
    v8 c50 = load8(c + 5 * ldc), c51 = load8(c + 5 * ldc + 8);
    const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda, *a4 = a + 4 * lda, *a5 = a + 5 * lda;
    for (ptrdiff_t j = 0; j < depth; j++) {
        v8 b0 = load8(p + j * NR), b1 = load8(p + j * NR + 8);
        v8 x, t;
        x = splat8(a0[j]); t = x * b0; c00 = c00 + t; t = x * b1; c01 = c01 + t;
        x = splat8(a1[j]); t = x * b0; c10 = c10 + t; t = x * b1; c11 = c11 + t;
        x = splat8(a2[j]); t = x * b0; c20 = c20 + t; t = x * b1; c21 = c21 + t;
        x = splat8(a3[j]); t = x * b0; c30 = c30 + t; t = x * b1; c31 = c31 + t;
        x = splat8(a4[j]); t = x * b0; c40 = c40 + t; t = x * b1; c41 = c41 + t;
        x = splat8(a5[j]); t = x * b0; c50 = c50 + t; t = x * b1; c51 = c51 + t;
    }
    store8(c, c00); store8(c + 8, c01);
    store8(c + ldc, c10); store8(c + ldc + 8, c11);
    store8(c + 2 * ldc, c20); store8(c + 2 * ldc + 8, c21);
    store8(c + 3 * ldc, c30); store8(c + 3 * ldc + 8, c31);
    store8(c + 4 * ldc, c40); store8(c + 4 * ldc + 8, c41);
    store8(c + 5 * ldc, c50); store8(c + 5 * ldc + 8, c51);
}

// One row of NR columns.
INLINE void tile_1x16(ptrdiff_t depth, const float *a, const float *p, ptrdiff_t pstride, float *c) {
    v8 c0 = load8(c), c1 = load8(c + 8);
    for (ptrdiff_t j = 0; j < depth; j++) {
        v8 x = splat8(a[j]);
        v8 t0 = x * load8(p + j * pstride), t1 = x * load8(p + j * pstride + 8);
        c0 = c0 + t0; c1 = c1 + t1;
    }
    store8(c, c0); store8(c + 8, c1);
}

INLINE void body(ptrdiff_t m, ptrdiff_t n, ptrdiff_t depth, const float *a, ptrdiff_t lda,
                 const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, float *pack) {
    for (ptrdiff_t k0 = 0; k0 < n; k0 += NR) {
        ptrdiff_t nb = n - k0 < NR ? n - k0 : NR;
        if (nb == NR && m < MR) {
            // Too few rows to pay for packing: read b in place.
            for (ptrdiff_t i = 0; i < m; i++) tile_1x16(depth, a + i * lda, b + k0, ldb, c + i * ldc + k0);
            continue;
        }
        // Pack the column panel, zero-padded to NR columns (padding only ever meets
        // padding: valid columns keep their own sequence of operations).
        for (ptrdiff_t j = 0; j < depth; j++) {
            float *dst = pack + j * NR;
            memcpy(dst, b + j * ldb + k0, (size_t)nb * sizeof(float));
            for (ptrdiff_t k = nb; k < NR; k++) dst[k] = 0;
        }
        ptrdiff_t i = 0;
        if (nb == NR) {
            for (; i + MR <= m; i += MR) tile_6x16(depth, a + i * lda, lda, pack, c + i * ldc + k0, ldc);
            for (; i < m; i++) tile_1x16(depth, a + i * lda, pack, NR, c + i * ldc + k0);
        } else {
            // A partial panel goes through a padded copy of each row of c.
            float row[NR];
            for (; i < m; i++) {
                memcpy(row, c + i * ldc + k0, (size_t)nb * sizeof(float));
                for (ptrdiff_t k = nb; k < NR; k++) row[k] = 0;
                tile_1x16(depth, a + i * lda, pack, NR, row);
                memcpy(c + i * ldc + k0, row, (size_t)nb * sizeof(float));
            }
        }
    }
}

// Dot products of a few Double rows x[i] with every Float row k[r] (see tangent_fixed_dots):
// 16 lanes in four 4-double accumulators, lane l summing the products at j = l mod 16 in
// ascending order (k widened to double exactly); then (a0 + a1) + (a2 + a3) lane-wise, the
// four lanes as (l0 + l1) + (l2 + l3), and the tail in ascending order. The same sequence on
// every path. Four independent accumulators keep the additions' latency off the critical
// path; pairs of x rows share each load of k.
typedef double v4d __attribute__((vector_size(32), aligned(8)));
typedef float v4f __attribute__((vector_size(16), aligned(4)));

INLINE v4d load4d(const double *p) { return *(const v4d *)p; }
INLINE v4d widen4(const float *p) { return __builtin_convertvector(*(const v4f *)p, v4d); }
INLINE v4d splat4d(double x) { return (v4d){x, x, x, x}; }

// mb (1 or 2) is a constant after inlining, so the accumulators live in registers.
INLINE void dots_group(int mb, ptrdiff_t rows, ptrdiff_t depth, const double *x, ptrdiff_t ldx,
                       const float *k, ptrdiff_t ldk, double *out, ptrdiff_t ldo) {
    ptrdiff_t main_depth = depth - depth % 16;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *kr = k + r * ldk;
        v4d acc[2][4];
        for (int i = 0; i < mb; i++) for (int q = 0; q < 4; q++) acc[i][q] = splat4d(0);
        for (ptrdiff_t j = 0; j < main_depth; j += 16) {
            v4d k0 = widen4(kr + j), k1 = widen4(kr + j + 4), k2 = widen4(kr + j + 8), k3 = widen4(kr + j + 12);
            for (int i = 0; i < mb; i++) {
                const double *xi = x + i * ldx + j;
                v4d t;
                t = load4d(xi) * k0; acc[i][0] = acc[i][0] + t;
                t = load4d(xi + 4) * k1; acc[i][1] = acc[i][1] + t;
                t = load4d(xi + 8) * k2; acc[i][2] = acc[i][2] + t;
                t = load4d(xi + 12) * k3; acc[i][3] = acc[i][3] + t;
            }
        }
        for (int i = 0; i < mb; i++) {
            v4d a = (acc[i][0] + acc[i][1]) + (acc[i][2] + acc[i][3]);
            double s = (a[0] + a[1]) + (a[2] + a[3]);
            const double *xi = x + i * ldx;
            for (ptrdiff_t j = main_depth; j < depth; j++) { double t = xi[j] * (double)kr[j]; s = s + t; }
            out[i * ldo + r] = s;
        }
    }
}

INLINE void dots_body(ptrdiff_t m, ptrdiff_t rows, ptrdiff_t depth, const double *x, ptrdiff_t ldx,
                      const float *k, ptrdiff_t ldk, double *out, ptrdiff_t ldo) {
    ptrdiff_t i = 0;
    for (; i + 2 <= m; i += 2) dots_group(2, rows, depth, x + i * ldx, ldx, k, ldk, out + i * ldo, ldo);
    if (i < m) dots_group(1, rows, depth, x + i * ldx, ldx, k, ldk, out + i * ldo, ldo);
}

static void dots_baseline(ptrdiff_t m, ptrdiff_t rows, ptrdiff_t depth, const double *x, ptrdiff_t ldx,
                          const float *k, ptrdiff_t ldk, double *out, ptrdiff_t ldo) {
    dots_body(m, rows, depth, x, ldx, k, ldk, out, ldo);
}

#if defined(__x86_64__)
__attribute__((target("avx")))
static void dots_avx(ptrdiff_t m, ptrdiff_t rows, ptrdiff_t depth, const double *x, ptrdiff_t ldx,
                     const float *k, ptrdiff_t ldk, double *out, ptrdiff_t ldo) {
    dots_body(m, rows, depth, x, ldx, k, ldk, out, ldo);
}
#endif

static void kernel_baseline(ptrdiff_t m, ptrdiff_t n, ptrdiff_t depth, const float *a, ptrdiff_t lda,
                            const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, float *pack) {
    body(m, n, depth, a, lda, b, ldb, c, ldc, pack);
}

#if defined(__x86_64__)
__attribute__((target("avx")))
static void kernel_avx(ptrdiff_t m, ptrdiff_t n, ptrdiff_t depth, const float *a, ptrdiff_t lda,
                       const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, float *pack) {
    body(m, n, depth, a, lda, b, ldb, c, ldc, pack);
}

// AVX needs the CPU flag and the OS saving the upper register halves (XCR0 bits 1, 2).
static int cpu_has_avx(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    if (!(ecx & bit_AVX) || !(ecx & bit_OSXSAVE)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6;
}
#endif

// The CPU's features, detected once (a fact of the machine, not a setting).
static _Atomic int detected = -1;

static int available(void) {
    int d = atomic_load_explicit(&detected, memory_order_relaxed);
    if (d < 0) {
#if defined(__x86_64__)
        d = cpu_has_avx();
#else
        d = 0;
#endif
        atomic_store_explicit(&detected, d, memory_order_relaxed);
    }
    return d;
}

int tangent_fixed_gemm_isa(int isa) {
    int best = available();
    return isa >= 0 && isa < best ? isa : best;
}

void tangent_fixed_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t depth, const float *a, ptrdiff_t lda,
                        const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, float *pack, int isa) {
    if (m <= 0 || n <= 0 || depth <= 0) return;
#if defined(__x86_64__)
    if (tangent_fixed_gemm_isa(isa) == 1) { kernel_avx(m, n, depth, a, lda, b, ldb, c, ldc, pack); return; }
#endif
    kernel_baseline(m, n, depth, a, lda, b, ldb, c, ldc, pack);
}

void tangent_fixed_dots(ptrdiff_t m, ptrdiff_t rows, ptrdiff_t depth, const double *x, ptrdiff_t ldx,
                        const float *k, ptrdiff_t ldk, double *out, ptrdiff_t ldo, int isa) {
    if (m <= 0 || rows <= 0) return;
#if defined(__x86_64__)
    if (tangent_fixed_gemm_isa(isa) == 1) { dots_avx(m, rows, depth, x, ldx, k, ldk, out, ldo); return; }
#endif
    dots_baseline(m, rows, depth, x, ldx, k, ldk, out, ldo);
}
