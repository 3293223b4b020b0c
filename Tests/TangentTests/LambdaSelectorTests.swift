import Foundation
import TangentAttribution
import TangentData
import TangentEvaluation
import TangentModel
import TangentSurrogate
import TangentTensor
import Testing

@Suite(.singleThreadedBLAS) struct LambdaSelectorTests {
    /// Folds are seeded, cover every text once, and differ in size by at most one.
    @Test func foldsPartitionTheTrainingTexts() {
        let s = LambdaSelector(folds: 4, seed: 7)
        let a = s.foldAssignment(n: 103)
        #expect(a == s.foldAssignment(n: 103))
        #expect(a != LambdaSelector(folds: 4, seed: 8).foldAssignment(n: 103))
        let sizes = (0..<4).map { f in a.filter { $0 == f }.count }
        #expect(sizes.reduce(0, +) == 103 && sizes.max()! - sizes.min()! <= 1)
        // Not contiguous blocks: data files are often sorted by label.
        #expect(Set(a.prefix(10)).count > 1)
    }

    /// Every out-of-fold figure equals one computed here from fits on the other folds, the
    /// grid's surrogates are the fits on all texts, and the chosen lambda ranks best.
    @Test func outOfFoldFiguresMatchADirectComputation() {
        let n = 60
        let C = 2
        let folds = 3
        let p = SurrogateTests.lowRankProblem(n: n, w: 6, seed: 31)
        let kernel = TrainingKernel.matrix(p.k, n: n)
        // A "network" that agrees with the labels but not perfectly.
        let rng = CounterRNG.derive(31, 9)
        let logits = (0..<n).flatMap { i -> [Float] in
            let z = Float(p.labels[i] == 1 ? 1.5 : -1.5) + Float(rng.normal(UInt64(i)))
            return [0, z]
        }
        let grid = [1e-3, 1e-1, 10]
        for criterion in LambdaSelector.Criterion.allCases {
            let selector = LambdaSelector(
                grid: grid, folds: folds, criterion: criterion, seed: 3, stopAfter: nil, extendTo: nil)
            let s = selector.select(kernel: kernel, labels: p.labels, networkLogits: logits, classes: C, threads: 2)
            #expect(s.points.map(\.lambda) == grid && s.fits.map(\.lambda) == grid)
            let fold = selector.foldAssignment(n: n)
            let scale = KernelGLM.kernelScale(kernel.diagonal)
            var oof = [[Double]](repeating: [Double](repeating: 0, count: n * C), count: grid.count)
            for f in 0..<folds {
                let held = (0..<n).filter { fold[$0] == f }
                let fit = (0..<n).filter { fold[$0] != f }
                // The selector builds each fold's spectrum single-threaded (folds run in parallel).
                var previous: KernelGLM?
                for (l, lambda) in grid.enumerated().reversed() {
                    let g = KernelGLM.fit(
                        kernel: kernel.restricted(to: fit), labels: fit.map { p.labels[$0] }, classes: C,
                        lambda: lambda,
                        kernelScale: scale, start: previous,
                        spectrum: KernelSpectrum(kernel: kernel.restricted(to: fit), threads: 1), threads: 2)
                    previous = g
                    let z = g.logits(kernelRows: kernel.block(rows: held, columns: fit))
                    for (a, i) in held.enumerated() { for c in 0..<C { oof[l][i * C + c] = z[a * C + c] } }
                }
            }
            for (l, point) in s.points.enumerated() {
                let ours = (0..<n).map { Softmax.logOdds(Array(oof[l][($0 * C)..<(($0 + 1) * C)]), classIndex: 1) }
                let network = (0..<n).map { Double(logits[$0 * C + 1] - logits[$0 * C]) }
                #expect(abs(point.networkTau - Faithfulness.kendallTau(ours, network)) < 1e-12)
                let labelCE =
                    (0..<n).map { -Softmax.logProbabilities(Array(oof[l][($0 * C)..<(($0 + 1) * C)]))[p.labels[$0]] }
                    .reduce(0, +) / Double(n)
                #expect(abs(point.labelCrossEntropy - labelCE) < 1e-9)
                let networkCE =
                    (0..<n).map { i -> Double in
                        let q = Softmax.probabilities([Double(logits[i * C]), Double(logits[i * C + 1])])
                        let lp = Softmax.logProbabilities(Array(oof[l][(i * C)..<((i + 1) * C)]))
                        return -(q[0] * lp[0] + q[1] * lp[1])
                    }.reduce(0, +) / Double(n)
                #expect(abs(point.networkCrossEntropy - networkCE) < 1e-9)
            }
            let best = s.points.map { $0.merit(criterion) }.max()!
            #expect(s.points[s.chosen].merit(criterion) == best && s.chosenFit?.lambda == s.lambda)
            let direct = KernelGLM.fit(
                kernel: kernel, labels: p.labels, classes: C, lambda: grid[2], kernelScale: scale, threads: 2)
            let worst = zip(direct.logits(kernelRows: p.k), s.fits[2].logits(kernelRows: p.k)).map { abs($0 - $1) }
                .max()!
            #expect(worst < 1e-3, "the grid's fit at lambda 10 vs a direct fit: \(worst)")
        }
    }

