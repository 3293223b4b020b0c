import CBLAS

/// Cholesky factorization of symmetric positive definite matrices through LAPACK
/// (`dpotrf`, bundled with OpenBLAS) and triangular solves through BLAS (`dtrsm`).
public enum Cholesky {
    /// Factors `a` ([n, n], row-major, symmetric) in place into L with A = L L^T (L in
    /// the lower triangle, row-major; the upper triangle is zeroed). Returns nil on
    /// success, or the 1-based order of the leading minor that is not positive definite.
    public static func factor(_ a: inout [Double], n: Int) -> Int? {
        var info: Int32 = 0
        var nn = Int32(n)
        var lda = Int32(max(1, n))
        // A row-major symmetric matrix is its own column-major transpose: LAPACK's upper
        // factor U (A = U^T U, column-major) read row-major is L = U^T, lower.
        var uplo = CChar(UInt8(ascii: "U"))
        a.withUnsafeMutableBufferPointer { p in dpotrf_(&uplo, &nn, p.baseAddress, &lda, &info) }
        if info != 0 { return Int(info) }
        for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { a[i * n + j] = 0 } }
        return nil
    }

    /// Replaces every row b_i of `b` ([m, n]) by L^{-1} b_i, i.e. B <- B L^{-T}.
    public static func solveRows(lower l: [Double], n: Int, _ b: inout [Double], m: Int) {
        if m == 0 { return }
        cblas_dtrsm(
            CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, Int32(m), Int32(n), 1, l, Int32(n), &b,
            Int32(n))
    }
}
