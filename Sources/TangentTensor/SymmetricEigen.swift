import CBLAS

/// Eigendecomposition of a symmetric matrix through LAPACK (`dsyevd`, bundled with
/// OpenBLAS): for the small dense problems of the solvers (a few hundred rows).
public enum SymmetricEigen {
    /// Eigenvalues in ascending order and the eigenvectors as the columns of a row-major
    /// [n, n] matrix (vectors[i * n + j] is entry i of eigenvector j), or nil if LAPACK
    /// reports that the iteration did not converge.
    public static func decompose(_ a: [Double], n: Int) -> (values: [Double], vectors: [Double])? {
        precondition(a.count == n * n, "a must be n x n")
        if n == 0 { return ([], []) }
        // Row-major symmetric = its column-major transpose; LAPACK returns eigenvectors as
        // columns in column-major order, i.e. rows in row-major: transpose at the end.
        var m = a, w = [Double](repeating: 0, count: n)
        var jobz = CChar(UInt8(ascii: "V")), uplo = CChar(UInt8(ascii: "U"))
        var nn = Int32(n), lda = Int32(n), info: Int32 = 0
        var lwork: Int32 = -1, liwork: Int32 = -1
        var workSize = 0.0, iworkSize: Int32 = 0
        dsyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &workSize, &lwork, &iworkSize, &liwork, &info)
        guard info == 0 else { return nil }
        lwork = Int32(workSize.rounded(.up))
        liwork = iworkSize
        var work = [Double](repeating: 0, count: Int(lwork)), iwork = [Int32](repeating: 0, count: Int(liwork))
        dsyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &work, &lwork, &iwork, &liwork, &info)
        guard info == 0 else { return nil }
        var vectors = [Double](repeating: 0, count: n * n)
        for j in 0..<n { for i in 0..<n { vectors[i * n + j] = m[j * n + i] } }
        return (w, vectors)
    }
}
