import CFixedGemm

/// A matrix product whose every output element is the same sequence of IEEE operations
/// (start from c, then add a[i, j] * b[j, k] for j ascending, product and sum rounded
/// separately) whatever the shapes, the element's position, the thread or the CPU.
///
/// BLAS gives no such promise: OpenBLAS's AVX2 (Haswell, Zen) sgemm micro-kernels round
/// a row differently depending on its position in a 12-row tile, so a text's projected
/// features would depend on which texts share its batch. Products whose rows must be
/// invariant go through this kernel; everything else stays on BLAS.
public enum FixedOrderGemm {
    /// The code path the kernel takes. Both give bit-identical results.
    public enum InstructionSet: Int32, Sendable, CaseIterable {
        /// Baseline x86-64 (SSE2), or portable C on other architectures.
        case baseline = 0
        /// 256-bit AVX, where the CPU and OS support it.
        case avx = 1
    }

    /// Scratch floats `accumulate` needs for a product of this depth.
    public static func packCount(depth: Int) -> Int { max(1, depth) * 16 }

    /// c[m x n] (row stride ldc) += a[m x depth] (lda) * b[depth x n] (ldb), row-major.
    /// `pack` holds at least `packCount(depth:)` floats. `path`: the instruction set to
    /// use (tests compare them), nil for the best available.
    @inlinable
    public static func accumulate(
        m: Int, n: Int, depth: Int, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
        pack: UnsafeMutablePointer<Float>, path: InstructionSet? = nil
    ) {
        tangent_fixed_gemm(m, n, depth, a, lda, b, ldb, c, ldc, pack, path?.rawValue ?? -1)
    }

    /// out[i, r] (row stride ldo) = dot(x[i, ...], k[r, ...]) over `depth` entries, for
    /// i < m and r < rows: a few Double vectors against every row of a large Float matrix,
    /// which is read once; products and sums in Double. Each element is a fixed sequence of
    /// operations (16 lanes, then a fixed tree; see `tangent_fixed_dots`), the same on every
    /// CPU and for any split of the rows.
    @inlinable
    public static func dots(
        m: Int, rows: Int, depth: Int, x: UnsafePointer<Double>, ldx: Int,
        k: UnsafePointer<Float>, ldk: Int, out: UnsafeMutablePointer<Double>, ldo: Int,
        path: InstructionSet? = nil
    ) {
        tangent_fixed_dots(m, rows, depth, x, ldx, k, ldk, out, ldo, path?.rawValue ?? -1)
    }

    /// The path a call asking for `path` takes (nil: the best available). Asking for
    /// `.avx` on a CPU without AVX gives the baseline path.
    public static func instructionSet(asking path: InstructionSet? = nil) -> InstructionSet {
        InstructionSet(rawValue: tangent_fixed_gemm_isa(path?.rawValue ?? -1)) ?? .baseline
    }
}
