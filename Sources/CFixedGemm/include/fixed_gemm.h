#ifndef TANGENT_FIXED_GEMM_H
#define TANGENT_FIXED_GEMM_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// c[i*ldc + k] += sum over j < depth of a[i*lda + j] * b[j*ldb + k], for i < m, k < n.
///
/// Every element is computed as the same sequence of IEEE operations, whatever m, n, the
/// element's row and column position, the thread or the CPU: acc = c; for j ascending,
/// acc = acc + (a * b), each product and sum rounded on its own (no fused multiply-add).
/// So a row's result never depends on which other rows share the call, unlike BLAS,
/// whose micro-kernels may round rows differently by their position in a tile.
///
/// `pack` is caller-owned scratch of at least depth * 16 floats (none is allocated).
/// `isa`: the instruction set to run with (see `tangent_fixed_gemm_isa`), -1 for the best.
void tangent_fixed_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t depth,
                        const float *a, ptrdiff_t lda,
                        const float *b, ptrdiff_t ldb,
                        float *c, ptrdiff_t ldc, float *pack, int isa);

/// out[i*ldo + r] = sum over j < depth of x[i*ldx + j] * k[r*ldk + j], for i < m, r < rows:
/// a few Double vectors dotted with every row of a large Float matrix, which is read
/// once, row by row; products and sums in Double (k widened exactly).
///
/// Every element is the same sequence of IEEE operations on every CPU and path: 16
/// lanes, lane l summing the products at j = l, l + 16, ... (those below depth rounded
/// down to a multiple of 16) in ascending order; lanes l, l + 4, l + 8, l + 12 combined as
/// (a0 + a1) + (a2 + a3); the four results as (l0 + l1) + (l2 + l3); then the remaining
/// products in ascending order. No fused multiply-add.
/// Rows are independent, so any split of the rows gives the same bits.
void tangent_fixed_dots(ptrdiff_t m, ptrdiff_t rows, ptrdiff_t depth,
                        const double *x, ptrdiff_t ldx,
                        const float *k, ptrdiff_t ldk,
                        double *out, ptrdiff_t ldo, int isa);

/// The instruction set a call asking for `isa` runs with: 0 baseline x86-64 (SSE2) or
/// portable C, 1 AVX (only where the CPU has it; asking for 1 elsewhere gives 0); -1 asks
/// for the best available. Both give bit-identical results. No state is kept but the
/// CPU's detected features.
int tangent_fixed_gemm_isa(int isa);

#ifdef __cplusplus
}
#endif
#endif
