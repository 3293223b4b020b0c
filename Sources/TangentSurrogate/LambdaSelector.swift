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
    /// Stop descending the grid after this many lambdas in a row rank clearly below the
    /// best so far (see `stopMargin`; nil: every lambda, as a report of the whole grid needs).
    public var stopAfter: Int?
    /// How far below the best a lambda's merit must be to count as a loss for `stopAfter`
    /// (in the criterion's units: tau, or nats of cross-entropy). 0.03 changes no choice on
    /// the 36 kernel curves of the shipped reports and skips 70 of their 288 lambdas.
    public var stopMargin: Double = 0.03
    /// When the best lambda is the grid's strongest, try 10x stronger ones up to this bound
    /// while they do not rank lower (nil: the grid only).
    public var extendTo: Double?

    /// The defaults stop after 2 clearly losing lambdas and extend the grid's strong edge up to 1e4.
    public init(
        grid: [Double] = LambdaSelector.defaultGrid, folds: Int = 5, criterion: Criterion = .networkTau,
        seed: UInt64 = 0,
        stopAfter: Int? = 2, extendTo: Double? = 1e4
    ) {
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
            + (stopAfter.map { " stop \($0) below \(stopMargin)" } ?? "") + (extendTo.map { " extend \($0)" } ?? "")
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
    /// row ranked more than `stopMargin` below the best so far: the weak lambdas skipped
    /// are the slow fits. With
    /// `extendTo`, a best lambda at the grid's strong edge is followed upward by factors of
    /// 10 while it does not rank lower, up to that bound. Both are said in `log`.
    public func select(
        kernel: TrainingKernel, labels: [Int], networkLogits: [Float], classes C: Int,
        fitsOnAll: FitsOnAll = .everyLambda,
        threads: Int = Threads.cores, log: (String) -> Void = { _ in }
    ) -> Selection {
        let n = labels.count
        precondition(kernel.n == n && networkLogits.count == n * C, "one kernel row and C logits per training text")
        precondition(n >= 2 * folds, "cross-validation needs at least two texts per fold")
        // lambda is relative to the whole kernel's scale, also for the fits on part of it.
        let kernelScale = KernelGLM.kernelScale(kernel.diagonal)
        let scorer = OutOfFoldScorer(
            selector: self, kernel: kernel, labels: labels, networkLogits: networkLogits, classes: C,
            kernelScale: kernelScale, threads: threads)
        let descending = grid.sorted(by: >)
        var (evaluated, best, atStrongest) = descend(descending, scorer: scorer, log: log)
        if best == 0, let bound = extendTo, !atStrongest.isEmpty {
            best = extend(
                &evaluated, from: descending[0], to: bound, scorer: scorer, atStrongest: atStrongest, log: log)
        }
        // The surrogate on all training texts: strongest evaluated lambda first, each fit
        // warm-started from the previous one; only as far down as needed.
        let order = evaluated.map(\.lambda)
        let last = fitsOnAll == .everyLambda ? order.count - 1 : (fitsOnAll == .chosen ? best : -1)
        let fits = LambdaSelector.fitAll(
            Array(order.prefix(last + 1)), kernel: kernel, labels: labels, classes: C, kernelScale: kernelScale,
            columnGram: scorer.columnGram, threads: threads)
        for (l, e) in evaluated.enumerated() {
            let p = e.point
            let fit =
                l < fits.count
                ? String(
                    format: "; fit on all: %ld iterations%@", fits[l].iterations,
                    fits[l].converged ? "" : ", not converged") : ""
            log(
                String(
                    format: "lambda %.0e: out-of-fold tau %.3f, network CE %.4f, label CE %.4f%@",
                    p.lambda, p.networkTau, p.networkCrossEntropy, p.labelCrossEntropy, fit))
        }
        let chosenFit = best < fits.count ? fits[best] : nil
        return Selection(
            criterion: criterion, points: evaluated.map(\.point).reversed(),
            fits: fitsOnAll == .everyLambda ? fits.reversed() : [],
            chosen: evaluated.count - 1 - best, chosenFit: chosenFit)
    }
}

