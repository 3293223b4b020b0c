import TangentTensor

/// The leading eigenpairs of a training kernel, K ~ U diag(values) U^T, by the randomized
/// Nystroem approximation (Tropp, Yurtsever, Udell and Cevher 2017, algorithm 3): one
/// product K Omega with a seeded Gaussian n x rank matrix, then only rank x rank work.
///
/// It preconditions the kernel surrogate's fit. The surrogate's Hessian in W is about
/// I_C (x) (d/n K^2 + lambda I) with d ~ 1/4 the curvature of the cross-entropy, so its
/// condition number grows like the square of K's largest eigenvalue over n lambda, and
/// plain L-BFGS needs hundreds to thousands of iterations (two passes over K each) at
/// small lambda. With M = d/n U diag(values^2) U^T + mu (I - U U^T) + lambda I as the
/// initial inverse Hessian only the spectrum beyond `rank` is left to iterate on.
public struct KernelSpectrum: Sendable {
    /// Order of the kernel.
    public let n: Int
    /// Eigenpairs kept: at most the sketch's size, fewer where K has fewer nonzero ones.
    public let rank: Int
    /// U [n, rank], row-major, orthonormal columns (empty when `streamed`).
    public let basis: [Double]
    /// A kernel streamed from a file keeps U = F V' implicit, V' = V S^-1/2 [D, rank]:
    /// products with U then read F once each instead of holding n x rank numbers.
    let streamed: (features: StreamedFeatures, v: [Double])?
    /// Eigenvalue estimates, descending, each >= 0.
    public let values: [Double]
    /// Whether K's numerical rank is below the sketch's size, so that U spans K's range.
    public let capturedRange: Bool

    /// Uses rank min(requested, n / 2); nil for tiny kernels (n < 16) or if the
    /// factorization fails (then the fit runs without a preconditioner).
    public init?(
        kernel: [Float], n: Int, rank requested: Int = 256, seed: UInt64 = 0x4E59_5354, threads: Int = Threads.cores
    ) {
        let l = min(requested, n / 2)
        guard l >= 8 else { return nil }
        let rng = CounterRNG.derive(seed, UInt64(n))
        var omega = [Float](repeating: 0, count: n * l)
        for i in 0..<(n * l) { omega[i] = Float(rng.normal(UInt64(i))) }
        // Y = K Omega, rows split over threads.
        var y = [Float](repeating: 0, count: n * l)
        let parts = splitRange(n, parts: threads).filter { !$0.isEmpty }
        kernel.withUnsafeBufferPointer { kp in
            omega.withUnsafeBufferPointer { op in
                y.withUnsafeMutableBufferPointer { yp in
                    parallelFor(parts.count) { t in
                        let r = parts[t]
                        Float.gemm(
                            transA: false, transB: false, m: r.count, n: l, k: n, alpha: 1,
                            a: kp.baseAddress! + r.lowerBound * n, lda: n,
                            b: op.baseAddress!, ldb: l, beta: 0, c: yp.baseAddress! + r.lowerBound * l, ldc: l)
                    }
                }
            }
        }
        // Shift by nu (at the scale of Float rounding of Y) so that Omega^T Y_nu is safely
        // positive definite; the shift is taken off the eigenvalues at the end.
        var frob = 0.0
        for v in y { frob += Double(v) * Double(v) }
        let nu = Double(Float.ulpOfOne) * Double(n).squareRoot() * frob.squareRoot()
        var ynu = [Double](repeating: 0, count: n * l)
        var om = omega.map(Double.init)
        for i in 0..<(n * l) { ynu[i] = Double(y[i]) + nu * om[i] }
        // B = Omega^T Y_nu = L L^T; E = Y_nu L^-T; E = U Sigma V^T; values = Sigma^2 - nu.
        var b = [Double](repeating: 0, count: l * l)
        Double.gemm(
            transA: true, transB: false, m: l, n: l, k: n, alpha: 1, a: om, lda: l, b: ynu, ldb: l, beta: 0, c: &b,
            ldc: l)
        for i in 0..<l {
            for j in 0..<i {
                let s = (b[i * l + j] + b[j * l + i]) / 2
                b[i * l + j] = s
                b[j * l + i] = s
            }
        }
        guard Cholesky.factor(&b, n: l) == nil else { return nil }
        Cholesky.solveRows(lower: b, n: l, &ynu, m: n)
        var gram = [Double](repeating: 0, count: l * l)
        Double.gemm(
            transA: true, transB: false, m: l, n: l, k: n, alpha: 1, a: ynu, lda: l, b: ynu, ldb: l, beta: 0, c: &gram,
            ldc: l)
        guard let eig = SymmetricEigen.decompose(gram, n: l) else { return nil }
        // U = E V Sigma^-1, eigenpairs in descending order; directions with no weight dropped.
        let order = Array((0..<l).reversed()).filter { eig.values[$0] > nu }
        if order.isEmpty { return nil }
        let k = order.count
        let u = KernelSpectrum.orthonormalBasis(ynu, rows: n, width: l, eigen: eig, order: order)
        self.n = n
        rank = k
        capturedRange = k < l
        basis = u
        values = order.map { max(0, eig.values[$0] - nu) }
        streamed = nil
    }

