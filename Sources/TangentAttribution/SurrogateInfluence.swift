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
public struct SurrogateInfluence: Sendable {
    public let classes: Int
    public let trainCount: Int
    /// L^{-1} J_i^T r_i as rows [n, P].
    let trainSide: [Double]
    /// L [P, P] (lower, row-major).
    let factor: [Double]
    let glm: KernelGLM

    /// The parameters' count P = C n + C, and the bytes the Hessian and the training side take.
    public static func bytes(n: Int, classes C: Int) -> Double {
        let P = Double(C * n + C)
        return 8 * (P * P + 2 * Double(n) * P + Double(n * n))
    }

    /// Prepares the influence of every training text on `glm`, fitted on `kernel` (the
    /// training texts' kernel, symmetric) with `labels`. Throws when the Hessian would not
    /// fit in a quarter of `memory` bytes.
    public init(glm: KernelGLM, kernel: TrainingKernel, labels: [Int], memory: Double = Double(ProcessInfo.processInfo.physicalMemory)) throws {
        let n = glm.trainCount, C = glm.classes, P = C * n + C
        precondition(kernel.n == n && labels.count == n)
        let need = SurrogateInfluence.bytes(n: n, classes: C)
        guard need <= memory / 4 else {
            throw AttributionError("surrogate influence on \(n) training texts and \(C) classes needs a \(P) x \(P) Hessian (\(ByteSize.describe(need))), more than a quarter of this machine's memory (\(ByteSize.describe(memory))); use fewer training texts (--max-train)")
        }
        let k: [Double] = SurrogateInfluence.dense(kernel)
        // The surrogate's probabilities on its training texts.
        var z = [Double](repeating: 0, count: n * C)
        let wt = glm.weights  // [C, n]
        Double.gemm(transA: false, transB: true, m: n, n: C, k: n, alpha: 1, a: k, lda: n, b: wt, ldb: n, beta: 0, c: &z, ldc: C)
        var p = [Double](repeating: 0, count: n * C)
        for j in 0..<n {
            let prob = Softmax.probabilities((0..<C).map { z[j * C + $0] + glm.bias[$0] })
            for c in 0..<C { p[j * C + c] = prob[c] }
        }
        let lambda = glm.lambda * glm.kernelScale * glm.kernelScale
        let scale = 1 / Double(n)
        // H + u u^T, assembled block by block: W-W blocks (1/n) K diag(a_cc') K + lambda' I,
        // W-b columns (1/n) K a_cc', b-b entries (1/n) sum a_cc' + 1/C.
        var h = [Double](repeating: 0, count: P * P)
        var scaled = [Double](repeating: 0, count: n * n)
        var block = [Double](repeating: 0, count: n * n)
        for c in 0..<C {
            for c2 in c..<C {
                let a = (0..<n).map { j in p[j * C + c] * ((c == c2 ? 1 : 0) - p[j * C + c2]) }
                // scaled = diag(a) K, so K diag(a) K = K^T scaled (K symmetric).
                for j in 0..<n { for l in 0..<n { scaled[j * n + l] = a[j] * k[j * n + l] } }
                Double.gemm(transA: true, transB: false, m: n, n: n, k: n, alpha: scale, a: k, lda: n, b: scaled, ldb: n, beta: 0, c: &block, ldc: n)
                for r in 0..<n {
                    for col in 0..<n {
                        let v = block[r * n + col] + (c == c2 && r == col ? lambda : 0)
                        h[(c * n + r) * P + c2 * n + col] = v
                        h[(c2 * n + col) * P + c * n + r] = v
                    }
                }
                for r in 0..<n {
                    var s = 0.0
                    for j in 0..<n { s += a[j] * k[j * n + r] }
                    h[(c * n + r) * P + C * n + c2] = scale * s
                    h[(C * n + c2) * P + c * n + r] = scale * s
                    if c != c2 {
                        h[(c2 * n + r) * P + C * n + c] = scale * s
                        h[(C * n + c) * P + c2 * n + r] = scale * s
                    }
                }
                let bb = scale * a.reduce(0, +) + 1 / Double(C)
                h[(C * n + c) * P + C * n + c2] = bb
                h[(C * n + c2) * P + C * n + c] = bb
            }
        }
        // Saturated probabilities leave the bias block nearly singular: add a jitter
        // relative to the diagonal, growing, before giving up.
        let trace = (0..<P).reduce(0.0) { $0 + h[$1 * P + $1] } / Double(P)
        var jitter = 0.0, factor = h
        var attempt = 0
        while let failed = Cholesky.factor(&factor, n: P) {
            attempt += 1
            guard attempt <= 6 else {
                throw AttributionError("surrogate influence: the surrogate's Hessian is not positive definite (leading minor \(failed)) even with a jitter of \(jitter)")
            }
            jitter = trace * pow(10, Double(-12 + 2 * attempt))
            factor = h
            for i in 0..<P { factor[i * P + i] += jitter }
        }
        // Rows J_i^T r_i = (r_i (x) k_i, r_i), then L^{-1} applied to each.
        var side = [Double](repeating: 0, count: n * P)
        for i in 0..<n {
            for c in 0..<C {
                let r = p[i * C + c] - (labels[i] == c ? 1 : 0)
                for j in 0..<n { side[i * P + c * n + j] = r * k[i * n + j] }
                side[i * P + C * n + c] = r
            }
        }
        Cholesky.solveRows(lower: factor, n: P, &side, m: n)
        self.classes = C
        self.trainCount = n
        self.trainSide = side
        self.factor = factor
        self.glm = glm
    }

