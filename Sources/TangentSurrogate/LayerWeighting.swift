import Foundation
import TangentTensor

/// Per-layer kernel weights in the spirit of NFT-K (Zhang et al. 2022): a surrogate on
/// K_w = sum_l w_l K_l, the exact NTK's per-layer parts K_l (which add up to the NTK at
/// w = 1), with w_l >= 0 fitted to the training texts alone.
///
/// The weights minimize the out-of-fold cross-entropy against the network's probabilities
/// (the selector's folds, at a fixed lambda): the surrogate is meant to reproduce the
/// network, and the true labels are almost perfectly predicted by any weighting of a
/// memorizing network's NTK, so they cannot tell weightings apart. The search is a
/// coordinate search on a multiplicative grid, which keeps every w_l >= 0 and can switch
/// a layer off; only the weights' ratios matter, since lambda is relative to the kernel's
/// scale.
public enum LayerWeighting {
    public struct Result: Sendable {
        /// One weight per part, in the parts' order; the largest is 1.
        public let weights: [Double]
        /// Out-of-fold cross-entropy against the network at the weights, and at w = 1.
        public let crossEntropy: Double
        public let unweightedCrossEntropy: Double
        /// Objective evaluations (each fits the surrogate once per fold).
        public let evaluations: Int
    }

    /// Multipliers tried for one weight per step of the coordinate search.
    static let steps: [Double] = [0, 0.25, 0.5, 2, 4]

    /// sum_l w_l parts[l] [n, n].
    public static func combine(_ parts: [[Float]], weights: [Double]) -> [Float] {
        precondition(parts.count == weights.count && !parts.isEmpty)
        var k = [Float](repeating: 0, count: parts[0].count)
        for (p, w) in zip(parts, weights) where w != 0 {
            let wf = Float(w)
            for i in k.indices { k[i] += wf * p[i] }
        }
        return k
    }

    /// Fits the weights on training texts: `parts` [n, n] each, `labels` the true classes,
    /// `networkLogits` [n, C]; the surrogates are fitted at `lambda` on the selector's folds.
    public static func fit(
        parts: [[Float]], labels: [Int], networkLogits: [Float], classes C: Int, lambda: Double,
        selector: LambdaSelector, sweeps: Int = 3, threads: Int = Threads.cores,
        log: (String) -> Void = { _ in }
    ) -> Result {
        let n = labels.count
        precondition(parts.allSatisfy { $0.count == n * n } && networkLogits.count == n * C)
        let fold = selector.foldAssignment(n: n)
        let folds = (0..<selector.folds).map { f in
            (held: (0..<n).filter { fold[$0] == f }, fit: (0..<n).filter { fold[$0] != f })
        }
        let targets = (0..<n).map { i in Softmax.probabilities((0..<C).map { Double(networkLogits[i * C + $0]) }) }
        var starts = [KernelGLM?](repeating: nil, count: folds.count)
        var evaluations = 0
        func objective(_ w: [Double]) -> Double {
            guard w.contains(where: { $0 > 0 }) else { return .infinity }
            evaluations += 1
            let kernel = TrainingKernel.matrix(combine(parts, weights: w), n: n)
            let scale = KernelGLM.kernelScale(kernel.diagonal)
            var loss = 0.0
            for (f, split) in folds.enumerated() {
                let g = KernelGLM.fit(
                    kernel: kernel.restricted(to: split.fit), labels: split.fit.map { labels[$0] }, classes: C,
                    lambda: lambda,
                    kernelScale: scale, start: starts[f], threads: threads)
                starts[f] = g
                let z = g.logits(kernelRows: kernel.block(rows: split.held, columns: split.fit))
                for (a, i) in split.held.enumerated() {
                    let lp = Softmax.logProbabilities(Array(z[(a * C)..<((a + 1) * C)]))
                    for c in 0..<C { loss -= targets[i][c] * lp[c] }
                }
            }
            return loss / Double(n)
        }
        var w = [Double](repeating: 1, count: parts.count)
        let unweighted = objective(w)
        var best = unweighted
        for sweep in 0..<sweeps {
            var improved = false
            for l in w.indices {
                for step in steps {
                    var trial = w
                    trial[l] = w[l] == 0 ? (step == 0 ? 0 : step * 0.25) : w[l] * step
                    if trial[l] == w[l] { continue }
                    let value = objective(trial)
                    if value < best - 1e-6 * abs(best) {
                        best = value
                        w = trial
                        improved = true
                    }
                }
            }
            log(
                String(
                    format:
                        "layer weights, sweep %ld: out-of-fold network cross-entropy %.4f (w = 1: %.4f), weights %@",
                    sweep + 1, best, unweighted,
                    w.map { String(format: "%.3g", $0) }.joined(separator: ", ")))
            if !improved { break }
        }
        let top = w.max()!
        return Result(
            weights: w.map { $0 / top }, crossEntropy: best, unweightedCrossEntropy: unweighted,
            evaluations: evaluations)
    }
}
