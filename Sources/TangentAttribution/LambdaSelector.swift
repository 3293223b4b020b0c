import Foundation
import TangentTensor

/// Chooses the kGLM's regularization from the training texts alone, by k-fold
/// cross-validation over a grid of lambdas.
///
/// The selector never sees a test text: its only inputs are the train x train kernel, the
/// training labels and the network's logits on the training texts. Each fold's texts are
/// predicted by surrogates fitted on the other folds (warm-started from strong to weak
/// regularization), and every lambda is scored on these out-of-fold predictions.
///
/// Why the default criterion compares with the network rather than the labels: a network
/// that memorized its training set makes its NTK predict the training labels almost
/// perfectly, so the out-of-fold label cross-entropy keeps falling as lambda shrinks
/// (about 0.008 on trec6, 0 on sms-spam) while the surrogate drifts away from the network.
/// Measured on the three shipped sets (exact trntk, test tau of fits on all training
/// texts), Kendall tau against the network's log-odds on the out-of-fold texts picks the
/// grid's best lambda on trec6 and sms-spam, where label cross-entropy picks one 0.05 and
/// 0.035 below it.
public struct LambdaSelector: Sendable {
    /// What the out-of-fold predictions are scored by.
    public enum Criterion: String, Sendable, Codable, CaseIterable {
        /// Kendall tau-b between the surrogate's and the network's log-odds of the compared
        /// class (class 1 for two classes, the true label otherwise): higher is better.
        case networkTau = "network-tau"
        /// Cross-entropy against the network's probabilities: lower is better.
        case networkCrossEntropy = "network-ce"
        /// Cross-entropy against the true labels (the classic rule): lower is better.
        case labelCrossEntropy = "label-ce"
    }

    /// One lambda's out-of-fold figures and its surrogate fitted on all training texts.
    public struct Point: Sendable, Codable {
        public let lambda: Double
        public let networkTau: Double
        public let networkCrossEntropy: Double
        public let labelCrossEntropy: Double

        /// The figure `criterion` ranks by, oriented so that larger is better.
        public func merit(_ criterion: Criterion) -> Double {
            switch criterion {
            case .networkTau: return networkTau
            case .networkCrossEntropy: return -networkCrossEntropy
            case .labelCrossEntropy: return -labelCrossEntropy
            }
        }
    }

    /// Which surrogates `select` fits on all training texts after the folds.
    public enum FitsOnAll: Sendable {
        /// Every lambda of the grid (a comparison report's per-lambda figures).
        case everyLambda
        /// The chosen lambda only, reached by the same warm-started chain from the
        /// strongest lambda, so its surrogate is bit-identical to `everyLambda`'s.
        case chosen
        /// None: only the choice is wanted.
        case none
    }

    /// The grid's figures (ascending lambda), the fits on all training texts (same order;
    /// empty unless every lambda was fitted), the chosen index and its fit.
    public struct Selection: Sendable {
        public let criterion: Criterion
        public let points: [Point]
        public let fits: [KernelGLM]
        public let chosen: Int
        /// The surrogate at the chosen lambda on all training texts (nil with `.none`).
        public let chosenFit: KernelGLM?
        public var lambda: Double { points[chosen].lambda }
        public var glm: KernelGLM { chosenFit! }
    }

