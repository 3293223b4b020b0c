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
    /// Stop descending the grid after this many lambdas in a row rank below the best so
    /// far (nil: every lambda of the grid, as a report of the whole grid needs).
    public var stopAfter: Int?
    /// When the best lambda is the grid's strongest, try 10x stronger ones up to this bound
    /// while they do not rank lower (nil: the grid only).
    public var extendTo: Double?

    /// The defaults stop after 2 losing lambdas and extend the grid's strong edge up to 1e4.
    public init(grid: [Double] = LambdaSelector.defaultGrid, folds: Int = 5, criterion: Criterion = .networkTau, seed: UInt64 = 0,
                stopAfter: Int? = 2, extendTo: Double? = 1e4) {
        precondition(!grid.isEmpty && grid.allSatisfy { $0 > 0 }, "lambdas must be positive")
        precondition(folds >= 2, "cross-validation needs at least two folds")
        precondition(stopAfter.map { $0 >= 1 } ?? true, "stop after at least one losing lambda")
        self.grid = grid.sorted()
        self.folds = folds
        self.criterion = criterion
        self.seed = seed
        self.stopAfter = stopAfter
        self.extendTo = extendTo
    }

    /// This rule evaluating every lambda of the grid (no early stop), for reports of it.
    public var exhaustive: LambdaSelector {
        var s = self
        s.stopAfter = nil
        return s
    }

    /// The rule in words, stored with cached surrogates: another rule means another fit.
    public var tag: String {
        "\(criterion.rawValue) folds \(folds) seed \(seed) grid " + grid.map { String($0) }.joined(separator: ",")
            + (stopAfter.map { " stop \($0)" } ?? "") + (extendTo.map { " extend \($0)" } ?? "")
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

    /// Cross-validates lambdas of the grid, from the strongest down, and fits the surrogate
    /// on all training texts (see `FitsOnAll`). `labels` are the training texts' true
    /// classes, `networkLogits` [n, classes] the network's logits on them.
    ///
    /// Every lambda is fitted on the k folds before the next, each fold's fit warm-started
    /// from its fit at the previous (stronger) lambda, so a fold's chain of fits is the same
    /// whatever is skipped. With `stopAfter`, the descent stops once that many lambdas in a
    /// row ranked below the best so far: the weak lambdas skipped are the slow fits. With
    /// `extendTo`, a best lambda at the grid's strong edge is followed upward by factors of
    /// 10 while it does not rank lower, up to that bound. Both are said in `log`.
    public func select(kernel: TrainingKernel, labels: [Int], networkLogits: [Float], classes C: Int, fitsOnAll: FitsOnAll = .everyLambda,
                       threads: Int = Threads.defaultCount, log: (String) -> Void = { _ in }) -> Selection {
        let n = labels.count
        precondition(kernel.n == n && networkLogits.count == n * C, "one kernel row and C logits per training text")
        precondition(n >= 2 * folds, "cross-validation needs at least two texts per fold")
        // lambda is relative to the whole kernel's scale, also for the fits on part of it.
        let kernelScale = KernelGLM.kernelScale(kernel.diagonal)
        let scorer = OutOfFoldScorer(selector: self, kernel: kernel, labels: labels, networkLogits: networkLogits, classes: C,
                                     kernelScale: kernelScale, threads: threads)
        let descending = grid.sorted(by: >)
        var evaluated: [(lambda: Double, point: Point)] = []
        var best = 0, declines = 0
        var atStrongest: [KernelGLM] = []
        for (l, lambda) in descending.enumerated() {
            let point = scorer.evaluate(lambda)
            if l == 0 { atStrongest = scorer.previous }
            evaluated.append((lambda, point))
            // Ties go to the stronger regularization: it is the simpler surrogate.
            if l > 0 {
                if point.merit(criterion) > evaluated[best].point.merit(criterion) { best = l; declines = 0 } else { declines += 1 }
            }
            if let stop = stopAfter, declines >= stop, l + 1 < descending.count {
                log("lambda selection: stopped after lambda \(lambda): \(declines) lambdas in a row below the best (\(evaluated[best].lambda)); "
                    + "\(descending[(l + 1)...].map { String(format: "%.0e", $0) }.joined(separator: ", ")) not fitted")
                break
            }
        }
        if best == 0, let bound = extendTo, !atStrongest.isEmpty {
            // The best is the strongest lambda: the criterion may still rise beyond the grid.
            scorer.previous = atStrongest
            var lambda = descending[0] * 10
            while lambda <= bound * (1 + 1e-9) {
                let point = scorer.evaluate(lambda)
                evaluated.insert((lambda, point), at: 0)
                let improves = point.merit(criterion) >= evaluated[1].point.merit(criterion)
                log(String(format: "lambda selection: the best lambda is the strongest tried; extended to %.0e: %@", lambda,
                           improves ? "no worse, continuing" : "worse, stopping"))
                guard improves else { break }
                lambda *= 10
            }
            // The best again, ties to the stronger (evaluated runs from strong to weak).
            best = 0
            for l in evaluated.indices where evaluated[l].point.merit(criterion) > evaluated[best].point.merit(criterion) { best = l }
            if best == 0 && lambda > bound * (1 + 1e-9) {
                log(String(format: "lambda selection: still rising at the bound %.0e of the extension", bound))
            }
        }
        // The surrogate on all training texts: strongest evaluated lambda first, each fit
        // warm-started from the previous one; only as far down as needed.
        let order = evaluated.map(\.lambda)
        let last = fitsOnAll == .everyLambda ? order.count - 1 : (fitsOnAll == .chosen ? best : -1)
        var spectrum: KernelSpectrum?
        if last >= 0 {
            if let g = scorer.columnGram, case .factored(let f, _, _, let w) = kernel {
                spectrum = KernelSpectrum(factored: f, n: n, width: w, columnGram: g)
            } else {
                spectrum = KernelSpectrum(kernel: kernel, threads: threads)
            }
        }
        var fits: [KernelGLM] = []
        var previous: KernelGLM?
        for lambda in order.prefix(last + 1) {
            let g = KernelGLM.fit(kernel: kernel, labels: labels, classes: C, lambda: lambda, kernelScale: kernelScale,
                                  start: previous, spectrum: spectrum, threads: threads)
            previous = g
            fits.append(g)
        }
        for (l, e) in evaluated.enumerated() {
            let p = e.point
            let fit = l < fits.count ? String(format: "; fit on all: %ld iterations%@", fits[l].iterations, fits[l].converged ? "" : ", not converged") : ""
            log(String(format: "lambda %.0e: out-of-fold tau %.3f, network CE %.4f, label CE %.4f%@",
                       p.lambda, p.networkTau, p.networkCrossEntropy, p.labelCrossEntropy, fit))
        }
        let chosenFit = best < fits.count ? fits[best] : nil
        return Selection(criterion: criterion, points: evaluated.map(\.point).reversed(), fits: fitsOnAll == .everyLambda ? fits.reversed() : [],
                         chosen: evaluated.count - 1 - best, chosenFit: chosenFit)
    }
}

