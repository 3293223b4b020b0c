import Foundation
import TangentData
import TangentKernels
import TangentModel
import TangentTensor

/// One lambda of the regularization grid: the selector's out-of-fold figures on the
/// training texts, and the tau its surrogate (fitted on all training texts) reaches on
/// the test texts.
public struct GridPoint: Sendable, Codable {
    public let lambda: Double
    /// Out-of-fold, on the training texts (see `LambdaSelector`).
    public let networkTau: Double
    public let networkCrossEntropy: Double
    public let labelCrossEntropy: Double
    /// On the test texts.
    public let tau: Double
    /// Reports made before k-fold selection: the loss on one held-out tenth (their
    /// out-of-fold figures are NaN, and their grid fits used nine tenths of the texts).
    public var heldOutLoss: Double? = nil

    public init(lambda: Double, networkTau: Double, networkCrossEntropy: Double, labelCrossEntropy: Double, tau: Double) {
        self.lambda = lambda
        self.networkTau = networkTau
        self.networkCrossEntropy = networkCrossEntropy
        self.labelCrossEntropy = labelCrossEntropy
        self.tau = tau
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        lambda = try c.decode(Double.self, forKey: .lambda)
        tau = try c.decode(Double.self, forKey: .tau)
        heldOutLoss = try c.decodeIfPresent(Double.self, forKey: .heldOutLoss)
        // An older report has the held-out loss instead of the out-of-fold figures.
        let old = heldOutLoss != nil
        networkTau = old ? .nan : try c.decode(Double.self, forKey: .networkTau)
        networkCrossEntropy = old ? .nan : try c.decode(Double.self, forKey: .networkCrossEntropy)
        labelCrossEntropy = old ? .nan : try c.decode(Double.self, forKey: .labelCrossEntropy)
    }
}

/// Faithfulness of one kernel's surrogate to the network on the test texts.
public struct KernelReport: Sendable, Codable {
    public let kernel: String
    /// The chosen lambda (see `selection`) and the fit's solver state.
    public let lambda: Double
    public let iterations: Int
    public let converged: Bool
    /// Kendall tau-b between surrogate and network log-odds of the compared class
    /// (class 1 for two classes, the true label otherwise), over all test texts.
    public let tau: Double
    /// The paper's variant: tau over probabilities, texts where either probability is
    /// exactly 0 or 1 in float dropped; and how many texts it kept.
    public let tauProbability: Double
    public let tauProbabilityTexts: Int
    /// Test accuracy of the surrogate minus that of the network.
    public let tad: Double
    public let surrogateAccuracy: Double
    /// Share of test texts where surrogate and network predict the same label.
    public let agreement: Double
    public let grid: [GridPoint]
    /// Best tau over the grid: what a rule that looked at the test texts would reach.
    public let bestGridTau: Double
    /// The selector's criterion (`LambdaSelector.Criterion`) and folds, e.g. "network-tau, 5 folds".
    public var selection: String? = nil
    /// Wall time of this kernel (featurization, fits, measurement) and the process's peak
    /// memory so far; with cached features the time excludes featurization.
    public let seconds: Double
    public let peakMemoryMiB: Double
    /// Whether training and test features came from the cache.
    public let featuresCached: Bool
    /// Per test text: the surrogate's and the network's log-odds of the compared class.
    public let surrogateLogOdds: [Double]
    public let networkLogOdds: [Double]
    /// Exact NTKs: each layer group's share of the kernel (NFT-K decomposition).
    public var layerShares: [LayerShare]? = nil
    /// With several models: this kernel's figures on each (the other fields describe the first).
    public var replicates: Replicates? = nil
    /// What a reader must know to interpret the row (TracIn: which checkpoints were summed).
    public var note: String? = nil
}

/// One kernel's tau and TAD on several models of the same data (e.g. training seeds).
public struct Replicates: Sendable, Codable {
    public let models: [String]
    public let tau: [Double]
    public let tad: [Double]
    public var tauMean: Double { Replicates.mean(tau) }
    public var tauSD: Double { Replicates.sd(tau) }
    public var tadMean: Double { Replicates.mean(tad) }
    public var tadSD: Double { Replicates.sd(tad) }
    static func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(v.count) }
    /// Sample standard deviation (0 for a single model).
    static func sd(_ v: [Double]) -> Double {
        guard v.count > 1 else { return 0 }
        let m = mean(v)
        return (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count - 1)).squareRoot()
    }
}