    /// Early stopping and the edge extension change which lambdas are fitted, never the
    /// figures of a lambda: every point of a stopped, extended selection equals the
    /// exhaustive grid's at that lambda (each fold's chain of warm starts is the same), the
    /// descent stops only after `stopAfter` losing lambdas, the grid is extended exactly
    /// when its strongest lambda is best, the choice is the best evaluated (ties to the
    /// stronger), and fitting only the chosen lambda on all texts gives the same bits.
    @Test func earlyStopAndEdgeExtensionKeepEachLambdasFigures() {
        let n = 60
        let C = 2
        let p = SurrogateTests.lowRankProblem(n: n, w: 6, seed: 31)
        let kernel = TrainingKernel.matrix(p.k, n: n)
        let rng = CounterRNG.derive(31, 9)
        let logits = (0..<n).flatMap { i -> [Float] in
            [0, Float(p.labels[i] == 1 ? 1.5 : -1.5) + Float(rng.normal(UInt64(i)))]
        }
        var extended = 0
        var stopped = 0
        for grid in [[1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10], [1e-6, 1e-5, 1e-4], [1e-3, 1e-2]] {
            for criterion in LambdaSelector.Criterion.allCases {
                for margin in [0, 0.03] {
                    let full = LambdaSelector(
                        grid: grid, folds: 3, criterion: criterion, seed: 3, stopAfter: nil, extendTo: nil
                    )
                    .select(kernel: kernel, labels: p.labels, networkLogits: logits, classes: C, threads: 2)
                    var lines: [String] = []
                    var rule = LambdaSelector(
                        grid: grid, folds: 3, criterion: criterion, seed: 3, stopAfter: 2, extendTo: 1e4)
                    rule.stopMargin = margin
                    let s = rule.select(
                        kernel: kernel, labels: p.labels, networkLogits: logits, classes: C, fitsOnAll: .chosen,
                        threads: 2,
                        log: { lines.append($0) })
                    let merits = s.points.map { $0.merit(criterion) }
                    // Lambdas cut after a few folds (a clear loss on the texts scored so far) are
                    // logged and are not points; every other grid lambda down to the weakest
                    // point is one.
                    let cut = Set(
                        grid.filter { l in lines.contains { $0.contains(String(format: "%.0e cut after", l)) } })
                    #expect(zip(s.points, s.points.dropFirst()).allSatisfy { $0.lambda < $1.lambda })
                    let onGrid = s.points.filter { grid.contains($0.lambda) }
                    let weakest = (onGrid.map(\.lambda) + cut).min()!
                    #expect(
                        Set(onGrid.map(\.lambda)).union(cut) == Set(grid.filter { $0 >= weakest })
                            && cut.isDisjoint(with: onGrid.map(\.lambda)))
                    // Points stronger than any cut equal the exhaustive figures (the same chains
                    // of warm starts); after a cut, some folds start from an older fit.
                    for point in onGrid where cut.allSatisfy({ point.lambda > $0 }) {
                        let same = full.points.first { $0.lambda == point.lambda }!
                        #expect(
                            point.networkTau == same.networkTau && point.labelCrossEntropy == same.labelCrossEntropy)
                    }
                    if weakest > grid.min()! {
                        stopped += 1
                        #expect(lines.contains { $0.contains("stopped after") })
                    }
                    // Extended exactly when the grid's strongest lambda was the best of the grid.
                    let gridBest = onGrid.indices.max {
                        (onGrid[$0].merit(criterion), $0) < (onGrid[$1].merit(criterion), $1)
                    }!
                    let wasExtended = s.points.count > onGrid.count
                    #expect(wasExtended == (gridBest == onGrid.count - 1), "\(grid) \(criterion)")
                    if wasExtended { extended += 1 }
                    // The choice is the best, ties to the stronger lambda.
                    #expect(merits[s.chosen] == merits.max()! && !merits[(s.chosen + 1)...].contains(merits[s.chosen]))
                    // Fitting only the chosen lambda on all texts gives the bits of the whole chain.
                    let every = rule.select(
                        kernel: kernel, labels: p.labels, networkLogits: logits, classes: C, fitsOnAll: .everyLambda,
                        threads: 2)
                    #expect(
                        every.chosen == s.chosen && every.fits[every.chosen].weights == s.chosenFit?.weights
                            && s.fits.isEmpty)
                }
            }
        }
        // Both behaviours were exercised.
        #expect(extended > 0 && stopped > 0, "extended \(extended), stopped \(stopped)")
    }

    /// The selector never reads test texts: the same training texts with two different test
    /// sets give the same lambdas and the same out-of-fold figures, while the test figures differ.
    @Test func selectorNeverReadsTestTexts() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        let train = Array(all[0..<50]) + Array(all[300..<330])
        let kernels = ["proj-trntk", "embedding"].map { SurrogateKernel.named($0)! }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-sel-\(UUID())")
        defer { try? FileManager.default.removeItem(at: cache) }
        let selector = LambdaSelector(grid: [1e-4, 1e-2, 1], folds: 4, seed: 5)
        var reports: [ComparisonReport] = []
        for test in [Array(all[200..<230]), Array(all[230..<260]) + Array(all[380..<400])] {
            reports.append(
                try Comparison.run(
                    classifier: clf, train: train, test: test, kernels: kernels, projDim: 32, seed: 1, cache: cache,
                    modelName: "tiny", trainName: "train", testName: "test", selector: selector))
        }
        for (a, b) in zip(reports[0].kernels, reports[1].kernels) {
            #expect(a.lambda == b.lambda)
            #expect(a.grid.map(\.networkTau) == b.grid.map(\.networkTau))
            #expect(a.grid.map(\.labelCrossEntropy) == b.grid.map(\.labelCrossEntropy))
            #expect(a.grid.map(\.networkCrossEntropy) == b.grid.map(\.networkCrossEntropy))
            #expect(a.networkLogOdds != b.networkLogOdds)
        }
    }

    /// Too few training texts for the folds is a clear error, not a crash.
    @Test func tooFewTextsForTheFoldsIsAnError() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        let train = Array(all[0..<3]) + Array(all[300..<303])
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-sel-\(UUID())")
        defer { try? FileManager.default.removeItem(at: cache) }
        #expect(throws: DataError.self) {
            _ = try AttributionEngine(
                classifier: clf, train: train, kernel: SurrogateKernel.named("embedding")!, projDim: 16, seed: 0,
                cache: cache)
        }
    }
}