/// The k folds of one selection, each with its training part's kernel, its held-out rows
/// and its last fit, and the scoring of out-of-fold predictions against the network.
/// Holding every fold at once (rather than one at a time) lets the selector go lambda by
/// lambda and stop early; it costs k restricted kernels of memory.
final class OutOfFoldScorer {
    struct Fold {
        let held: [Int], fit: [Int]
        let kFit: TrainingKernel
        /// The held-out texts' kernel rows against the fit texts [held, fit], or for a
        /// factored kernel their feature rows [held, width] (z = (W F_fit) F_held^T then
        /// costs C x n x width, and the held x fit block is never formed).
        let kHeld: [Float]?, heldRows: [Float]?
        let spectrum: KernelSpectrum?

        /// Out-of-fold logits [held, C] of a fit on this fold's training part.
        func logits(_ g: KernelGLM) -> [Double] {
            if let kHeld { return g.logits(kernelRows: kHeld) }
            guard case .factored(let rows, _, let n, let w) = kFit, let f = heldRows else { preconditionFailure("a fold holds rows or a block") }
            let C = g.classes, m = held.count
            var u = [Float](repeating: 0, count: C * w), z = [Float](repeating: 0, count: m * C)
            Float.gemm(transA: false, transB: false, m: C, n: w, k: n, alpha: 1, a: g.weights.map(Float.init), lda: n, b: rows, ldb: w,
                       beta: 0, c: &u, ldc: w)
            Float.gemm(transA: false, transB: true, m: m, n: C, k: w, alpha: 1, a: f, lda: w, b: u, ldb: w, beta: 0, c: &z, ldc: C)
            return (0..<(m * C)).map { Double(z[$0]) + g.bias[$0 % C] }
        }
    }
    let folds: [Fold]
    let labels: [Int], classes: Int, kernelScale: Double, threads: Int
    let networkOdds: [Double], networkProbabilities: [[Double]], compared: [Int]
    /// Each fold's fit at the last lambda evaluated (the next one's warm start).
    var previous: [KernelGLM] = []
    /// F^T F of a factored kernel over all texts (nil for other kernels).
    let columnGram: [Double]?