/// One layer group's share of an exact NTK (its part over the whole), three ways.
public struct LayerShare: Sendable, Codable {
    public let group: String
    /// Over all test x train pairs: sum of the group's part / sum of the kernel.
    public let pairs: Double
    /// Over each test text's 10 strongest proponents (for its predicted class), averaged.
    public let topProponents: Double
    /// Over the training texts' self-kernels K(x_i, x_i).
    public let selfKernel: Double
}

/// A comparison of kernels on one model and data set.
public struct ComparisonReport: Sendable, Codable {
    public let model: String
    public let train: String
    public let test: String
    public let trainTexts: Int
    public let testTexts: Int
    public let classes: [String]
    public let projDim: Int
    public let seed: UInt64
    /// The projector of the projected kernels (`ProjectorChoice.tag`); reports written
    /// before sketches existed used Rademacher and do not say so.
    public var projector: String? = nil
    public let networkTestAccuracy: Double
    public var kernels: [KernelReport]
    /// How far projected kernels are from the exact ones, for several K.
    public var projectionError: [ProjectionErrorPoint]? = nil
    /// The linear datamodeling score of each method, from an LDS run on the same training texts.
    public var lds: LDSReport? = nil
}

/// Relative Frobenius error ||K_proj - K_exact|| / ||K_exact|| of a projected kernel's
/// normalized test x train block, on a subset of the texts.
public struct ProjectionErrorPoint: Sendable, Codable {
    public let kernel: String
    public let projDim: Int
    public let relativeError: Double
    public let trainTexts: Int
    public let testTexts: Int
    /// The projector's tag (nil in reports from before sketches: Rademacher).
    public var projector: String? = nil
    /// Projection seeds the error is the root mean square over (nil: one).
    public var seeds: Int? = nil

    /// The kernel with its projector, as plots and tables name the curve.
    public var label: String { kernel + " (" + (projector ?? ProjectorChoice.rademacher.tag) + ")" }
}

/// Fits each kernel's surrogate on the training texts and measures its faithfulness on
/// the test texts (kernels spec: tau over log-odds, the paper's tau, TAD, agreement).
public enum Comparison {
    public static func run(classifier: Classifier, train: [LabeledText], test: [LabeledText], kernels: [SurrogateKernel],
                           projDim: Int, seed: UInt64, projector: ProjectorChoice = .default, cache: URL, modelName: String,
                           trainName: String, testName: String,
                           checkpoints: URL? = nil, ensemble: [Classifier] = [], selector: LambdaSelector = LambdaSelector(),
                           log: (String) -> Void = { _ in }, progress: @escaping (String, Int, Int) -> Void = { _, _, _ in }) throws -> ComparisonReport {
        let C = classifier.labels.count
        let testLabels = try classifier.labels.indices(of: test, source: testName)
        var report: ComparisonReport?
        // Refits even where a surrogate is cached: the report shows the whole grid, so the
        // selector does not stop early (it still extends a best lambda at the strong edge).
        let setup = AttributionSetup(classifier: classifier, train: train, projDim: projDim, seed: seed, projector: projector, cache: cache,
                                     selector: selector.exhaustive, checkpoints: checkpoints, ensemble: ensemble, useSurrogateCache: false)
        let rows = try setup.forEachKernel(kernels, log: log, progress: progress) { run -> KernelReport in
            let k = run.kernel, engine = run.engine!
            // Test kernel rows through the same cache (resumable).
            let m = test.count, n = train.count
            let q = try engine.query(test, source: testName, cached: true, log: log, progress: run.progress("test"))
            let kRows = q.rows
            let netLogits = q.logits.map(Double.init)
            let z = engine.glm.logits(kernelRows: kRows)
            let measured = measure(surrogate: z, network: netLogits, labels: testLabels, classes: C)
            // Test tau of the surrogate at every lambda of the grid (all fitted on all training texts).
            let grid = zip(engine.grid, engine.gridFits).map { point, fit in
                GridPoint(lambda: point.lambda, networkTau: point.networkTau, networkCrossEntropy: point.networkCrossEntropy,
                          labelCrossEntropy: point.labelCrossEntropy,
                          tau: measure(surrogate: fit.logits(kernelRows: kRows), network: netLogits, labels: testLabels, classes: C).tau)
            }
            let networkAccuracy = (0..<m).filter { i in Softmax.argmax(netLogits[(i * C)..<((i + 1) * C)]) == testLabels[i] }.count
            if report == nil {
                report = ComparisonReport(model: modelName, train: trainName, test: testName, trainTexts: n, testTexts: m,
                                          classes: classifier.labels.names, projDim: projDim, seed: seed,
                                          networkTestAccuracy: Double(networkAccuracy) / Double(m), kernels: [])
                report!.projector = projector.tag
            }
            let row = KernelReport(kernel: k.name, lambda: engine.glm.lambda, iterations: engine.glm.iterations, converged: engine.glm.converged,
                                   tau: measured.tau, tauProbability: measured.tauProbability, tauProbabilityTexts: measured.kept,
                                   tad: measured.surrogateAccuracy - report!.networkTestAccuracy, surrogateAccuracy: measured.surrogateAccuracy,
                                   agreement: measured.agreement, grid: grid, bestGridTau: grid.map(\.tau).max() ?? measured.tau,
                                   seconds: run.seconds, peakMemoryMiB: TangentTensor.peakMemoryMiB() ?? .nan, featuresCached: !run.featurized,
                                   surrogateLogOdds: measured.surrogateLogOdds, networkLogOdds: measured.networkLogOdds,
                                   layerShares: q.parts.map { layerShares(parts: $0, rows: kRows, selfParts: engine.trainSelfParts, glm: engine.glm, logits: netLogits, classes: C) })
            log(String(format: "%@: tau %.3f (paper variant %.3f on %ld texts), TAD %+.3f, agreement %.3f, lambda %g, %.0f s",
                       k.name, row.tau, row.tauProbability, row.tauProbabilityTexts, row.tad, row.agreement, row.lambda, row.seconds))
            var noted = row
            noted.note = engine.checkpointSummary
            noted.selection = "\(selector.criterion.rawValue), \(selector.folds) folds"
            return noted
        }
        report!.kernels = rows
        return report!
    }

