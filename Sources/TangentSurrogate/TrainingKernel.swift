import TangentTensor

/// The train x train kernel as the surrogate's fit uses it: products with a few rows, its
/// diagonal, the sub-kernel of some training texts, and the kernel between two sets of them.
///
/// A kernel of features narrower than a quarter of the texts (ck and embedding: the model
/// width; if-head: C (d + 1)) stays factored, K = F F^T: a product then reads F twice,
/// 2 n D numbers, instead of the n^2 of the matrix, and the matrix is never built. On all
/// 8,442 movie-snippets texts that is 30x less to read per step for ck and embedding.
public enum TrainingKernel: Sendable {
    /// K [n, n] row-major, exactly symmetric.
    case dense([Float], n: Int)
    /// K = F F^T with F [n, width] row-major (rows already scaled for a normalized kernel),
    /// and F^T [width, n] for the first half of a product.
    case factored(rows: [Float], transposed: [Float], n: Int, width: Int)
    /// K = F F^T with F read from a feature file block by block (`StreamedFeatures`):
    /// training sets whose features do not fit in memory.
    case streamed(StreamedFeatures)

    /// `rows` [n, width]: factored when 4 width <= n, else the matrix F F^T (symmetrized).
    public static func gram(features rows: [Float], n: Int, width: Int) -> TrainingKernel {
        precondition(rows.count == n * width)
        if 4 * width <= n {
            var t = [Float](repeating: 0, count: n * width)
            for i in 0..<n { for j in 0..<width { t[j * n + i] = rows[i * width + j] } }
            return .factored(rows: rows, transposed: t, n: n, width: width)
        }
        var k = Gram.product(rows, rows, m: n, n: n, width: width)
        symmetrize(&k, n: n)
        return .dense(k, n: n)
    }

    /// A kernel matrix given as such (exact kernels), symmetrized.
    public static func matrix(_ k: [Float], n: Int) -> TrainingKernel {
        precondition(k.count == n * n)
        var k = k
        symmetrize(&k, n: n)
        return .dense(k, n: n)
    }

    /// Copies the upper triangle onto the lower: the fit multiplies by K from one side
    /// only, which is right only if K is exactly symmetric, and BLAS may round (i, j) and
    /// (j, i) differently.
    private static func symmetrize(_ k: inout [Float], n: Int) {
        for i in 0..<n { for j in 0..<i { k[i * n + j] = k[j * n + i] } }
    }

    public var n: Int {
        switch self {
        case .dense(_, let n), .factored(_, _, let n, _): return n
        case .streamed(let s): return s.n
        }
    }

    /// K's diagonal.
    public var diagonal: [Double] {
        switch self {
        case .dense(let k, let n):
            return (0..<n).map { Double(k[$0 * n + $0]) }
        case .factored(let f, _, let n, let w):
            return (0..<n).map { i in (0..<w).reduce(0.0) { $0 + Double(f[i * w + $1]) * Double(f[i * w + $1]) } }
        case .streamed(let s):
            return s.diagonal
        }
    }

    /// The sub-kernel of the texts `indices`.
    public func restricted(to indices: [Int]) -> TrainingKernel {
        switch self {
        case .dense(let k, let n):
            var s = [Float](repeating: 0, count: indices.count * indices.count)
            for (a, i) in indices.enumerated() {
                for (b, j) in indices.enumerated() { s[a * indices.count + b] = k[i * n + j] }
            }
            return .dense(s, n: indices.count)
        case .factored(let f, _, _, let w):
            var rows = [Float](repeating: 0, count: indices.count * w)
            for (a, i) in indices.enumerated() { for j in 0..<w { rows[a * w + j] = f[i * w + j] } }
            var t = [Float](repeating: 0, count: indices.count * w)
            for a in indices.indices { for j in 0..<w { t[j * indices.count + a] = rows[a * w + j] } }
            return .factored(rows: rows, transposed: t, n: indices.count, width: w)
        case .streamed(let s):
            // A part small enough to hold (the selector's sample of texts): in memory.
            return .gram(features: s.gather(indices), n: indices.count, width: s.width)
        }
    }