    init(selector: LambdaSelector, kernel: TrainingKernel, labels: [Int], networkLogits: [Float], classes C: Int, kernelScale: Double, threads: Int) {
        let n = labels.count
        let fold = selector.foldAssignment(n: n)
        // A factored kernel's spectrum comes from its column Gram F^T F: each fold's is the
        // whole set's minus that of its held-out rows, so the Gram is formed about twice
        // over instead of once per fold, and the whole set's is kept for the final fit.
        var whole: [Double]?
        if case .factored(let f, _, _, let w) = kernel {
            whole = KernelSpectrum.columnGram(f.map(Double.init), rows: n, width: w)
        }
        folds = (0..<selector.folds).map { f in
            let held = (0..<n).filter { fold[$0] == f }, fit = (0..<n).filter { fold[$0] != f }
            let kFit = kernel.restricted(to: fit)
            if let whole, case .factored(let all, _, _, let w) = kernel, case .factored(let rows, _, let m, _) = kFit {
                let heldRows = held.flatMap { i in all[(i * w)..<((i + 1) * w)] }
                let heldGram = KernelSpectrum.columnGram(heldRows.map(Double.init), rows: held.count, width: w)
                return Fold(held: held, fit: fit, kFit: kFit, kHeld: nil, heldRows: heldRows,
                            spectrum: KernelSpectrum(factored: rows, n: m, width: w, columnGram: zip(whole, heldGram).map { $0 - $1 }))
            }
            return Fold(held: held, fit: fit, kFit: kFit, kHeld: kernel.block(rows: held, columns: fit), heldRows: nil,
                        spectrum: KernelSpectrum(kernel: kFit, threads: threads))
        }
        columnGram = whole
        self.labels = labels
        classes = C
        self.kernelScale = kernelScale
        self.threads = threads
        let network = networkLogits.map(Double.init)
        compared = labels.map { Faithfulness.comparedClass(classes: C, label: $0) }
        networkOdds = (0..<n).map { [compared] i in Faithfulness.logOdds(logits: Array(network[(i * C)..<((i + 1) * C)]), classIndex: compared[i]) }
        networkProbabilities = (0..<n).map { Softmax.probabilities(Array(network[($0 * C)..<(($0 + 1) * C)])) }
    }

    /// Fits every fold at `lambda` (warm-started from `previous`) and scores the
    /// out-of-fold predictions.
    func evaluate(_ lambda: Double) -> LambdaSelector.Point {
        let n = labels.count, C = classes
        var outOfFold = [Double](repeating: 0, count: n * C)
        var fits: [KernelGLM] = []
        for (f, fold) in folds.enumerated() {
            let g = KernelGLM.fit(kernel: fold.kFit, labels: fold.fit.map { labels[$0] }, classes: C, lambda: lambda, kernelScale: kernelScale,
                                  start: previous.isEmpty ? nil : previous[f], spectrum: fold.spectrum, threads: threads)
            fits.append(g)
            let z = fold.logits(g)
            for (a, i) in fold.held.enumerated() { for c in 0..<C { outOfFold[i * C + c] = z[a * C + c] } }
        }
        previous = fits
        var labelCE = 0.0, networkCE = 0.0
        var odds = [Double](repeating: 0, count: n)
        for i in 0..<n {
            let row = Array(outOfFold[(i * C)..<((i + 1) * C)])
            let logp = Softmax.logProbabilities(row)
            let q = networkProbabilities[i]
            labelCE -= logp[labels[i]]
            for c in 0..<C { networkCE -= q[c] * logp[c] }
            odds[i] = Faithfulness.logOdds(logits: row, classIndex: compared[i])
        }
        return LambdaSelector.Point(lambda: lambda, networkTau: Faithfulness.kendallTau(odds, networkOdds),
                                    networkCrossEntropy: networkCE / Double(n), labelCrossEntropy: labelCE / Double(n))
    }
}
