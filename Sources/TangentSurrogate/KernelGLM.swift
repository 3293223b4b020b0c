import Foundation
import TangentTensor

/// The kernel surrogate (kGLM) of the kernels spec: multinomial logistic regression on
/// the rows of a train x train kernel matrix, p(x) = softmax(W k(x) + b), with
/// k(x) = K(x, X_train), W [C, n], fitted by L-BFGS to
///     (1/n) sum_i CE(p(x_i), y_i) + (lambda s^2 / 2) ||W||^2,
/// s the kernel's scale (`kernelScale`, the mean of its diagonal).
/// With s in the penalty, lambda means the same for every kernel: scaling K by a scales
/// the optimal W by 1/a and leaves the surrogate's predictions unchanged, so a raw
/// kernel such as `ck`, whose entries are in the hundreds, is regularized like a
/// cosine-normalized one at the same lambda.
/// Products with the kernel run in fixed-order dot products (Float kernel, Double parameters).
public struct KernelGLM: Sendable {
    public let classes: Int
    public let trainCount: Int
    /// [C, n] row-major.
    public let weights: [Double]
    public let bias: [Double]
    public let lambda: Double
    /// s in the penalty (1 for a kernel used at its own scale).
    public let kernelScale: Double
    public let iterations: Int
    /// Evaluations of the objective in the fit (0 for a loaded surrogate): each streams K twice.
    public let evaluations: Int
    public let converged: Bool
    /// Largest entry of the objective's gradient at the solution.
    public let gradientNorm: Double

    /// A fitted surrogate (e.g. loaded from a file).
    public init(
        classes: Int, trainCount: Int, weights: [Double], bias: [Double], lambda: Double, kernelScale: Double = 1,
        iterations: Int, evaluations: Int = 0, converged: Bool, gradientNorm: Double
    ) {
        self.classes = classes
        self.trainCount = trainCount
        self.weights = weights
        self.bias = bias
        self.lambda = lambda
        self.kernelScale = kernelScale
        self.iterations = iterations
        self.evaluations = evaluations
        self.converged = converged
        self.gradientNorm = gradientNorm
    }

    /// Fits the surrogate. `kernel` is [n, n] and symmetric (rows: training texts),
    /// `labels` their classes. `start` warm-starts from another fit on the same kernel
    /// (e.g. a neighbouring lambda). `spectrum` (of this kernel) preconditions the solver.
    /// `kernelScale` is s in the penalty; pass the same s for every fit whose lambdas are
    /// to be compared (for example the full kernel's, also for fits on a part of it).
    ///
    /// Each evaluation of the objective streams the kernel twice (logits W K, gradient
    /// R^T K, both as a few rows times K), which is what bounds the fit on large n: the
    /// products read K (or, factored, F twice) once per call in fixed-order dot products
    /// split over threads, so the result does not depend on the thread count.
    public static func fit(
        kernel: [Float], labels: [Int], classes: Int, lambda: Double, kernelScale: Double = 1,
        solver: LBFGS = LBFGS(), start: KernelGLM? = nil, spectrum: KernelSpectrum? = nil,
        threads: Int = Threads.cores
    ) -> KernelGLM {
        precondition(kernel.count == labels.count * labels.count, "kernel must be n x n")
        return fit(
            kernel: .matrix(kernel, n: labels.count), labels: labels, classes: classes, lambda: lambda,
            kernelScale: kernelScale,
            solver: solver, start: start, spectrum: spectrum, threads: threads)
    }