    /// The kernel as a dense Double matrix [n, n].
    static func dense(_ kernel: TrainingKernel) -> [Double] {
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
        let n = trainCount, P = classes * n + classes, m = compared.count
        let q = solvedQueries(rows: rows, classes: compared)
        var out = [Double](repeating: 0, count: m * n)
        Double.gemm(transA: false, transB: true, m: m, n: n, k: P, alpha: -1 / Double(n), a: q, lda: P, b: trainSide, ldb: P,
                    beta: 0, c: &out, ldc: n)
        return out
    }

    /// Self-influence tau(x_i, i) of every training text on its own margin of class
    /// `classes[i]` (its label, for an audit), from the training kernel's rows `rows` [n, n].
    public func selfScores(rows: [Float], classes compared: [Int]) -> [Double] {
        let n = trainCount, P = classes * n + classes
        precondition(compared.count == n)
        let q = solvedQueries(rows: rows, classes: compared)
        return (0..<n).map { i in
            var s = 0.0
            for a in 0..<P { s += q[i * P + a] * trainSide[i * P + a] }
            return -s / Double(n)
        }
    }

    /// L^{-1} J_x^T d_x as rows [m, P] for query kernel rows [m, n] and compared classes.
    func solvedQueries(rows: [Float], classes compared: [Int]) -> [Double] {
        let n = trainCount, C = classes, P = C * n + C, m = compared.count
        precondition(rows.count == m * n)
        let z = glm.logits(kernelRows: rows)
        var q = [Double](repeating: 0, count: m * P)
        for t in 0..<m {
            let c = compared[t]
            // d = e_c - softmax over the classes other than c.
            var others = (0..<C).map { $0 == c ? -Double.infinity : z[t * C + $0] }
            let top = others.max() ?? 0
            var sum = 0.0
            for c2 in 0..<C where c2 != c { others[c2] = Foundation.exp(others[c2] - top); sum += others[c2] }
            for c2 in 0..<C {
                let d = c2 == c ? 1 : -others[c2] / sum
                for j in 0..<n { q[t * P + c2 * n + j] = d * Double(rows[t * n + j]) }
                q[t * P + C * n + c2] = d
            }
        }
        Cholesky.solveRows(lower: factor, n: P, &q, m: m)
        return q
    }
}