    /// K(X_a, X_b) [a.count, b.count]: kernel rows of texts `a` against the texts `b`.
    public func block(rows a: [Int], columns b: [Int]) -> [Float] {
        var out = [Float](repeating: 0, count: a.count * b.count)
        switch self {
        case .dense(let k, let n):
            for (r, i) in a.enumerated() { for (c, j) in b.enumerated() { out[r * b.count + c] = k[i * n + j] } }
        case .factored(let f, _, _, let w):
            var fa = [Float](repeating: 0, count: a.count * w)
            var fb = [Float](repeating: 0, count: b.count * w)
            for (r, i) in a.enumerated() { for j in 0..<w { fa[r * w + j] = f[i * w + j] } }
            for (r, i) in b.enumerated() { for j in 0..<w { fb[r * w + j] = f[i * w + j] } }
            Float.gemm(
                transA: false, transB: true, m: a.count, n: b.count, k: w, alpha: 1, a: fa, lda: w, b: fb, ldb: w,
                beta: 0, c: &out, ldc: b.count)
        case .streamed(let s):
            let fa = s.gather(a)
            let fb = s.gather(b)
            let w = s.width
            Float.gemm(
                transA: false, transB: true, m: a.count, n: b.count, k: w, alpha: 1, a: fa, lda: w, b: fb, ldb: w,
                beta: 0, c: &out, ldc: b.count)
        }
        return out
    }

    /// out [m, n] = x [m, n] K for a few rows x (x may be longer; its first m n entries are
    /// used). Every entry is a fixed-order dot product in Double against Float rows of K
    /// (or of F and F^T), rows split over threads: any thread count gives the same bits.
    /// Through BLAS, K would be repacked on every call, which costs several times the
    /// product itself.
    public func times(_ x: [Double], rows m: Int, into out: inout [Double], threads: Int) {
        let n = self.n
        precondition(x.count >= m * n && out.count >= m * n)
        switch self {
        case .dense(let k, _):
            TrainingKernel.dots(x, rows: m, depth: n, matrix: k, matrixRows: n, into: &out, threads: threads)
        case .factored(let f, let t, _, let w):
            // u [m, width] = x F (dots with the rows of F^T), then x K = u F^T (dots with the rows of F).
            var u = [Double](repeating: 0, count: m * w)
            TrainingKernel.dots(x, rows: m, depth: n, matrix: t, matrixRows: w, into: &u, threads: threads)
            TrainingKernel.dots(u, rows: m, depth: w, matrix: f, matrixRows: n, into: &out, threads: threads)
        case .streamed(let s):
            // Reads of the validated, mapped feature tensor cannot fail (`FeatureFile.features`).
            s.times(x, rows: m, into: &out)
        }
    }

    /// out [m, matrixRows] = x [m, depth] matrix^T for a matrix [matrixRows, depth] (its
    /// first rows when longer), row c of the result at out[c * ldo + offset ...] (default:
    /// packed): fixed-order dots, the matrix's rows split over threads.
    package static func dots(
        _ x: [Double], rows m: Int, depth: Int, matrix: [Float], matrixRows: Int,
        into out: inout [Double], ldo: Int? = nil, offset: Int = 0, threads: Int
    ) {
        precondition(matrix.count >= matrixRows * depth)
        let parts = splitRange(matrixRows, parts: max(1, min(threads, matrixRows / 64))).filter { !$0.isEmpty }
        x.withUnsafeBufferPointer { xp in
            matrix.withUnsafeBufferPointer { kp in
                out.withUnsafeMutableBufferPointer { op in
                    parallelFor(parts.count) { t in
                        let r = parts[t]
                        FixedOrderGemm.dots(
                            m: m, rows: r.count, depth: depth, x: xp.baseAddress!, ldx: depth,
                            k: kp.baseAddress! + r.lowerBound * depth, ldk: depth,
                            out: op.baseAddress! + offset + r.lowerBound, ldo: ldo ?? matrixRows)
                    }
                }
            }
        }
    }
}
