/// Gram matrices of feature rows and their cosine normalization N(K)(x, x') =
/// K(x, x') / sqrt(K(x, x) K(x', x')): the one routine every kernel stage uses, with one
/// policy for a text whose gradient is zero (its normalized kernel is 0, never NaN).
public enum Gram {
    /// K [m, n] = A B^T for rows A [m, width] and B [n, width], through BLAS.
    public static func product<T: BLASScalar>(_ a: [T], _ b: [T], m: Int, n: Int, width: Int) -> [T] {
        precondition(a.count == m * width && b.count == n * width)
        var k = [T](repeating: 0, count: m * n)
        T.gemm(
            transA: false, transB: true, m: m, n: n, k: width, alpha: 1, a: a, lda: width, b: b, ldb: width, beta: 0,
            c: &k, ldc: n)
        return k
    }

    /// The squared norm <x_i, x_i> of each row of x [rows, width].
    public static func squaredNorms<T: BLASScalar>(_ x: [T], rows: Int) -> [T] {
        let width = rows == 0 ? 0 : x.count / rows
        return x.withUnsafeBufferPointer { p in
            (0..<rows).map { T.dot(n: width, x: p.baseAddress! + $0 * width, y: p.baseAddress! + $0 * width) }
        }
    }

    /// v / sqrt(a b), and 0 where a b is 0 (a text without gradient).
    @inline(__always)
    public static func cosine<T: BLASScalar>(_ v: T, _ a: T, _ b: T) -> T {
        let d = a * b
        return d > 0 ? v / d.squareRoot() : 0
    }

    /// Normalizes K [rows, columns] in place by the self-kernels of its row and column texts.
    public static func normalize<T: BLASScalar>(_ k: inout [T], rowSelf: [T], columnSelf: [T]) {
        let m = rowSelf.count
        let n = columnSelf.count
        precondition(k.count == m * n)
        for i in 0..<m { for j in 0..<n { k[i * n + j] = cosine(k[i * n + j], rowSelf[i], columnSelf[j]) } }
    }

    /// The factor 1 / ||x|| that scales a row of squared norm `squaredNorm` to unit norm,
    /// and 0 for a zero row (a text without gradient).
    @inline(__always)
    public static func unitScale<T: BLASScalar>(_ squaredNorm: T) -> T {
        squaredNorm > 0 ? 1 / squaredNorm.squareRoot() : 0
    }

    /// Rows x [rows, width] scaled to unit norm (zero rows stay zero), so that their Gram
    /// matrix is the normalized kernel.
    public static func unitRows<T: BLASScalar>(_ x: [T], rows: Int, squaredNorms: [T]) -> [T] {
        let width = rows == 0 ? 0 : x.count / rows
        var out = x
        for i in 0..<rows {
            let s = unitScale(squaredNorms[i])
            for j in 0..<width { out[i * width + j] *= s }
        }
        return out
    }
}