    /// The spectrum of a training kernel: by the randomized Nystroem approximation for a
    /// matrix; exactly for a factored K = F F^T, from the width x width Gram F^T F = V S V^T
    /// (K's nonzero eigenvalues are S, its eigenvectors F V S^-1/2).
    public init?(
        kernel: TrainingKernel, rank requested: Int = 256, seed: UInt64 = 0x4E59_5354, threads: Int = Threads.cores
    ) {
        switch kernel {
        case .dense(let k, let n):
            self.init(kernel: k, n: n, rank: requested, seed: seed, threads: threads)
        case .factored(let f, _, let n, let w):
            self.init(factored: f, n: n, width: w, columnGram: nil, rank: requested)
        case .streamed(let s):
            // The same from F^T F accumulated block by block; U = F V' stays implicit.
            guard s.n >= 16,
                let e = KernelSpectrum.factored(columnGram: s.gramOfColumns(), width: s.width, rank: requested)
            else {
                return nil
            }
            self.init(
                n: s.n, rank: e.values.count, basis: [], values: e.values, capturedRange: e.capturedRange,
                streamed: (s, e.v))
        }
    }

    /// K = F F^T's leading eigenpairs from F^T F = V S V^T [width, width] (symmetric): the
    /// eigenvalues S kept (descending, at most `rank`, none below Float's resolution of K,
    /// which are its null space), V' = V S^-1/2 [width, kept] so that U = F V', and whether
    /// they are all of K's nonzero ones.
    /// The spectrum of K = F F^T for F [n, width], from the column Gram F^T F when the
    /// caller has it (the selector derives each fold's from the whole set's), else computed.
    public init?(factored f: [Float], n: Int, width w: Int, columnGram: [Double]?, rank requested: Int = 256) {
        guard n >= 16 else { return nil }
        let fd = f.map(Double.init)
        let g = columnGram ?? KernelSpectrum.columnGram(fd, rows: n, width: w)
        precondition(g.count == w * w, "the column Gram is width x width")
        guard let e = KernelSpectrum.factored(columnGram: g, width: w, rank: requested) else { return nil }
        var u = [Double](repeating: 0, count: n * e.values.count)
        Double.gemm(
            transA: false, transB: false, m: n, n: e.values.count, k: w, alpha: 1, a: fd, lda: w, b: e.v,
            ldb: e.values.count,
            beta: 0, c: &u, ldc: e.values.count)
        self.init(n: n, rank: e.values.count, basis: u, values: e.values, capturedRange: e.capturedRange)
    }

    /// X^T X [width, width] of X [rows, width], symmetrized.
    public static func columnGram(_ x: [Double], rows n: Int, width w: Int) -> [Double] {
        var g = [Double](repeating: 0, count: w * w)
        Double.gemm(
            transA: true, transB: false, m: w, n: w, k: n, alpha: 1, a: x, lda: w, b: x, ldb: w, beta: 0, c: &g, ldc: w)
        for i in 0..<w {
            for j in 0..<i {
                let s = (g[i * w + j] + g[j * w + i]) / 2
                g[i * w + j] = s
                g[j * w + i] = s
            }
        }
        return g
    }

    /// The leading `requested` eigenpairs of a width x width column Gram. One more than
    /// kept is computed, so that whether the kept ones span K's range is known exactly.
    private static func factored(columnGram g: [Double], width w: Int, rank requested: Int)
        -> (values: [Double], v: [Double], capturedRange: Bool)?
    {
        guard let eig = SymmetricEigen.largest(g, n: w, count: min(w, requested + 1)), let top = eig.values.last,
            top > 0
        else { return nil }
        let m = eig.values.count
        let nonzero = Array((0..<m).reversed()).filter { eig.values[$0] > top * Double(Float.ulpOfOne) }
        let order = Array(nonzero.prefix(requested))
        return (order.map { eig.values[$0] }, scaledVectors(eig, order: order, width: w), order.count == nonzero.count)
    }

