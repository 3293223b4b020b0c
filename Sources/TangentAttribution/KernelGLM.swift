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

    /// Fits the surrogate. `kernel` is [n, n] and symmetric (rows: training texts),
    /// `labels` their classes. `start` warm-starts from another fit on the same kernel
    /// (e.g. a neighbouring lambda). `spectrum` (of this kernel) preconditions the solver.
    ///
    /// Each evaluation of the objective streams the kernel twice (logits W K, gradient
    /// R^T K, both as a few rows times K), which is what bounds the fit on large n: the
    /// products go through a kernel that reads K once per call and splits its rows over
    /// threads, so the result does not depend on the thread count.
    public static func fit(kernel: [Float], labels: [Int], classes: Int, lambda: Double,
                           solver: LBFGS = LBFGS(), start: KernelGLM? = nil, spectrum: KernelSpectrum? = nil,
                           threads: Int = Threads.defaultCount) -> KernelGLM {
        let n = labels.count
        precondition(kernel.count == n * n, "kernel must be n x n")
        let C = classes
        var zt = [Float](repeating: 0, count: C * n)
        var wf = [Float](repeating: 0, count: C * n)
        var rt = [Float](repeating: 0, count: C * n)
        var gw = [Float](repeating: 0, count: C * n)
        // Mean of trace(diag(p) - p p^T) / C over the texts at the last evaluation: the
        // cross-entropy's curvature, for the preconditioner.
        var lastCurvature = 0.25
        let objective: ([Double]) -> (Double, [Double]) = { theta in
            // theta = [W (C x n), b (C)]
            for i in 0..<(C * n) { wf[i] = Float(theta[i]) }
            // Z^T [C, n] = W K (K symmetric, so this is (K W^T)^T).
            KernelGLM.timesKernel(wf, rows: C, kernel: kernel, n: n, into: &zt, threads: threads)
            var loss = 0.0, curvature = 0.0
            var gb = [Double](repeating: 0, count: C)
            withUnsafeTemporaryAllocation(of: Double.self, capacity: C) { row in
                for i in 0..<n {
                    var m = -Double.infinity
                    for c in 0..<C { row[c] = Double(zt[c * n + i]) + theta[C * n + c]; m = max(m, row[c]) }
                    var sum = 0.0
                    for c in 0..<C { row[c] = Foundation.exp(row[c] - m); sum += row[c] }
                    loss += -(Foundation.log(row[labels[i]] / sum))
                    for c in 0..<C {
                        curvature += row[c] / sum * (1 - row[c] / sum)
                        let p = row[c] / sum - (c == labels[i] ? 1 : 0)
                        rt[c * n + i] = Float(p / Double(n))
                        gb[c] += p / Double(n)
                    }
                }
            }
            loss /= Double(n)
            lastCurvature = curvature / Double(n * C)
            // dW [C, n] = R^T K.
            KernelGLM.timesKernel(rt, rows: C, kernel: kernel, n: n, into: &gw, threads: threads)
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
        // The preconditioner takes the curvature where the fit starts: near-separable texts
        // (p close to 0 or 1) weigh almost nothing, so at weak lambda it is far below 1/4.
        if spectrum != nil { _ = objective(x0) }
        let result = scaled.minimize(x0, preconditioner: spectrum?.preconditioner(classes: C, lambda: lambda, curvature: max(lastCurvature, 1e-4)), objective)
        return KernelGLM(classes: C, trainCount: n, weights: Array(result.x[0..<(C * n)]), bias: Array(result.x[(C * n)...]),
                         lambda: lambda, iterations: result.iterations, converged: result.converged, gradientNorm: result.gradientNorm)
    }

    /// out [m, n] = x [m, n] K for a symmetric n x n kernel and a few rows x: each entry
    /// is a dot product of x with a row of K, which is read once, rows split over threads
    /// (fixed-order sums, so any thread count gives the same bits). Through BLAS, K would be
    /// repacked on every call, which costs several times the product itself.
    static func timesKernel(_ x: [Float], rows m: Int, kernel: [Float], n: Int, into out: inout [Float], threads: Int) {
        precondition(x.count >= m * n && out.count >= m * n && kernel.count == n * n)
        let parts = splitRange(n, parts: max(1, min(threads, n / 64))).filter { !$0.isEmpty }
        x.withUnsafeBufferPointer { xp in
            kernel.withUnsafeBufferPointer { kp in
                out.withUnsafeMutableBufferPointer { op in
                    parallelFor(parts.count) { t in
                        let r = parts[t]
                        FixedOrderGemm.dots(m: m, rows: r.count, depth: n, x: xp.baseAddress!, ldx: n,
                                            k: kp.baseAddress! + r.lowerBound * n, ldk: n, out: op.baseAddress! + r.lowerBound, ldo: n)
                    }
                }
            }
        }
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