extension LambdaSelector {
    /// The descent from strong to weak lambda over the folds, stopping early or cutting a
    /// clearly losing lambda as configured: the lambdas evaluated on every fold (strong
    /// first), the best one's index, and the folds' fits at the strongest lambda.
    func descend(_ descending: [Double], scorer: OutOfFoldScorer, log: (String) -> Void)
        -> (evaluated: [(lambda: Double, point: Point)], best: Int, atStrongest: [KernelGLM])
    {
        var evaluated: [(lambda: Double, point: Point)] = []
        var best = 0
        var declines = 0
        var bestOutOfFold: [Double] = []
        var atStrongest: [KernelGLM] = []
        for (l, lambda) in descending.enumerated() {
            let t0 = Date()
            // Past the strongest lambda, a clearly losing one may be cut after a few folds
            // (not for a report of the whole grid).
            let e = scorer.evaluate(
                lambda, cut: stopAfter != nil && l > 0 ? (bestOutOfFold, criterion, stopMargin) : nil)
            let seconds = Date().timeIntervalSince(t0)
            let iterations = scorer.previous.prefix(e.foldsFitted).map(\.iterations).max() ?? 0
            if l == 0 { atStrongest = scorer.previous }
            if let point = e.point {
                log(
                    String(
                        format:
                            "lambda selection: %.0e on %ld folds in %.1f s (at most %ld iterations): out-of-fold tau %.3f",
                        lambda, folds,
                        seconds, iterations, point.networkTau))
                evaluated.append((lambda, point))
                // Ties go to the stronger regularization: it is the simpler surrogate.
                if l > 0, point.merit(criterion) > evaluated[best].point.merit(criterion) { best = evaluated.count - 1 }
                if best == evaluated.count - 1 { bestOutOfFold = e.outOfFold }
                // Only a clear loss counts: some kernels' curves dip a little and rise again
                // at weak lambdas (embedding and TracIn on the shipped sets).
                declines =
                    point.merit(criterion) < evaluated[best].point.merit(criterion) - stopMargin ? declines + 1 : 0
            } else if let p = e.partial {
                // Cut: a clear loss on the texts scored so far; not among the points.
                log(
                    String(
                        format:
                            "lambda selection: %.0e cut after %ld of %ld folds in %.1f s: on their %ld held-out texts its merit is %.3f against the best lambda's %.3f",
                        lambda, e.foldsFitted, folds, seconds, p.texts, p.merit, p.bestMerit))
                declines += 1
            }
            if let stop = stopAfter, declines >= stop, l + 1 < descending.count {
                log(
                    "lambda selection: stopped after lambda \(lambda): \(declines) lambdas in a row more than \(stopMargin) below the best (\(evaluated[best].lambda)); "
                        + "\(descending[(l + 1)...].map { String(format: "%.0e", $0) }.joined(separator: ", ")) not fitted"
                )
                break
            }
        }
        return (evaluated, best, atStrongest)
    }

    /// The best lambda is the strongest tried: the criterion may still rise beyond the
    /// grid, so lambda grows by factors of 10 from `strongest` while it does not rank lower,
    /// up to `bound`. Returns the best index again (ties to the stronger).
    func extend(
        _ evaluated: inout [(lambda: Double, point: Point)], from strongest: Double, to bound: Double,
        scorer: OutOfFoldScorer,
        atStrongest: [KernelGLM], log: (String) -> Void
    ) -> Int {
        scorer.previous = atStrongest
        var lambda = strongest * 10
        while lambda <= bound * (1 + 1e-9) {
            let point = scorer.evaluate(lambda).point!
            evaluated.insert((lambda, point), at: 0)
            let improves = point.merit(criterion) >= evaluated[1].point.merit(criterion)
            log(
                String(
                    format: "lambda selection: the best lambda is the strongest tried; extended to %.0e: %@", lambda,
                    improves ? "no worse, continuing" : "worse, stopping"))
            guard improves else { break }
            lambda *= 10
        }
        var best = 0
        for l in evaluated.indices where evaluated[l].point.merit(criterion) > evaluated[best].point.merit(criterion) {
            best = l
        }
        if best == 0 && lambda > bound * (1 + 1e-9) {
            log(String(format: "lambda selection: still rising at the bound %.0e of the extension", bound))
        }
        return best
    }

    /// The surrogate on all training texts at each of `lambdas` (strong to weak), each fit
    /// warm-started from the previous one and preconditioned by the kernel's spectrum.
    static func fitAll(
        _ lambdas: [Double], kernel: TrainingKernel, labels: [Int], classes C: Int, kernelScale: Double,
        columnGram: [Double]?, threads: Int
    ) -> [KernelGLM] {
        guard !lambdas.isEmpty else { return [] }
        let spectrum: KernelSpectrum?
        if let g = columnGram, case .factored(let f, _, let n, let w) = kernel {
            spectrum = KernelSpectrum(factored: f, n: n, width: w, columnGram: g)
        } else {
            spectrum = KernelSpectrum(kernel: kernel, threads: threads)
        }
        var fits: [KernelGLM] = []
        var previous: KernelGLM?
        for lambda in lambdas {
            let g = KernelGLM.fit(
                kernel: kernel, labels: labels, classes: C, lambda: lambda, kernelScale: kernelScale,
                start: previous, spectrum: spectrum, threads: threads)
            previous = g
            fits.append(g)
        }
        return fits
    }
}

