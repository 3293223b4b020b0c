import Foundation
import TangentIO
import TangentTensor

/// The kGLM surrogate's own influence: the first-order change of its margin at a text x
/// when training text i's loss term is dropped from its fit (the kernel columns, the
/// surrogate's features, stay). Where the representer attribution W[c, i] K(x, x_i) says
/// how much x_i contributes to the fitted surrogate, this says how the fit would change
/// without it, which is what retraining on a subset (LDS) asks.
///
/// Derivation (README, "Surrogate influence"). The surrogate's parameters are
/// theta = (W [C, n], b [C]); text j's logits are z_j = W k_j + b with k_j = K(X, x_j), and
/// the fit minimizes L(theta) = (1/n) sum_j CE(z_j, y_j) + (lambda' / 2) ||W||^2, with
/// lambda' = lambda s^2 (`KernelGLM`). Weighting text i's term by 1 - eps and
/// differentiating the optimality condition grad L = 0 gives
///     d theta / d eps = H^{-1} (1/n) J_i^T r_i,
/// H = (1/n) sum_j J_j^T A_j J_j + lambda' [I 0; 0 0] the Hessian, J_j = [I_C (x) k_j^T, I_C]
/// the Jacobian of z_j, r_j = p_j - e_{y_j} and A_j = diag(p_j) - p_j p_j^T. The margin
/// m(x) = z_c - log sum_{c' != c} exp z_{c'} (log-odds of class c) has gradient J_x^T d_x,
/// d_x = e_c - softmax over the other classes. So the attribution, the margin with text i
/// minus the margin without it, is to first order
///     tau(x, i) = -(1/n) d_x^T J_x H^{-1} J_i^T r_i,
/// exact as eps -> 0 in this convex problem. H is singular along a shift of all biases
/// (u = (0, 1/sqrt(C))), which moves no margin; every J^T d and J^T r is orthogonal to it,
/// so H + u u^T (invertible) acts as H's pseudo-inverse on them. With the Cholesky factor
/// L of H + u u^T: tau(x, i) = -(1/n) (L^{-1} J_x^T d_x) . (L^{-1} J_i^T r_i), one product of an
/// [m, P] and an [n, P] matrix, P = C n + C: the shape of TRAK's score, with the kernel's
/// rows in place of TRAK's features.
///
/// Factored kernels (K = F F^T, F [n, D] with n >= 4 D: `TrainingKernel.factored`) take the
/// same influence in D dimensions. The loss sees W only through W F, and the W directions
/// with W F = 0 carry only the penalty and no J^T d or J^T r, so they drop out. With
/// F^T F = L L^T (Cholesky) and W = B (F L^{-T})^T, ||W|| = ||B|| (F L^{-T} has orthonormal
/// columns) and W k(x) = B phi(x) with phi(x) = L^{-1} F^T k(x) (= L^T f(x) for
/// k(x) = F f(x)): the same surrogate as a linear model on phi with the same penalty, so
/// the derivation holds with phi in place of the kernel columns and P = C D + C.
public struct SurrogateInfluence: Sendable {
    public let classes: Int
    public let trainCount: Int
    /// Width of the feature space: n (kernel columns) or D (factored kernels).
    public let width: Int
    /// L^{-1} J_i^T r_i as rows [n, P].
    let trainSide: [Double]
    /// L [P, P] (lower, row-major).
    let factor: [Double]
    let glm: KernelGLM
    /// Factored kernels: F [n, D] and the Cholesky factor of F^T F [D, D], mapping kernel
    /// rows to features (nil: the kernel rows are the features).
    let projection: (f: [Double], l: [Double])?

    /// The bytes the Hessian, the training side and the features take for n texts, C
    /// classes and feature width `width` (n for kernel columns).
    public static func bytes(n: Int, classes C: Int, width: Int? = nil) -> Double {
        let w = Double(width ?? n)
        let P = Double(C) * w + Double(C)
        return 8 * (P * P + 2 * Double(n) * P + Double(n) * w)
    }