@Suite(.singleThreadedBLAS) struct LayerWeightingTests {
    /// Two "layers": one whose kernel tracks the network, one of pure noise. The fitted
    /// weights turn the noise down, and the out-of-fold cross-entropy does not get worse.
    @Test func weightsTurnDownANoiseLayer() {
        let n = 60
        let C = 2
        let signal = SurrogateTests.lowRankProblem(n: n, w: 4, seed: 41)
        let noise = SurrogateTests.lowRankProblem(n: n, w: 30, scale: 1.5, seed: 42)
        let rng = CounterRNG.derive(41, 3)
        // The network's log-odds follow the signal layer's first coordinate.
        let logits = (0..<n).flatMap { i -> [Float] in [0, 3 * signal.f[i * 4] + Float(0.2 * rng.normal(UInt64(i)))] }
        let selector = LambdaSelector(grid: [1e-2], folds: 3, seed: 1)
        let r = LayerWeighting.fit(
            parts: [signal.k, noise.k], labels: signal.labels, networkLogits: logits, classes: C, lambda: 1e-2,
            selector: selector, threads: 2)
        #expect(r.weights.allSatisfy { $0 >= 0 } && r.weights.max() == 1)
        #expect(r.weights[0] == 1 && r.weights[1] < 0.3, "weights \(r.weights)")
        #expect(r.crossEntropy < r.unweightedCrossEntropy && r.evaluations > 1)
        let k = LayerWeighting.combine([signal.k, noise.k], weights: [1, 0.5])
        #expect(zip(k, zip(signal.k, noise.k)).allSatisfy { abs($0 - ($1.0 + 0.5 * $1.1)) <= 1e-6 * max(1, abs($0)) })
    }