    /// Relative lambdas (see `KernelGLM`): from almost none to strong enough that the
    /// surrogate is nearly the kernel-weighted class mean. sms-spam's network is so
    /// confident that its best tau lies at the strong end.
    public static let defaultGrid: [Double] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10]

    public var grid: [Double]
    public var folds: Int
    public var criterion: Criterion
    /// Seeds the assignment of training texts to folds.
    public var seed: UInt64

    public init(grid: [Double] = LambdaSelector.defaultGrid, folds: Int = 5, criterion: Criterion = .networkTau, seed: UInt64 = 0) {
        precondition(!grid.isEmpty && grid.allSatisfy { $0 > 0 }, "lambdas must be positive")
        precondition(folds >= 2, "cross-validation needs at least two folds")
        self.grid = grid.sorted()
        self.folds = folds
        self.criterion = criterion
        self.seed = seed
    }

    /// The rule in words, stored with cached surrogates: another rule means another fit.
    public var tag: String {
        "\(criterion.rawValue) folds \(folds) seed \(seed) grid " + grid.map { String($0) }.joined(separator: ",")
    }

    /// The fold (0 ..< folds) of each of `n` training texts: a seeded permutation dealt out
    /// in turn, so fold sizes differ by at most one.
    public func foldAssignment(n: Int) -> [Int] {
        let rng = CounterRNG.derive(seed, 0x4E1D, 0xF01D)
        let order = (0..<n).sorted { rng.bits(UInt64($0)) < rng.bits(UInt64($1)) }
        var fold = [Int](repeating: 0, count: n)
        for (position, i) in order.enumerated() { fold[i] = position % folds }
        return fold
    }

    /// `count` of `n` texts drawn without replacement by `seed` (the selector's sample of
    /// a training set too large for its kernel to be held).
    public static func sample(n: Int, count: Int, seed: UInt64) -> [Int] {
        let rng = CounterRNG.derive(seed, 0x5A3B, 0x1E5E)
        return Array((0..<n).sorted { rng.bits(UInt64($0)) < rng.bits(UInt64($1)) }.prefix(count))
    }

    /// Cross-validates every lambda of the grid and fits the surrogate on all training
    /// texts at each. `labels` are the training texts' true classes, `networkLogits`
    /// [n, classes] the network's logits on them.
    public func select(kernel: TrainingKernel, labels: [Int], networkLogits: [Float], classes C: Int, fitsOnAll: FitsOnAll = .everyLambda,
                       threads: Int = Threads.defaultCount, log: (String) -> Void = { _ in }) -> Selection {
        let n = labels.count
        precondition(kernel.n == n && networkLogits.count == n * C, "one kernel row and C logits per training text")
        precondition(n >= 2 * folds, "cross-validation needs at least two texts per fold")
        // lambda is relative to the whole kernel's scale, also for the fits on part of it.
        let kernelScale = KernelGLM.kernelScale(kernel.diagonal)
        let fold = foldAssignment(n: n)
        let descending = grid.sorted(by: >)
        // Out-of-fold logits [n, C] per lambda (descending order).
        var outOfFold = [[Double]](repeating: [Double](repeating: 0, count: n * C), count: descending.count)
        for f in 0..<folds {
            let held = (0..<n).filter { fold[$0] == f }, fit = (0..<n).filter { fold[$0] != f }
            let kFit = kernel.restricted(to: fit)
            let kHeld = kernel.block(rows: held, columns: fit)
            let spectrum = KernelSpectrum(kernel: kFit, threads: threads)
            var previous: KernelGLM?
            for (l, lambda) in descending.enumerated() {
                let g = KernelGLM.fit(kernel: kFit, labels: fit.map { labels[$0] }, classes: C, lambda: lambda, kernelScale: kernelScale,
                                      start: previous, spectrum: spectrum, threads: threads)
                previous = g
                let z = g.logits(kernelRows: kHeld)
                for (a, i) in held.enumerated() { for c in 0..<C { outOfFold[l][i * C + c] = z[a * C + c] } }
            }
            log("lambda selection: fold \(f + 1)/\(folds) fitted at \(descending.count) lambdas")
        }
        let network = networkLogits.map(Double.init)
        let compared = labels.map { Faithfulness.comparedClass(classes: C, label: $0) }
        let networkOdds = (0..<n).map { Faithfulness.logOdds(logits: Array(network[(($0) * C)..<(($0 + 1) * C)]), classIndex: compared[$0]) }
        let networkProbabilities = (0..<n).map { Softmax.probabilities(Array(network[($0 * C)..<(($0 + 1) * C)])) }
        var points: [Point] = []
        for (l, lambda) in descending.enumerated() {
            let z = outOfFold[l]
            var labelCE = 0.0, networkCE = 0.0
            var odds = [Double](repeating: 0, count: n)
            for i in 0..<n {
                let row = Array(z[(i * C)..<((i + 1) * C)])
                let logp = Softmax.logProbabilities(row)
                let q = networkProbabilities[i]
                labelCE -= logp[labels[i]]
                for c in 0..<C { networkCE -= q[c] * logp[c] }
                odds[i] = Faithfulness.logOdds(logits: row, classIndex: compared[i])
            }
            points.append(Point(lambda: lambda, networkTau: Faithfulness.kendallTau(odds, networkOdds),
                                networkCrossEntropy: networkCE / Double(n), labelCrossEntropy: labelCE / Double(n)))
        }
        // Ties go to the stronger regularization: it is the simpler surrogate (points are
        // in descending lambda here).
        var best = 0
        for l in 1..<points.count where points[l].merit(criterion) > points[best].merit(criterion) { best = l }
        // The surrogate on all training texts: strongest lambda first, each fit warm-started
        // from the previous one; only as far down the grid as needed.
        let last = fitsOnAll == .everyLambda ? descending.count - 1 : (fitsOnAll == .chosen ? best : -1)
        let spectrum = last >= 0 ? KernelSpectrum(kernel: kernel, threads: threads) : nil
        var fits: [KernelGLM] = []
        var previous: KernelGLM?
        for lambda in descending.prefix(last + 1) {
            let g = KernelGLM.fit(kernel: kernel, labels: labels, classes: C, lambda: lambda, kernelScale: kernelScale,
                                  start: previous, spectrum: spectrum, threads: threads)
            previous = g
            fits.append(g)
        }
        for (l, p) in points.enumerated() {
            let fit = l < fits.count ? String(format: "; fit on all: %ld iterations%@", fits[l].iterations, fits[l].converged ? "" : ", not converged") : ""
            log(String(format: "lambda %.0e: out-of-fold tau %.3f, network CE %.4f, label CE %.4f%@",
                       p.lambda, p.networkTau, p.networkCrossEntropy, p.labelCrossEntropy, fit))
        }
        let chosenFit = best < fits.count ? fits[best] : nil
        points.reverse()
        return Selection(criterion: criterion, points: points, fits: fitsOnAll == .everyLambda ? fits.reversed() : [],
                         chosen: points.count - 1 - best, chosenFit: chosenFit)
    }
}
