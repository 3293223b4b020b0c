import Foundation
import TangentSurrogate
import TangentTensor

/// Influence-function baselines of the kernels spec, as a feature map:
///   if-head(x, x') = -grad L(x)^T (H + lambda I)^-1 grad L(x')  over the `head.` tensors,
///     H the exact Hessian of the mean training loss (logits are linear in the head, so
///     H = (1/n) sum_i Lambda_i (x) a_i a_i^T with a = [e; 1], Lambda = diag(p) - p p^T);
///   if-proj: the same with gradients projected by R and H replaced by the Gauss-Newton
///     matrix (1/n) sum_i J_i Lambda_i J_i^T, J_i the K x C projected logit gradients.
/// With L L^T = H + lambda I (Cholesky), f(x) = L^{-1} grad L(x) gives
/// <f(x), f(x')> = -influence, so the surrogate machinery (kernel = feature products)
/// applies unchanged. Loss gradients use a text's label, or the predicted one when nil.
///
/// Sign: `influence` is Koh & Liang's I_up,loss (negative when up-weighting x' lowers the
/// loss of x); `attribution` is its negation, positive when x' pushes toward the prediction.
///
/// TRAK (Park et al. 2023) is the same construction on the margin instead of the loss:
/// phi(x) = R grad m(x), m = log p_y - log(1 - p_y), G = Phi^T Phi over the training texts
/// (not averaged), and f(x) = L^{-1} phi(x) with L L^T = G + lambda I, so that
/// <f(x), f(x_i)> (1 - p_{y_i}(x_i)) is the TRAK score (`trainingWeights` gives the last factor).
public struct InfluenceTransform: Sendable {
    public enum Kind: String, Sendable {
        case head = "if-head"
        case projected = "if-proj"
        case trak
    }
    public let kind: Kind
    public let classes: Int
    /// Length of one text's base vector: D (embedding) for head, K (per class) for projected.
    public let width: Int
    /// Parameters of the (projected) space: C(D+1) for head, K for projected.
    public let dimension: Int
    public let lambda: Double
    let lower: [Double]
    /// The damping relative to the curvature's mean diagonal when none is given.
    public static let defaultDamping = 1e-3

    /// Builds and factors H + lambda I from the training texts: base features [n, W]
    /// (embeddings e(x) for head; trNTK features R g_c(x) as [n, C, K] for projected and
    /// TRAK), logits [n, C], and (TRAK) the labels, whose margins it differentiates.
    /// `lambda` nil: `relativeDamping` (default 1e-3) times the mean diagonal of H.
    public init(
        kind: Kind, base: [Float], logits: [Float], classes C: Int, lambda: Double?,
        relativeDamping: Double = InfluenceTransform.defaultDamping,
        labels: [Int]? = nil
    ) throws {
        let n = logits.count / C
        precondition(kind != .trak || labels?.count == n, "TRAK's curvature needs the training labels")
        let W = kind == .head ? base.count / n : base.count / (n * C)
        let P = kind == .head ? C * (W + 1) : W
        var h = InfluenceTransform.curvature(kind, base: base, logits: logits, classes: C, labels: labels)
        let meanDiagonal = (0..<P).map { h[$0 * P + $0] }.reduce(0, +) / Double(P)
        let damping = lambda ?? relativeDamping * meanDiagonal
        for k in 0..<P { h[k * P + k] += damping }
        if let minor = Cholesky.factor(&h, n: P) {
            throw AttributionError(
                damping == 0
                    ? "the \(kind.rawValue) curvature matrix (\(P) x \(P)) is singular at leading minor \(minor); add damping (lambda > 0)"
                    : "H + lambda I is not positive definite at leading minor \(minor); increase the damping lambda (now \(damping))"
            )
        }
        self.kind = kind
        classes = C
        width = W
        dimension = P
        self.lambda = damping
        lower = h
    }

