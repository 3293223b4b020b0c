import TangentTensor

/// The kernel surrogate (kGLM) of the kernels spec: multinomial logistic regression on
/// the rows of a train x train kernel matrix, p(x) = softmax(W k(x) + b), with
/// k(x) = K(x, X_train), W [C, n], fitted by L-BFGS to
///     (1/n) sum_i CE(p(x_i), y_i) + (lambda / 2) ||W||^2.
/// Products with the kernel run in BLAS (Float kernel, Double parameters).
public struct KernelGLM: Sendable {
    public let classes: Int
    public let trainCount: Int
    /// [C, n] row-major.
    public let weights: [Double]
    public let bias: [Double]
    public let lambda: Double
    public let iterations: Int
    public let converged: Bool
    /// Largest entry of the objective's gradient at the solution.
    public let gradientNorm: Double

    /// A fitted surrogate (e.g. loaded from a file).
    public init(classes: Int, trainCount: Int, weights: [Double], bias: [Double], lambda: Double,
                iterations: Int, converged: Bool, gradientNorm: Double) {
        self.classes = classes
        self.trainCount = trainCount
        self.weights = weights
        self.bias = bias
        self.lambda = lambda
        self.iterations = iterations
        self.converged = converged
        self.gradientNorm = gradientNorm
    }

    /// Fits the surrogate. `kernel` is [n, n] (rows: training texts), `labels` their classes.
    /// `start` warm-starts from another fit on the same kernel (e.g. a neighbouring lambda).
    public static func fit(kernel: [Float], labels: [Int], classes: Int, lambda: Double,
                           solver: LBFGS = LBFGS(), start: KernelGLM? = nil, threads: Int = Threads.defaultCount) -> KernelGLM {
        let n = labels.count
        precondition(kernel.count == n * n, "kernel must be n x n")
        let C = classes
        var z = [Float](repeating: 0, count: n * C)
        var wf = [Float](repeating: 0, count: C * n)
        var r = [Float](repeating: 0, count: n * C)
        var gw = [Float](repeating: 0, count: C * n)
        let objective: ([Double]) -> (Double, [Double]) = { theta in
            // theta = [W (C x n), b (C)]
            for i in 0..<(C * n) { wf[i] = Float(theta[i]) }
            // Z [n, C] = K [n, n] W^T, rows split over threads (the product is memory-bound).
            let parts = splitRange(n, parts: threads)
            kernel.withUnsafeBufferPointer { kp in
                wf.withUnsafeBufferPointer { wp in
                    z.withUnsafeMutableBufferPointer { zp in
                        parallelFor(parts.count) { t in
                            let r = parts[t]
                            Float.gemm(transA: false, transB: true, m: r.count, n: C, k: n, alpha: 1, a: kp.baseAddress! + r.lowerBound * n, lda: n,
                                       b: wp.baseAddress!, ldb: n, beta: 0, c: zp.baseAddress! + r.lowerBound * C, ldc: C)
                        }
                    }
                }
            }
            var loss = 0.0
            var gb = [Double](repeating: 0, count: C)
            for i in 0..<n {
                var row = (0..<C).map { Double(z[i * C + $0]) + theta[C * n + $0] }
                let m = row.max()!
                var sum = 0.0
                for c in 0..<C { row[c] = Foundation.exp(row[c] - m); sum += row[c] }
                loss += -(Foundation.log(row[labels[i]] / sum))
                for c in 0..<C {
                    let p = row[c] / sum - (c == labels[i] ? 1 : 0)
                    r[i * C + c] = Float(p / Double(n))
                    gb[c] += p / Double(n)
                }
            }
            loss /= Double(n)
            // dW [C, n] = R^T [C, n] K [n, n], columns split over threads.
            kernel.withUnsafeBufferPointer { kp in
                r.withUnsafeBufferPointer { rp in
                    gw.withUnsafeMutableBufferPointer { gp in
                        parallelFor(parts.count) { t in
                            let cols = parts[t]
                            Float.gemm(transA: true, transB: false, m: C, n: cols.count, k: n, alpha: 1, a: rp.baseAddress!, lda: C,
                                       b: kp.baseAddress! + cols.lowerBound, ldb: n, beta: 0, c: gp.baseAddress! + cols.lowerBound, ldc: n)
                        }
                    }
                }
            }
            var grad = [Double](repeating: 0, count: C * n + C)
            var reg = 0.0
            for i in 0..<(C * n) {
                grad[i] = Double(gw[i]) + lambda * theta[i]
                reg += theta[i] * theta[i]
            }
            for c in 0..<C { grad[C * n + c] = gb[c] }
            return (loss + 0.5 * lambda * reg, grad)
        }
        let x0 = start.map { $0.weights + $0.bias } ?? [Double](repeating: 0, count: C * n + C)
        // The gradient is computed through Float products of the kernel, so its attainable
        // accuracy scales with the kernel's entries (raw kernels such as ck are large).
        var scaled = solver
        let scale = Double(kernel.reduce(Float(0)) { max($0, abs($1)) })
        scaled.gradientTolerance = solver.gradientTolerance * max(1, scale)
        let result = scaled.minimize(x0, objective)
        return KernelGLM(classes: C, trainCount: n, weights: Array(result.x[0..<(C * n)]), bias: Array(result.x[(C * n)...]),
                         lambda: lambda, iterations: result.iterations, converged: result.converged, gradientNorm: result.gradientNorm)
    }

    /// Logits [m, C] for kernel rows [m, n] (K(x, X_train) for m texts).
    public func logits(kernelRows: [Float]) -> [Double] {
        let n = trainCount, C = classes
        let m = kernelRows.count / n
        precondition(kernelRows.count == m * n)
        let wf = weights.map(Float.init)
        var z = [Float](repeating: 0, count: m * C)
        Float.gemm(transA: false, transB: true, m: m, n: C, k: n, alpha: 1, a: kernelRows, lda: n, b: wf, ldb: n,
                   beta: 0, c: &z, ldc: C)
        return (0..<(m * C)).map { Double(z[$0]) + bias[$0 % C] }
    }

    /// Attribution of every training text to one text for class c: W[c, i] * K(x, x_i).
    public func attributions(kernelRow: [Float], classIndex c: Int) -> [Double] {
        (0..<trainCount).map { weights[c * trainCount + $0] * Double(kernelRow[$0]) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Foundation
