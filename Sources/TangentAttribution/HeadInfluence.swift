import Foundation

/// Influence functions over the last layer (`if-head` in the kernels spec):
///     if-head(x_test, x_i) = -grad L(x_test)^T (H + lambda I)^-1 grad L(x_i),
/// theta = the `head.` tensors (W [C, D], b [C]), H the exact Hessian of the mean
/// training loss. Logits are linear in theta, so H = (1/n) sum_i Lambda_i (x) a_i a_i^T
/// with a = [e(x); 1] and Lambda = diag(p) - p p^T: a C(D+1) square matrix, factored once
/// (Cholesky) and solved directly.
///
/// Sign: `if-head` is Koh & Liang's I_up,loss, negative when up-weighting x_i lowers the
/// test loss. `attribution` returns its negation, so that, as everywhere in the toolkit,
/// positive means the training text pushes the prediction toward the class.
public struct HeadInfluence: Sendable {
    public let classes: Int
    public let width: Int
    public let lambda: Double
    /// Lower Cholesky factor of H + lambda I, [P, P] with P = C (D + 1).
    let factor: [Double]

    /// Builds and factors H + lambda I from the training texts' embeddings [n, D] and
    /// logits [n, C]. Fails, asking for damping, when the matrix is singular.
    public init(embeddings: [Double], logits: [Double], classes C: Int, lambda: Double) throws {
        let n = logits.count / C
        let D = embeddings.count / n
        let A = D + 1, P = C * A
        var h = [Double](repeating: 0, count: P * P)
        for i in 0..<n {
            let p = HeadInfluence.softmax(Array(logits[(i * C)..<((i + 1) * C)]))
            let a = Array(embeddings[(i * D)..<((i + 1) * D)]) + [1]
            for c in 0..<C {
                for d in 0..<C {
                    let l = ((c == d ? p[c] : 0) - p[c] * p[d]) / Double(n)
                    if l == 0 { continue }
                    for u in 0..<A { for v in 0..<A { h[(c * A + u) * P + d * A + v] += l * a[u] * a[v] } }
                }
            }
        }
        for k in 0..<P { h[k * P + k] += lambda }
        // Cholesky: H = L L^T.
        var L = [Double](repeating: 0, count: P * P)
        let scale = (0..<P).map { abs(h[$0 * P + $0]) }.max() ?? 1
        for j in 0..<P {
            var s = h[j * P + j]
            for k in 0..<j { s -= L[j * P + k] * L[j * P + k] }
            guard s > 1e-12 * max(scale, 1e-300) else {
                throw AttributionError(lambda == 0
                    ? "the last layer's Hessian is singular (C(D+1) = \(P) parameters, rank at most the softmax's); add damping (lambda > 0)"
                    : "H + lambda I is not positive definite at pivot \(j); increase the damping lambda (now \(lambda))")
            }
            L[j * P + j] = s.squareRoot()
            for i in (j + 1)..<P {
                var t = h[i * P + j]
                for k in 0..<j { t -= L[i * P + k] * L[j * P + k] }
                L[i * P + j] = t / L[j * P + j]
            }
        }
        classes = C
        width = D
        self.lambda = lambda
        factor = L
    }

    static func softmax(_ z: [Double]) -> [Double] {
        let m = z.max()!
        let e = z.map { Foundation.exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// grad of the cross-entropy at `label` w.r.t. (W, b): (p - onehot) (x) [e; 1].
    public func lossGradient(embedding e: [Double], logits z: [Double], label: Int) -> [Double] {
        let p = HeadInfluence.softmax(z)
        let a = e + [1]
        var g = [Double](repeating: 0, count: classes * (width + 1))
        for c in 0..<classes {
            let r = p[c] - (c == label ? 1 : 0)
            for u in 0...width { g[c * (width + 1) + u] = r * a[u] }
        }
        return g
    }

    /// (H + lambda I)^-1 g by two triangular solves.
    public func solve(_ g: [Double]) -> [Double] {
        let P = g.count
        var y = g
        for i in 0..<P {
            var s = y[i]
            for k in 0..<i { s -= factor[i * P + k] * y[k] }
            y[i] = s / factor[i * P + i]
        }
        for i in stride(from: P - 1, through: 0, by: -1) {
            var s = y[i]
            for k in (i + 1)..<P { s -= factor[k * P + i] * y[k] }
            y[i] = s / factor[i * P + i]
        }
        return y
    }

    /// if-head(x_test, x_i) = -g_test^T (H + lambda I)^-1 g_i (Koh & Liang's sign).
    public func influence(test: [Double], train: [Double]) -> Double {
        let v = solve(test)
        return -zip(v, train).map(*).reduce(0, +)
    }

    /// The toolkit's sign: positive when the training text pushes toward the prediction.
    public func attribution(test: [Double], train: [Double]) -> Double { -influence(test: test, train: train) }
}

/// An attribution computation that cannot proceed; the message says what to change.
public struct AttributionError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