    /// The curvature H [P, P] (before damping) of `kind` from the base features (see `init`):
    /// the head's exact Hessian of the mean loss, the projected Gauss-Newton matrix, or TRAK's
    /// Phi^T Phi.
    static func curvature(_ kind: Kind, base: [Float], logits: [Float], classes C: Int, labels: [Int]?) -> [Double] {
        let n = logits.count / C
        let W = kind == .head ? base.count / n : base.count / (n * C)
        let P = kind == .head ? C * (W + 1) : W
        var h = [Double](repeating: 0, count: P * P)
        var p = [[Double]](repeating: [], count: n)
        for i in 0..<n { p[i] = Softmax.probabilities((0..<C).map { Double(logits[i * C + $0]) }) }
        switch kind {
        case .head:
            // Block (c, d) of H: (1/n) A^T diag(Lambda_i[c, d]) A with rows a_i = [e_i; 1].
            let A = W + 1
            var a = [Double](repeating: 0, count: n * A)
            for i in 0..<n {
                for u in 0..<W { a[i * A + u] = Double(base[i * W + u]) }
                a[i * A + W] = 1
            }
            var scaled = a
            var block = [Double](repeating: 0, count: A * A)
            for c in 0..<C {
                for d in 0..<C {
                    for i in 0..<n {
                        let l = ((c == d ? p[i][c] : 0) - p[i][c] * p[i][d]) / Double(n)
                        for u in 0..<A { scaled[i * A + u] = l * a[i * A + u] }
                    }
                    Double.gemm(
                        transA: true, transB: false, m: A, n: A, k: n, alpha: 1, a: scaled, lda: A, b: a, ldb: A,
                        beta: 0, c: &block, ldc: A)
                    for u in 0..<A { for v in 0..<A { h[(c * A + u) * P + d * A + v] = block[u * A + v] } }
                }
            }
        case .projected:
            // G = (1/n) [sum_{i,c} p_ic j_ic j_ic^T - sum_i (J_i p_i)(J_i p_i)^T].
            var x = [Double](repeating: 0, count: n * C * W)
            var y = [Double](repeating: 0, count: n * W)
            for i in 0..<n {
                for c in 0..<C {
                    let s = p[i][c].squareRoot()
                    for k in 0..<W {
                        let j = Double(base[(i * C + c) * W + k])
                        x[(i * C + c) * W + k] = s * j
                        y[i * W + k] += p[i][c] * j
                    }
                }
            }
            Double.gemm(
                transA: true, transB: false, m: W, n: W, k: n * C, alpha: 1 / Double(n), a: x, lda: W, b: x, ldb: W,
                beta: 0, c: &h, ldc: W)
            Double.gemm(
                transA: true, transB: false, m: W, n: W, k: n, alpha: -1 / Double(n), a: y, lda: W, b: y, ldb: W,
                beta: 1, c: &h, ldc: W)
        case .trak:
            // G = Phi^T Phi, phi_i = sum_c (dm_i / dz_c) R g_c(x_i).
            var phi = [Double](repeating: 0, count: n * W)
            for i in 0..<n {
                let s = Softmax.marginCoefficients((0..<C).map { Double(logits[i * C + $0]) }, label: labels![i])
                for c in 0..<C where s[c] != 0 {
                    for k in 0..<W { phi[i * W + k] += s[c] * Double(base[(i * C + c) * W + k]) }
                }
            }
            Double.gemm(
                transA: true, transB: false, m: W, n: W, k: n, alpha: 1, a: phi, lda: W, b: phi, ldb: W,
                beta: 0, c: &h, ldc: W)
        }
        return h
    }

    /// grad L (TRAK: grad m) of one text in the transform's space from its base vector
    /// (e, or J as [C, K]), logits and label (nil: predicted).
    public func lossGradient(base: ArraySlice<Float>, logits z: [Double], label: Int?) -> [Double] {
        let y = label ?? Softmax.argmax(z)
        let r = kind == .trak ? Softmax.marginCoefficients(z, label: y) : Softmax.lossResidual(z, label: y)
        let b = Array(base)
        var g = [Double](repeating: 0, count: dimension)
        for c in 0..<classes {
            switch kind {
            case .head:
                for u in 0..<width { g[c * (width + 1) + u] = r[c] * Double(b[u]) }
                g[c * (width + 1) + width] = r[c]
            case .projected, .trak:
                for k in 0..<width { g[k] += r[c] * Double(b[c * width + k]) }
            }
        }
        return g
    }

    /// TRAK's per-training-text factor 1 - p_{y_i}(x_i), from logits [n, C], summed over the
    /// other classes so that it does not round to 0 for a confident model.
    public static func trainingWeights(logits: [Float], labels: [Int], classes C: Int) -> [Double] {
        labels.enumerated().map { i, y in
            let p = Softmax.probabilities((0..<C).map { Double(logits[i * C + $0]) })
            return p.indices.reduce(0) { $0 + ($1 == y ? 0 : p[$1]) }
        }
    }

    /// Features L^{-1} grad L(x) [m, dimension] of texts with base vectors [m, ...] and logits [m, C].
    public func features(base: [Float], logits: [Float], labels: [Int?]) -> [Float] {
        let m = labels.count
        let per = base.count / m
        var g = [Double](repeating: 0, count: m * dimension)
        for i in 0..<m {
            let gi = lossGradient(
                base: base[(i * per)..<((i + 1) * per)], logits: (0..<classes).map { Double(logits[i * classes + $0]) },
                label: labels[i])
            for k in 0..<dimension { g[i * dimension + k] = gi[k] }
        }
        Cholesky.solveRows(lower: lower, n: dimension, &g, m: m)
        return g.map(Float.init)
    }

    /// Koh & Liang's I_up,loss: -g_test^T (H + lambda I)^-1 g_train.
    public func influence(test: [Double], train: [Double]) -> Double {
        var a = test
        var b = train
        Cholesky.solveRows(lower: lower, n: dimension, &a, m: 1)
        Cholesky.solveRows(lower: lower, n: dimension, &b, m: 1)
        return -zip(a, b).map(*).reduce(0, +)
    }

    /// The toolkit's sign: positive when the training text pushes toward the prediction.
    public func attribution(test: [Double], train: [Double]) -> Double { -influence(test: test, train: train) }
}