    /// The same for a kernel given as a matrix or factored (see `TrainingKernel`).
    /// `textWeights` (default all 1) weigh each text's loss term, (1/n) sum_i w_i CE_i:
    /// weight 0 drops a text's term while its kernel column stays a feature, the refit
    /// that `SurrogateInfluence` predicts to first order.
    public static func fit(
        kernel: TrainingKernel, labels: [Int], classes: Int, lambda relativeLambda: Double, kernelScale: Double = 1,
        solver: LBFGS = LBFGS(), start: KernelGLM? = nil, spectrum: KernelSpectrum? = nil,
        textWeights: [Double]? = nil, threads: Int = Threads.cores
    ) -> KernelGLM {
        let n = labels.count
        precondition(kernel.n == n, "kernel must be n x n")
        precondition(
            textWeights.map { $0.count == n && $0.allSatisfy { $0 >= 0 && $0.isFinite } } ?? true,
            "one finite weight >= 0 per text")
        precondition(kernelScale > 0 && kernelScale.isFinite, "kernel scale must be positive")
        let lambda = relativeLambda * kernelScale * kernelScale
        let C = classes
        let objective = Objective(
            kernel: kernel, labels: labels, classes: C, lambda: lambda, textWeights: textWeights, threads: threads)
        let x0 = start.map { $0.weights + $0.bias } ?? [Double](repeating: 0, count: C * n + C)
        // The gradient's entries (R^T K) scale with the kernel's, and so does the accuracy
        // the Float kernel allows them: raw kernels such as ck are large.
        var scaled = solver
        // The largest entry of a positive semi-definite kernel is on its diagonal.
        let scale = kernel.diagonal.reduce(0) { max($0, abs($1)) }
        scaled.gradientTolerance = solver.gradientTolerance * max(1, scale)
        // The preconditioner takes the curvature at the last evaluation: near-separable
        // texts (p close to 0 or 1) weigh almost nothing, so at weak lambda it is far below 1/4.
        // Converged only when the gradient is also small against the two parts that cancel
        // in it: on near-separable data every gradient is below the absolute tolerance long
        // before the optimum (and a warm start from another lambda is far from it while its
        // gradient, (lambda - lambda') W, is small), so the absolute test alone stops at once.
        let stationary: ([Double], Double) -> Bool = { g, slack in
            let largest = g.reduce(0) { max($0, abs($1)) }
            return largest < slack * 1e-3 * (objective.lastLossGradient + objective.lastRegularizerGradient)
        }
        let result = scaled.minimize(
            x0,
            preconditioner: spectrum?.preconditioner(
                classes: C, lambda: lambda, curvature: { max(objective.lastCurvature, 1e-8) }),
            stationary: stationary, objective.evaluate)
        return KernelGLM(
            classes: C, trainCount: n, weights: Array(result.x[0..<(C * n)]), bias: Array(result.x[(C * n)...]),
            lambda: relativeLambda, kernelScale: kernelScale, iterations: result.iterations,
            evaluations: result.evaluations, converged: result.converged, gradientNorm: result.gradientNorm)
    }

    /// The surrogate's objective, (1/n) sum_i w_i CE_i + (lambda / 2) |W|^2 over theta =
    /// [W (C x n), b (C)], with what the solver's stopping rule and preconditioner read
    /// from its last evaluation.
    final class Objective {
        let kernel: TrainingKernel
        let labels: [Int]
        let classes: Int
        let lambda: Double
        let textWeights: [Double]?
        let threads: Int
        // The parameters, products and sums stay in Double; only K is Float. With W rounded
        // to Float, the objective would be noisy at 1e-7 of the logits' terms, which on a
        // weakly regularized fit (large W whose terms cancel) exceeds the decrease of a step:
        // the line search then halves the step until it does nothing.
        var zt: [Double]
        var rt: [Double]
        var gw: [Double]
        /// Mean of trace(diag(p) - p p^T) / C over the texts at the last evaluation: the
        /// cross-entropy's curvature, for the preconditioner.
        var lastCurvature = 0.25
        /// Largest entries of the two parts of the W gradient, R^T K and lambda W, at the
        /// last evaluation: they cancel at the optimum.
        var lastLossGradient = 0.0
        var lastRegularizerGradient = 0.0

        init(kernel: TrainingKernel, labels: [Int], classes: Int, lambda: Double, textWeights: [Double]?, threads: Int)
        {
            self.kernel = kernel
            self.labels = labels
            self.classes = classes
            self.lambda = lambda
            self.textWeights = textWeights
            self.threads = threads
            zt = [Double](repeating: 0, count: classes * labels.count)
            rt = zt
            gw = zt
        }