    /// Prepares the influence of every training text on `glm`, fitted on `kernel` (the
    /// training texts' kernel, symmetric) with `labels`: in the kernel's columns, or in D
    /// dimensions for a factored kernel. Throws when the Hessian would not fit in a
    /// quarter of `memory` bytes.
    public init(
        glm: KernelGLM, kernel: TrainingKernel, labels: [Int],
        memory: Double = Double(ProcessInfo.processInfo.physicalMemory)
    ) throws {
        let n = glm.trainCount
        let C = glm.classes
        precondition(kernel.n == n && labels.count == n)
        var width = n
        if case .factored(_, _, _, let w) = kernel, w < n { width = w }
        let P = C * width + C
        let need = SurrogateInfluence.bytes(n: n, classes: C, width: width)
        guard need <= memory / 4 else {
            throw AttributionError(
                "surrogate influence on \(n) training texts and \(C) classes needs a \(P) x \(P) Hessian (\(ByteSize.describe(need))), more than a quarter of this machine's memory (\(ByteSize.describe(memory))); use fewer training texts (--max-train)"
            )
        }
        let (phi, projection) = try SurrogateInfluence.trainingFeatures(kernel)
        let p = SurrogateInfluence.probabilities(glm, kernel: kernel)
        let D = width
        let h = SurrogateInfluence.hessian(
            phi: phi, probabilities: p, n: n, width: D, classes: C,
            lambda: glm.lambda * glm.kernelScale * glm.kernelScale)
        let factor = try SurrogateInfluence.cholesky(h, n: P, what: "the surrogate's Hessian")
        // Rows J_i^T r_i = (r_i (x) phi_i, r_i), then L^{-1} applied to each.
        var side = [Double](repeating: 0, count: n * P)
        for i in 0..<n {
            for c in 0..<C {
                let r = p[i * C + c] - (labels[i] == c ? 1 : 0)
                for j in 0..<D { side[i * P + c * D + j] = r * phi[i * D + j] }
                side[i * P + C * D + c] = r
            }
        }
        Cholesky.solveRows(lower: factor, n: P, &side, m: n)
        self.classes = C
        self.trainCount = n
        self.width = D
        self.trainSide = side
        self.factor = factor
        self.glm = glm
        self.projection = projection
    }

    /// The training texts' features phi_j [n, width]: the kernel's columns, or for a
    /// factored kernel phi_j = L^T f_j (Phi = F L, F^T F = L L^T) with F and L to map queries.
    static func trainingFeatures(_ kernel: TrainingKernel) throws -> (
        phi: [Double], projection: (f: [Double], l: [Double])?
    ) {
        let n = kernel.n
        guard case .factored(let rows, _, _, let w) = kernel, w < n else { return (dense(kernel), nil) }
        let f = rows.map(Double.init)
        var s = [Double](repeating: 0, count: w * w)
        Double.gemm(
            transA: true, transB: false, m: w, n: w, k: n, alpha: 1, a: f, lda: w, b: f, ldb: w, beta: 0, c: &s, ldc: w)
        let l = try cholesky(s, n: w, what: "the features' Gram matrix F^T F")
        var phi = [Double](repeating: 0, count: n * w)
        Double.gemm(
            transA: false, transB: false, m: n, n: w, k: w, alpha: 1, a: f, lda: w, b: l, ldb: w, beta: 0, c: &phi,
            ldc: w)
        return (phi, (f, l))
    }

    /// The surrogate's probabilities on its training texts [n, C], from Z^T [C, n] = W K.
    static func probabilities(_ glm: KernelGLM, kernel: TrainingKernel) -> [Double] {
        let n = glm.trainCount
        let C = glm.classes
        var z = [Double](repeating: 0, count: C * n)
        kernel.times(glm.weights, rows: C, into: &z, threads: 1)
        var p = [Double](repeating: 0, count: n * C)
        for j in 0..<n {
            let prob = Softmax.probabilities((0..<C).map { z[$0 * n + j] + glm.bias[$0] })
            for c in 0..<C { p[j * C + c] = prob[c] }
        }
        return p
    }

    /// H + u u^T [P, P], P = C D + C, assembled block by block from the features Phi [n, D]
    /// and probabilities [n, C]: W-W blocks (1/n) Phi^T diag(a_cc') Phi + lambda' I, W-b
    /// columns (1/n) Phi^T a_cc', b-b entries (1/n) sum a_cc' + 1/C, with
    /// a_cc'(j) = p_jc (delta_cc' - p_jc').
    static func hessian(phi: [Double], probabilities p: [Double], n: Int, width D: Int, classes C: Int, lambda: Double)
        -> [Double]
    {
        let P = C * D + C
        let scale = 1 / Double(n)
        var h = [Double](repeating: 0, count: P * P)
        var scaled = [Double](repeating: 0, count: n * D)
        var block = [Double](repeating: 0, count: D * D)
        for c in 0..<C {
            for c2 in c..<C {
                let a = (0..<n).map { j in p[j * C + c] * ((c == c2 ? 1 : 0) - p[j * C + c2]) }
                for j in 0..<n { for l in 0..<D { scaled[j * D + l] = a[j] * phi[j * D + l] } }
                Double.gemm(
                    transA: true, transB: false, m: D, n: D, k: n, alpha: scale, a: phi, lda: D, b: scaled, ldb: D,
                    beta: 0, c: &block, ldc: D)
                for r in 0..<D {
                    for col in 0..<D {
                        let v = block[r * D + col] + (c == c2 && r == col ? lambda : 0)
                        h[(c * D + r) * P + c2 * D + col] = v
                        h[(c2 * D + col) * P + c * D + r] = v
                    }
                }
                for r in 0..<D {
                    var s = 0.0
                    for j in 0..<n { s += a[j] * phi[j * D + r] }
                    h[(c * D + r) * P + C * D + c2] = scale * s
                    h[(C * D + c2) * P + c * D + r] = scale * s
                    if c != c2 {
                        h[(c2 * D + r) * P + C * D + c] = scale * s
                        h[(C * D + c) * P + c2 * D + r] = scale * s
                    }
                }
                let bb = scale * a.reduce(0, +) + 1 / Double(C)
                h[(C * D + c) * P + C * D + c2] = bb
                h[(C * D + c2) * P + C * D + c] = bb
            }
        }
        return h
    }