/// The k folds of one selection, each with its training part's kernel, its held-out rows
/// and its last fit, and the scoring of out-of-fold predictions against the network.
/// Holding every fold at once (rather than one at a time) lets the selector go lambda by
/// lambda and stop early; it costs k restricted kernels of memory.
package final class OutOfFoldScorer {
    package struct Fold {
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
            guard case .factored(let rows, _, let n, let w) = kFit, let f = heldRows else {
                preconditionFailure("a fold holds rows or a block")
            }
            let C = g.classes
            let m = held.count
            var u = [Float](repeating: 0, count: C * w)
            var z = [Float](repeating: 0, count: m * C)
            Float.gemm(
                transA: false, transB: false, m: C, n: w, k: n, alpha: 1, a: g.weights.map(Float.init), lda: n, b: rows,
                ldb: w,
                beta: 0, c: &u, ldc: w)
            Float.gemm(
                transA: false, transB: true, m: m, n: C, k: w, alpha: 1, a: f, lda: w, b: u, ldb: w, beta: 0, c: &z,
                ldc: C)
            return (0..<(m * C)).map { Double(z[$0]) + g.bias[$0 % C] }
        }
    }
    package let folds: [Fold]
    package let labels: [Int], classes: Int, kernelScale: Double, threads: Int
    package let networkOdds: [Double], networkProbabilities: [[Double]], compared: [Int]
    /// Each fold's fit at the last lambda evaluated (the next one's warm start).
    package var previous: [KernelGLM] = []
    /// F^T F of a factored kernel over all texts (nil for other kernels).
    package let columnGram: [Double]?

    package init(
        selector: LambdaSelector, kernel: TrainingKernel, labels: [Int], networkLogits: [Float], classes C: Int,
        kernelScale: Double, threads: Int
    ) {
        let n = labels.count
        let fold = selector.foldAssignment(n: n)
        // A factored kernel's spectrum comes from its column Gram F^T F: each fold's is the
        // whole set's minus that of its held-out rows, so the Gram is formed about twice
        // over instead of once per fold, and the whole set's is kept for the final fit.
        var whole: [Double]?
        if case .factored(let f, _, _, let w) = kernel {
            // In two fixed halves of rows, one per core when there are two: the sum's bits
            // do not depend on the thread count.
            let halves = splitRange(n, parts: 2)
            var parts = [[Double]](repeating: [], count: halves.count)
            parts.withUnsafeMutableBufferPointer { out in
                parallelFor(threads >= 2 ? halves.count : 1) { t in
                    for h in (threads >= 2 ? t..<(t + 1) : 0..<halves.count) {
                        let r = halves[h]
                        out[h] = KernelSpectrum.columnGram(
                            f[(r.lowerBound * w)..<(r.upperBound * w)].map(Double.init), rows: r.count, width: w)
                    }
                }
            }
            whole = parts.count == 2 ? zip(parts[0], parts[1]).map { $0 + $1 } : parts[0]
        }
        // The folds are independent: built in parallel (each with single-threaded work inside).
        let k = selector.folds
        var built = [Fold?](repeating: nil, count: k)
        built.withUnsafeMutableBufferPointer { out in
            parallelFor(min(threads, k)) { t in
                for f in stride(from: t, to: k, by: min(threads, k)) {
                    out[f] = OutOfFoldScorer.fold(
                        f, of: fold, kernel: kernel, columnGram: whole, threads: threads >= k ? 1 : max(1, threads / k))
                }
            }
        }
        folds = built.map { $0! }
        columnGram = whole
        self.labels = labels
        classes = C
        self.kernelScale = kernelScale
        self.threads = threads
        let network = networkLogits.map(Double.init)
        compared = labels.map { Faithfulness.comparedClass(classes: C, label: $0) }
        networkOdds = (0..<n).map { [compared] i in
            Faithfulness.logOdds(logits: Array(network[(i * C)..<((i + 1) * C)]), classIndex: compared[i])
        }
        networkProbabilities = (0..<n).map { Softmax.probabilities(Array(network[($0 * C)..<(($0 + 1) * C)])) }
    }

    /// Fold `f`: its texts, its training part's kernel and spectrum, and its held-out rows.
    package static func fold(
        _ f: Int, of assignment: [Int], kernel: TrainingKernel, columnGram whole: [Double]?, threads: Int
    )
        -> Fold
    {
        let n = assignment.count
        let held = (0..<n).filter { assignment[$0] == f }
        let fit = (0..<n).filter { assignment[$0] != f }
        let kFit = kernel.restricted(to: fit)
        if let whole, case .factored(let all, _, _, let w) = kernel, case .factored(let rows, _, let m, _) = kFit {
            let heldRows = held.flatMap { i in all[(i * w)..<((i + 1) * w)] }
            let heldGram = KernelSpectrum.columnGram(heldRows.map(Double.init), rows: held.count, width: w)
            return Fold(
                held: held, fit: fit, kFit: kFit, kHeld: nil, heldRows: heldRows,
                spectrum: KernelSpectrum(
                    factored: rows, n: m, width: w, columnGram: zip(whole, heldGram).map { $0 - $1 }))
        }
        return Fold(
            held: held, fit: fit, kFit: kFit, kHeld: kernel.block(rows: held, columns: fit), heldRows: nil,
            spectrum: KernelSpectrum(kernel: kFit, threads: threads))
    }

    /// A lambda's out-of-fold logits [n, C] and its figures over all texts, or nil figures
    /// when it was cut after `foldsFitted` folds (see `evaluate`).
    package struct Evaluation {
        package let point: LambdaSelector.Point?
        package let outOfFold: [Double]
        package let foldsFitted: Int
        package let partial: (merit: Double, bestMerit: Double, texts: Int)?
    }

    /// Fits the folds at `lambda` (each warm-started from its fit at the last lambda) and
    /// scores the out-of-fold predictions. With `cut`, once at least two folds are fitted
    /// and the held-out texts so far rank this lambda more than `margin` below the best
    /// lambda's predictions of the same texts, the other folds are skipped: a weak lambda
    /// that is already losing costs a fraction of its fits.
    package func evaluate(
        _ lambda: Double, cut: (best: [Double], criterion: LambdaSelector.Criterion, margin: Double)? = nil
    )
        -> Evaluation
    {
        let n = labels.count
        let C = classes
        var outOfFold = [Double](repeating: 0, count: n * C)
        var scored: [Int] = []
        for (f, fold) in folds.enumerated() {
            let g = KernelGLM.fit(
                kernel: fold.kFit, labels: fold.fit.map { labels[$0] }, classes: C, lambda: lambda,
                kernelScale: kernelScale,
                start: previous.count > f ? previous[f] : nil, spectrum: fold.spectrum, threads: threads)
            if previous.count > f { previous[f] = g } else { previous.append(g) }
            let z = fold.logits(g)
            for (a, i) in fold.held.enumerated() { for c in 0..<C { outOfFold[i * C + c] = z[a * C + c] } }
            scored += fold.held
            if let cut, f >= 1, f + 1 < folds.count {
                let merit = score(outOfFold, texts: scored, lambda: lambda).merit(cut.criterion)
                let bestMerit = score(cut.best, texts: scored, lambda: lambda).merit(cut.criterion)
                if merit < bestMerit - cut.margin {
                    return Evaluation(
                        point: nil, outOfFold: outOfFold, foldsFitted: f + 1, partial: (merit, bestMerit, scored.count))
                }
            }
        }
        return Evaluation(
            point: score(outOfFold, texts: Array(0..<n), lambda: lambda), outOfFold: outOfFold,
            foldsFitted: folds.count, partial: nil)
    }

    /// The out-of-fold figures over `texts`.
    package func score(_ outOfFold: [Double], texts: [Int], lambda: Double) -> LambdaSelector.Point {
        let C = classes
        let m = texts.count
        var labelCE = 0.0
        var networkCE = 0.0
        var odds = [Double](repeating: 0, count: m)
        var reference = [Double](repeating: 0, count: m)
        for (a, i) in texts.enumerated() {
            let row = Array(outOfFold[(i * C)..<((i + 1) * C)])
            let logp = Softmax.logProbabilities(row)
            let q = networkProbabilities[i]
            labelCE -= logp[labels[i]]
            for c in 0..<C { networkCE -= q[c] * logp[c] }
            odds[a] = Faithfulness.logOdds(logits: row, classIndex: compared[i])
            reference[a] = networkOdds[i]
        }
        return LambdaSelector.Point(
            lambda: lambda, networkTau: Faithfulness.kendallTau(odds, reference),
            networkCrossEntropy: networkCE / Double(m), labelCrossEntropy: labelCE / Double(m))
    }
}