    /// V_order S_order^-1/2 [width, order.count] for eigenpairs (V [width, m], S) of a
    /// width x width matrix.
    private static func scaledVectors(_ eig: (values: [Double], vectors: [Double]), order: [Int], width w: Int)
        -> [Double]
    {
        let k = order.count
        let m = eig.values.count
        var v = [Double](repeating: 0, count: w * k)
        for (c, j) in order.enumerated() {
            let inv = 1 / eig.values[j].squareRoot()
            for i in 0..<w { v[i * k + c] = eig.vectors[i * m + j] * inv }
        }
        return v
    }

    /// X V_order S_order^-1/2 for X [rows, width] and the eigenpairs (V, S) of X^T X: the
    /// orthonormal left singular vectors of X for the eigenvalues in `order`.
    private static func orthonormalBasis(
        _ x: [Double], rows n: Int, width w: Int,
        eigen eig: (values: [Double], vectors: [Double]), order: [Int]
    ) -> [Double] {
        let k = order.count
        let v = scaledVectors(eig, order: order, width: w)
        var u = [Double](repeating: 0, count: n * k)
        Double.gemm(
            transA: false, transB: false, m: n, n: k, k: w, alpha: 1, a: x, lda: w, b: v, ldb: k, beta: 0, c: &u, ldc: k
        )
        return u
    }

    private init(
        n: Int, rank: Int, basis: [Double], values: [Double], capturedRange: Bool,
        streamed: (features: StreamedFeatures, v: [Double])? = nil
    ) {
        self.n = n
        self.rank = rank
        self.basis = basis
        self.values = values
        self.capturedRange = capturedRange
        self.streamed = streamed
    }

    /// M^-1 applied in place to [W (C x n), b (C)] for the surrogate at `lambda`, with the
    /// cross-entropy's curvature (d above) for W and the bias alike read from `curvature`
    /// at every application: as a fit converges on near-separable data the curvature falls
    /// by orders of magnitude, and a preconditioner built for the start would then weigh
    /// the leading directions far too heavily against lambda.
    func preconditioner(classes C: Int, lambda: Double, curvature: @escaping () -> Double) -> (inout [Double]) -> Void {
        let n = self.n
        let k = rank
        let u = basis
        let values = self.values
        // Beyond the rank, the curvature of the largest eigenvalue left out is not known;
        // the smallest one kept bounds it. If the sketch found fewer nonzero eigenvalues
        // than it had columns, it caught K's whole range: the rest is K's null space,
        // where only lambda acts.
        let tail = capturedRange ? 0 : (values.last ?? 0)
        return { x in
            precondition(x.count == C * n + C)
            let d = curvature()
            let muTail = d / Double(n) * tail * tail + lambda
            let shrink = values.map { 1 / (d / Double(n) * $0 * $0 + lambda) - 1 / muTail }
            var t = [Double](repeating: 0, count: C * k)
            // T [C, k] = X_W U; X_W <- X_W / muTail + (T * shrink) U^T.
            if let (f, v) = streamed {
                // U = F V': T = (X_W F) V', and (T * shrink) U^T = ((T * shrink) V'^T) F^T.
                let w = f.width
                let xf = f.leftProduct(x, rows: C)
                Double.gemm(
                    transA: false, transB: false, m: C, n: k, k: w, alpha: 1, a: xf, lda: w, b: v, ldb: k, beta: 0,
                    c: &t, ldc: k)
                for c in 0..<C { for j in 0..<k { t[c * k + j] *= shrink[j] } }
                var p = [Double](repeating: 0, count: C * w)
                Double.gemm(
                    transA: false, transB: true, m: C, n: w, k: k, alpha: 1, a: t, lda: k, b: v, ldb: k, beta: 0, c: &p,
                    ldc: w)
                var back = [Double](repeating: 0, count: C * n)
                f.timesTransposed(p, rows: C, into: &back)
                for i in 0..<(C * n) { x[i] = x[i] / muTail + back[i] }
            } else {
                Double.gemm(
                    transA: false, transB: false, m: C, n: k, k: n, alpha: 1, a: x, lda: n, b: u, ldb: k, beta: 0,
                    c: &t, ldc: k)
                for c in 0..<C { for j in 0..<k { t[c * k + j] *= shrink[j] } }
                for i in 0..<(C * n) { x[i] /= muTail }
                x.withUnsafeMutableBufferPointer { xp in
                    Double.gemm(
                        transA: false, transB: true, m: C, n: n, k: k, alpha: 1, a: t, lda: k, b: u, ldb: k, beta: 1,
                        c: xp.baseAddress!, ldc: n)
                }
            }
            for c in 0..<C { x[C * n + c] /= d }
        }
    }
}