    /// `run` for training sets whose features do not fit in memory: each kernel's training
    /// features (cached in `cache`) are streamed from disk within `budget` bytes of blocks
    /// (`StreamedAttribution`). lambda's out-of-fold figures come from a seeded sample of
    /// at most `selectionTexts` training texts; every lambda of the grid is then fitted on
    /// all of them, and the test texts are scored in chunks of `chunk`, one pass over the
    /// training features each. Kernels: proj-pntk, proj-trntk, embedding, ck, grad-cos.
    public static func runStreamed(classifier: Classifier, train: [LabeledText], test: [LabeledText], kernels: [SurrogateKernel],
                                   projDim: Int, seed: UInt64, projector: ProjectorChoice = .default, cache: URL, budget: Int,
                                   modelName: String, trainName: String, testName: String, selector: LambdaSelector = LambdaSelector(),
                                   selectionTexts: Int = 4096, chunk: Int = 512, threads: Int = Threads.defaultCount,
                                   log: (String) -> Void = { _ in }, progress: @escaping (String, Int, Int) -> Void = { _, _, _ in }) throws -> ComparisonReport {
        if let k = kernels.first(where: { !StreamedAttribution.supports($0) }) {
            throw AttributionError("kernel \(k.name) cannot be compared with streamed training features; streamed comparisons support proj-pntk, proj-trntk, embedding, ck and grad-cos")
        }
        let C = classifier.labels.count, m = test.count, n = train.count
        let testLabels = try classifier.labels.indices(of: test, source: testName)
        var report: ComparisonReport?
        var rows: [KernelReport] = []
        for k in kernels {
            log("== \(k.name) (streamed)")
            let started = Date()
            var featurized = false
            let file = try StreamedAttribution.cachedTrainingFeatures(
                classifier: classifier, train: train, kernel: k, projDim: projDim, seed: seed, projector: projector, cache: cache,
                threads: threads, log: log) { done, total in
                    featurized = true
                    progress("\(k.name) train", done, total)
                }
            let s = try StreamedAttribution(classifier: classifier, train: train, trainFeatures: file, kernel: k, budget: budget, lambda: nil,
                                            selector: selector.exhaustive, selectionTexts: selectionTexts, fitGrid: true, threads: threads, log: log)
            let fits = [s.glm] + s.gridFits
            var z = [[Double]](repeating: [], count: fits.count)
            var netLogits: [Double] = []
            for start in stride(from: 0, to: m, by: chunk) {
                let r = try s.scan(Array(test[start..<min(m, start + chunk)]), surrogates: fits)
                netLogits += r.networkLogits.flatMap { $0 }
                for g in fits.indices { z[g] += r.surrogateLogits[g].flatMap { $0 } }
                progress("\(k.name) test", min(m, start + chunk), m)
            }
            let measured = measure(surrogate: z[0], network: netLogits, labels: testLabels, classes: C)
            let grid = s.grid.enumerated().map { j, point in
                GridPoint(lambda: point.lambda, networkTau: point.networkTau, networkCrossEntropy: point.networkCrossEntropy,
                          labelCrossEntropy: point.labelCrossEntropy,
                          tau: measure(surrogate: z[j + 1], network: netLogits, labels: testLabels, classes: C).tau)
            }
            if report == nil {
                let correct = (0..<m).filter { i in Softmax.argmax(netLogits[(i * C)..<((i + 1) * C)]) == testLabels[i] }.count
                report = ComparisonReport(model: modelName, train: trainName, test: testName, trainTexts: n, testTexts: m,
                                          classes: classifier.labels.names, projDim: projDim, seed: seed,
                                          networkTestAccuracy: Double(correct) / Double(m), kernels: [])
                report!.projector = projector.tag
            }
            let seconds = Date().timeIntervalSince(started)
            var row = KernelReport(kernel: k.name, lambda: s.glm.lambda, iterations: s.glm.iterations, converged: s.glm.converged,
                                   tau: measured.tau, tauProbability: measured.tauProbability, tauProbabilityTexts: measured.kept,
                                   tad: measured.surrogateAccuracy - report!.networkTestAccuracy, surrogateAccuracy: measured.surrogateAccuracy,
                                   agreement: measured.agreement, grid: grid, bestGridTau: grid.map(\.tau).max() ?? measured.tau,
                                   seconds: seconds, peakMemoryMiB: TangentTensor.peakMemoryMiB() ?? .nan, featuresCached: !featurized,
                                   surrogateLogOdds: measured.surrogateLogOdds, networkLogOdds: measured.networkLogOdds)
            row.selection = "\(selector.criterion.rawValue), \(selector.folds) folds" + (s.selectionTexts < n ? " on \(s.selectionTexts) of \(n) training texts" : "")
            row.note = "training features streamed from disk in blocks of \(s.features.blockRows) texts"
            log(String(format: "%@: tau %.3f (paper variant %.3f on %ld texts), TAD %+.3f, agreement %.3f, lambda %g, %.0f s",
                       k.name, row.tau, row.tauProbability, row.tauProbabilityTexts, row.tad, row.agreement, row.lambda, seconds))
            rows.append(row)
        }
        report!.kernels = rows
        return report!
    }