        /// The objective's value and gradient at theta.
        func evaluate(_ theta: [Double]) -> (Double, [Double]) {
            let C = classes
            let n = labels.count
            // Z^T [C, n] = W K (K symmetric, so this is (K W^T)^T).
            kernel.times(theta, rows: C, into: &zt, threads: threads)
            var gb = [Double](repeating: 0, count: C)
            let terms = KernelGLM.residuals(
                logits: zt, theta: theta, labels: labels, classes: C, textWeights: textWeights, into: &rt,
                biasGradient: &gb)
            let loss = terms.loss / Double(n)
            lastCurvature = terms.curvature / Double(n * C)
            lastLossGradient = 0
            // dW [C, n] = R^T K.
            kernel.times(rt, rows: C, into: &gw, threads: threads)
            var grad = [Double](repeating: 0, count: C * n + C)
            var reg = 0.0
            var largestW = 0.0
            for i in 0..<(C * n) {
                grad[i] = gw[i] + lambda * theta[i]
                reg += theta[i] * theta[i]
                lastLossGradient = max(lastLossGradient, abs(gw[i]))
                largestW = max(largestW, abs(theta[i]))
            }
            lastRegularizerGradient = lambda * largestW
            for c in 0..<C { grad[C * n + c] = gb[c] }
            return (loss + 0.5 * lambda * reg, grad)
        }
    }

    /// The cross-entropy's terms at logits Z^T [C, n] (without bias) plus the bias in
    /// `theta`'s last C entries: summed loss and curvature (trace(diag(p) - p p^T)), the
    /// residuals R^T = (P - Y)^T / n into `rt` [C, n] and their sums per class into `gb`,
    /// each text's terms times its weight when `textWeights` are given.
    static func residuals(
        logits zt: [Double], theta: [Double], labels: [Int], classes C: Int, textWeights: [Double]? = nil,
        into rt: inout [Double], biasGradient gb: inout [Double]
    ) -> (loss: Double, curvature: Double) {
        let n = labels.count
        var loss = 0.0
        var curvature = 0.0
        withUnsafeTemporaryAllocation(of: Double.self, capacity: C) { row in
            for i in 0..<n {
                var m = -Double.infinity
                for c in 0..<C {
                    row[c] = zt[c * n + i] + theta[C * n + c]
                    m = max(m, row[c])
                }
                var sum = 0.0
                for c in 0..<C {
                    row[c] = Foundation.exp(row[c] - m)
                    sum += row[c]
                }
                let w = textWeights?[i] ?? 1
                if w != 0 { loss += -w * (Foundation.log(row[labels[i]] / sum)) }
                for c in 0..<C {
                    curvature += w * row[c] / sum * (1 - row[c] / sum)
                    let p = w * (row[c] / sum - (c == labels[i] ? 1 : 0))
                    rt[c * n + i] = p / Double(n)
                    gb[c] += p / Double(n)
                }
            }
        }
        return (loss, curvature)
    }

    /// The mean of K's diagonal (1 for cosine-normalized kernels), or 1 if that is not
    /// a positive number (a kernel of zero texts' gradients, say): s in the penalty.
    public static func kernelScale(_ diagonal: [Double]) -> Double {
        let mean = diagonal.reduce(0, +) / Double(max(diagonal.count, 1))
        return mean > 0 && mean.isFinite ? mean : 1
    }

    /// Logits [m, C] for kernel rows [m, n] (K(x, X_train) for m texts).
    public func logits(kernelRows: [Float]) -> [Double] {
        let n = trainCount
        let C = classes
        let m = kernelRows.count / n
        precondition(kernelRows.count == m * n)
        let wf = weights.map(Float.init)
        var z = [Float](repeating: 0, count: m * C)
        Float.gemm(
            transA: false, transB: true, m: m, n: C, k: n, alpha: 1, a: kernelRows, lda: n, b: wf, ldb: n,
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