    /// `trntk-layers` through the engine: its rows are the exact trntk's per-layer parts
    /// weighted by the fitted weights, and its parts still add up to its rows.
    @Test func layerWeightedKernelWeighsTheExactParts() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        let train = Array(all[0..<30]) + Array(all[300..<330])
        let test = Array(all[200..<210])
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-layers-\(UUID())")
        defer { try? FileManager.default.removeItem(at: cache) }
        let selector = LambdaSelector(grid: [1e-3, 1e-1], folds: 3, seed: 2)
        let plain = try AttributionEngine(
            classifier: clf, train: train, kernel: SurrogateKernel.named("trntk")!, projDim: 16, seed: 0, cache: cache,
            selector: selector)
        var log: [String] = []
        let layered = try AttributionEngine(
            classifier: clf, train: train, kernel: SurrogateKernel.named("trntk-layers")!, projDim: 16, seed: 0,
            cache: cache, selector: selector, log: { log.append($0) })
        // The parts were kept with trntk's kernel: the exact kernel is not computed again.
        #expect(
            !log.contains { $0.hasPrefix("computing the exact") } && log.contains { $0.hasPrefix("using cached exact") }
        )
        let w = try #require(layered.layerWeights)
        #expect(w.count == 5 && w.allSatisfy { $0 >= 0 } && w.max() == 1)
        let q0 = try plain.query(test, source: "test")
        let q1 = try layered.query(test, source: "test")
        let parts0 = try #require(q0.parts)
        let parts1 = try #require(q1.parts)
        for j in q1.rows.indices {
            let expected = zip(parts0, w).reduce(0.0) { $0 + Double($1.0.values[j]) * $1.1 }
            #expect(abs(Double(q1.rows[j]) - expected) < 1e-5)
            #expect(abs(parts1.reduce(0.0) { $0 + Double($1.values[j]) } - Double(q1.rows[j])) < 1e-5)
        }
        // The weights are cached with the surrogate and reused.
        let again = try AttributionEngine(
            classifier: clf, train: train, kernel: SurrogateKernel.named("trntk-layers")!, projDim: 16, seed: 0,
            cache: cache, selector: selector)
        #expect(again.layerWeights == w && again.layerWeightFit == nil)
    }
}

@Suite struct GridPointFormatTests {
    /// A report written before k-fold selection (held-out loss, no out-of-fold figures)
    /// still loads: its out-of-fold figures are NaN and its held-out loss is kept.
    @Test func olderGridPointsLoad() throws {
        let old = try JSONDecoder().decode(
            GridPoint.self, from: Data(#"{"lambda": 0.01, "heldOutLoss": 0.25, "tau": 0.5}"#.utf8))
        #expect(old.heldOutLoss == 0.25 && old.tau == 0.5 && old.networkTau.isNaN && old.labelCrossEntropy.isNaN)
        let new = GridPoint(lambda: 1, networkTau: 0.3, networkCrossEntropy: 0.2, labelCrossEntropy: 0.1, tau: 0.6)
        let back = try JSONDecoder().decode(GridPoint.self, from: JSONEncoder().encode(new))
        #expect(
            back.heldOutLoss == nil && back.networkTau == 0.3 && back.networkCrossEntropy == 0.2
                && back.labelCrossEntropy == 0.1)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(GridPoint.self, from: Data(#"{"lambda": 1, "tau": 0.5}"#.utf8))
        }
    }
}