    /// Reports of the same kernels on several models, merged: the first model's report
    /// with every kernel's tau and TAD on each model attached.
    public static func merge(_ reports: [ComparisonReport]) -> ComparisonReport {
        var first = reports[0]
        guard reports.count > 1 else { return first }
        first.kernels = first.kernels.map { k in
            var k = k
            let rows = reports.compactMap { r in r.kernels.first { $0.kernel == k.kernel } }
            k.replicates = Replicates(models: reports.map(\.model), tau: rows.map(\.tau), tad: rows.map(\.tad))
            return k
        }
        return first
    }

    /// Relative error of `proj-trntk` / `proj-pntk` against exact `trntk` / `pntk-norm` on
    /// the first `trainCount` training and `testCount` test texts, for each K in `dims`
    /// and each projector: the root mean square over `seeds` projection seeds (seed,
    /// seed + 1, ...), since a single draw's error is heavy-tailed.
    public static func projectionError(classifier: Classifier, train: [LabeledText], test: [LabeledText], kernels: [String],
                                       dims: [Int], seed: UInt64, seeds: Int = 1, projectors: [ProjectorChoice] = [.default],
                                       trainCount: Int = 200, testCount: Int = 100,
                                       log: (String) -> Void = { _ in }) throws -> [ProjectionErrorPoint] {
        let tr = Array(train.prefix(trainCount)), te = Array(test.prefix(testCount))
        let n = tr.count, m = te.count
        let computer = try GradientComputer<Float>(model: classifier.model, prefixes: ["all"])
        var out: [ProjectionErrorPoint] = []
        for name in kernels {
            let (exactKind, featureKind): (NTKKind, FeatureKind)
            switch name {
            case "proj-trntk": (exactKind, featureKind) = (.trntk, .trntk)
            case "proj-pntk": (exactKind, featureKind) = (.pntkNorm, .pntk)
            default: continue
            }
            let exact = try ExactKernel.compute(computer, a: try te.map { try classifier.encode($0.text) },
                                                b: try tr.map { try classifier.encode($0.text) }, kind: exactKind).total
            let norm = exact.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            for projector in projectors { for K in dims where projector.nonzeros <= K {
                var squared = 0.0
                for draw in 0..<max(1, seeds) {
                var options = FeaturizeOptions(kind: featureKind)
                options.projDim = K
                options.seed = seed &+ UInt64(draw)
                options.projector = projector
                let featurizer = try Featurizer(classifier: classifier, options: options)
                let a = try featurizer.block(te).features, b = try featurizer.block(tr).features
                var k = Gram.product(a, b, m: m, n: n, width: a.count / m)
                Gram.normalize(&k, rowSelf: Gram.squaredNorms(a, rows: m), columnSelf: Gram.squaredNorms(b, rows: n))
                var err = 0.0
                for i in 0..<m { for j in 0..<n {
                    let d = Double(k[i * n + j]) - Double(exact[i * n + j])
                    err += d * d
                } }
                squared += err / (norm * norm)
                }
                let rms = (squared / Double(max(1, seeds))).squareRoot()
                out.append(ProjectionErrorPoint(kernel: name, projDim: K, relativeError: rms, trainTexts: n, testTexts: m,
                                                projector: projector.tag, seeds: seeds > 1 ? seeds : nil))
                log(String(format: "%@ (%@) at K = %ld: relative error %.4f against the exact kernel (%ld x %ld texts, %ld seeds)",
                           name, projector.tag, K, rms, m, n, max(1, seeds)))
            } }
        }
        return out
    }

