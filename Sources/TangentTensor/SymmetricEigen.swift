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
        var m = a
        var w = [Double](repeating: 0, count: n)
        var jobz = CChar(UInt8(ascii: "V"))
        var uplo = CChar(UInt8(ascii: "U"))
        var nn = Int32(n)
        var lda = Int32(n)
        var info: Int32 = 0
        var lwork: Int32 = -1
        var liwork: Int32 = -1
        var workSize = 0.0
        var iworkSize: Int32 = 0
        dsyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &workSize, &lwork, &iworkSize, &liwork, &info)
        guard info == 0 else { return nil }
        lwork = Int32(workSize.rounded(.up))
        liwork = iworkSize
        var work = [Double](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        dsyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &work, &lwork, &iwork, &liwork, &info)
        guard info == 0 else { return nil }
        var vectors = [Double](repeating: 0, count: n * n)
        for j in 0..<n { for i in 0..<n { vectors[i * n + j] = m[j * n + i] } }
        return (w, vectors)
    }

    /// The `count` largest eigenpairs (`dsyevr`): eigenvalues ascending and eigenvectors as
    /// the columns of a row-major [n, count] matrix; the whole decomposition when count >= n.
    /// Much cheaper than all n eigenvectors when count is a fraction of n (a preconditioner's
    /// leading subspace). nil if LAPACK fails.
    public static func largest(_ a: [Double], n: Int, count: Int) -> (values: [Double], vectors: [Double])? {
        precondition(a.count == n * n && count >= 0, "a must be n x n")
        if count >= n { return decompose(a, n: n) }
        if count == 0 { return ([], []) }
        var m = a
        var jobz = CChar(UInt8(ascii: "V"))
        var range = CChar(UInt8(ascii: "I"))
        var uplo = CChar(UInt8(ascii: "U"))
        var nn = Int32(n)
        var lda = Int32(n)
        var il = Int32(n - count + 1)
        var iu = Int32(n)
        var found: Int32 = 0
        var ldz = Int32(n)
        var info: Int32 = 0
        var vl = 0.0
        var vu = 0.0
        var abstol = 0.0
        var w = [Double](repeating: 0, count: n)
        var z = [Double](repeating: 0, count: n * count)
        var isuppz = [Int32](repeating: 0, count: 2 * count)
        var lwork: Int32 = -1
        var liwork: Int32 = -1
        var workSize = 0.0
        var iworkSize: Int32 = 0
        dsyevr_(
            &jobz, &range, &uplo, &nn, &m, &lda, &vl, &vu, &il, &iu, &abstol, &found, &w, &z, &ldz, &isuppz,
            &workSize, &lwork, &iworkSize, &liwork, &info)
        guard info == 0 else { return nil }
        lwork = Int32(workSize.rounded(.up))
        liwork = iworkSize
        var work = [Double](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        dsyevr_(
            &jobz, &range, &uplo, &nn, &m, &lda, &vl, &vu, &il, &iu, &abstol, &found, &w, &z, &ldz, &isuppz,
            &work, &lwork, &iwork, &liwork, &info)
        guard info == 0, Int(found) == count else { return nil }
        // z holds the eigenvectors as columns in column-major order: z[j * n + i] is entry i
        // of eigenvector j.
        var vectors = [Double](repeating: 0, count: n * count)
        for j in 0..<count { for i in 0..<n { vectors[i * count + j] = z[j * n + i] } }
        return (Array(w.prefix(count)), vectors)
    }
}