    /// The Cholesky factor of a symmetric positive semi-definite matrix [n, n]: a nearly
    /// singular one (saturated probabilities leave the bias block so) gets a jitter
    /// relative to its diagonal, growing, before giving up.
    static func cholesky(_ a: [Double], n: Int, what: String) throws -> [Double] {
        let trace = (0..<n).reduce(0.0) { $0 + a[$1 * n + $1] } / Double(max(n, 1))
        var jitter = 0.0
        var factor = a
        var attempt = 0
        while let failed = Cholesky.factor(&factor, n: n) {
            attempt += 1
            guard attempt <= 6 else {
                throw AttributionError(
                    "surrogate influence: \(what) is not positive definite (leading minor \(failed)) even with a jitter of \(jitter)"
                )
            }
            jitter = trace * pow(10, Double(-12 + 2 * attempt))
            factor = a
            for i in 0..<n { factor[i * n + i] += jitter }
        }
        return factor
    }

    /// The kernel as a dense Double matrix [n, n].
    package static func dense(_ kernel: TrainingKernel) -> [Double] {
        let n = kernel.n
        switch kernel {
        case .dense(let k, _): return k.map(Double.init)
        default: return kernel.block(rows: Array(0..<n), columns: Array(0..<n)).map(Double.init)
        }
    }

    /// tau(x, i) [m, n] for query texts with kernel rows `rows` [m, n] (K(x, X_train), as
    /// the surrogate sees them) and compared classes `classes[t]`: the surrogate's margin
    /// with training text i's term in the fit minus without it, to first order.
    public func scores(rows: [Float], classes compared: [Int]) -> [Double] {
        let n = trainCount
        let P = classes * width + classes
        let m = compared.count
        let q = solvedQueries(rows: rows, classes: compared)
        var out = [Double](repeating: 0, count: m * n)
        Double.gemm(
            transA: false, transB: true, m: m, n: n, k: P, alpha: -1 / Double(n), a: q, lda: P, b: trainSide, ldb: P,
            beta: 0, c: &out, ldc: n)
        return out
    }

    /// Self-influence tau(x_i, i) of every training text on its own margin of class
    /// `classes[i]` (its label, for an audit), from the training kernel's rows `rows` [n, n].
    public func selfScores(rows: [Float], classes compared: [Int]) -> [Double] {
        let n = trainCount
        let P = classes * width + classes
        precondition(compared.count == n)
        let q = solvedQueries(rows: rows, classes: compared)
        return (0..<n).map { i in
            var s = 0.0
            for a in 0..<P { s += q[i * P + a] * trainSide[i * P + a] }
            return -s / Double(n)
        }
    }

    /// Features [m, width] of query texts with kernel rows [m, n]: the rows themselves, or
    /// L^{-1} F^T k(x) for a factored kernel.
    func features(rows: [Float], m: Int) -> [Double] {
        let n = trainCount
        guard let projection else { return rows.map(Double.init) }
        let D = width
        var out = [Double](repeating: 0, count: m * D)
        Double.gemm(
            transA: false, transB: false, m: m, n: D, k: n, alpha: 1, a: rows.map(Double.init), lda: n, b: projection.f,
            ldb: D,
            beta: 0, c: &out, ldc: D)
        // Rows u -> L^{-1} u.
        Cholesky.solveRows(lower: projection.l, n: D, &out, m: m)
        return out
    }

    /// L^{-1} J_x^T d_x as rows [m, P] for query kernel rows [m, n] and compared classes.
    func solvedQueries(rows: [Float], classes compared: [Int]) -> [Double] {
        let n = trainCount
        let C = classes
        let D = width
        let P = C * D + C
        let m = compared.count
        precondition(rows.count == m * n)
        let z = glm.logits(kernelRows: rows)
        let phi = features(rows: rows, m: m)
        var q = [Double](repeating: 0, count: m * P)
        for t in 0..<m {
            let c = compared[t]
            // d = e_c - softmax over the classes other than c.
            var others = (0..<C).map { $0 == c ? -Double.infinity : z[t * C + $0] }
            let top = others.max() ?? 0
            var sum = 0.0
            for c2 in 0..<C where c2 != c {
                others[c2] = Foundation.exp(others[c2] - top)
                sum += others[c2]
            }
            for c2 in 0..<C {
                let d = c2 == c ? 1 : -others[c2] / sum
                for j in 0..<D { q[t * P + c2 * D + j] = d * phi[t * D + j] }
                q[t * P + C * D + c2] = d
            }
        }
        Cholesky.solveRows(lower: factor, n: P, &q, m: m)
        return q
    }
}