    /// NFT-K view: each group's share of the test x train kernel, of the kernel to each
    /// test text's top proponents, and of the training self-kernels.
    static func layerShares(parts: [(group: String, values: [Float])], rows: [Float], selfParts: [(group: String, values: [Float])]?,
                            glm: KernelGLM, logits: [Double], classes C: Int) -> [LayerShare] {
        let n = glm.trainCount, m = rows.count / n
        let total = rows.reduce(0.0) { $0 + Double($1) }
        var topSums = [Double](repeating: 0, count: parts.count)
        var topCount = 0
        for t in 0..<m {
            let c = Softmax.argmax(logits[(t * C)..<((t + 1) * C)])
            let row = Array(rows[(t * n)..<((t + 1) * n)])
            let scores = glm.attributions(kernelRow: row, classIndex: c)
            let top = scores.indices.sorted { scores[$0] > scores[$1] }.prefix(10).filter { scores[$0] > 0 && row[$0] != 0 }
            for i in top {
                for (g, p) in parts.enumerated() { topSums[g] += Double(p.values[t * n + i]) / Double(row[i]) }
                topCount += 1
            }
        }
        let selfTotal = selfParts.map { $0.reduce(0.0) { a, p in a + p.values.reduce(0.0) { $0 + Double($1) } } } ?? 0
        return parts.enumerated().map { g, p in
            let selfShare: Double
            if let sp = selfParts?.first(where: { $0.group == p.group }), selfTotal != 0 {
                selfShare = sp.values.reduce(0.0) { $0 + Double($1) } / selfTotal
            } else { selfShare = .nan }
            return LayerShare(group: p.group, pairs: total == 0 ? .nan : p.values.reduce(0.0) { $0 + Double($1) } / total,
                              topProponents: topCount == 0 ? .nan : topSums[g] / Double(topCount), selfKernel: selfShare)
        }
    }

    /// tau over log-odds, the paper's tau, surrogate accuracy and agreement.
    public static func measure(surrogate z: [Double], network y: [Double], labels: [Int], classes C: Int)
        -> (tau: Double, tauProbability: Double, kept: Int, surrogateAccuracy: Double, agreement: Double,
            surrogateLogOdds: [Double], networkLogOdds: [Double]) {
        let m = labels.count
        var a: [Double] = [], b: [Double] = [], pa: [Double] = [], pb: [Double] = []
        var correct = 0, agree = 0
        for i in 0..<m {
            let zs = Array(z[(i * C)..<((i + 1) * C)]), zn = Array(y[(i * C)..<((i + 1) * C)])
            let c = Faithfulness.comparedClass(classes: C, label: labels[i])
            a.append(Faithfulness.logOdds(logits: zs, classIndex: c))
            b.append(Faithfulness.logOdds(logits: zn, classIndex: c))
            let ps = Float(Faithfulness.probability(logits: zs, classIndex: c)), pn = Float(Faithfulness.probability(logits: zn, classIndex: c))
            if ps > 0 && ps < 1 && pn > 0 && pn < 1 { pa.append(Double(ps)); pb.append(Double(pn)) }
            if Softmax.argmax(zs) == labels[i] { correct += 1 }
            if Softmax.argmax(zs) == Softmax.argmax(zn) { agree += 1 }
        }
        return (Faithfulness.kendallTau(a, b), pa.count > 1 ? Faithfulness.kendallTau(pa, pb) : .nan, pa.count,
                Double(correct) / Double(m), Double(agree) / Double(m), a, b)
    }

}
