import Foundation
import TangentAttribution
import TangentData
import TangentFeatures
import TangentModel
import TangentSurrogate
import TangentTensor

/// Fits each kernel's surrogate on the training texts and measures its faithfulness on
/// the test texts (kernels spec: tau over log-odds, the paper's tau, TAD, agreement).
public enum Comparison {
    /// Where each kernel's training side lives while its surrogate is fitted and scored.
    public enum TrainingStorage: Sendable, Equatable {
        /// The train x train kernel in memory: every kernel, with TracIn's checkpoints and
        /// TRAK's ensemble.
        case memory
        /// Training features that do not fit in memory, streamed from disk (cached in the
        /// run's cache) within `budget` bytes of blocks (`StreamedAttribution`). lambda's
        /// out-of-fold figures come from a seeded sample of at most `selectionTexts`
        /// training texts; every lambda of the grid is then fitted on all of them, and the
        /// test texts are scored in chunks of `chunk`, one pass over the training features
        /// each. Kernels: proj-pntk, proj-trntk, embedding, ck, grad-cos.
        case streamed(budget: Int, selectionTexts: Int = 4096, chunk: Int = 512)
    }

    /// One comparison loop for both storages: each kernel's surrogate (chosen lambda and
    /// every lambda of the grid, fitted on all training texts) against the network on the
    /// test texts. `checkpoints` and `ensemble` reach only the kernels that use them
    /// (TracIn, TRAK), which streamed storage refuses.
    public static func run(
        classifier: Classifier, train: [LabeledText], test: [LabeledText], kernels: [SurrogateKernel],
        projDim: Int, seed: UInt64, projector: ProjectorChoice = .default, cache: URL, modelName: String,
        trainName: String, testName: String, storage: TrainingStorage = .memory,
        checkpoints: URL? = nil, ensemble: [Classifier] = [], selector: LambdaSelector = LambdaSelector(),
        threads: Int = Threads.cores,
        log: (String) -> Void = { _ in }, progress: @escaping (String, Int, Int) -> Void = { _, _, _ in }
    ) throws -> ComparisonReport {
        if storage != .memory, let k = kernels.first(where: { !StreamedAttribution.supports($0) }) {
            throw AttributionError(
                "kernel \(k.name) cannot be compared with streamed training features; streamed comparisons support proj-pntk, proj-trntk, embedding, ck and grad-cos"
            )
        }
        var builder = try ReportBuilder(
            classifier: classifier, trainCount: train.count, test: test, projDim: projDim, seed: seed,
            projector: projector,
            modelName: modelName, trainName: trainName, testName: testName)
        // Refits even where a surrogate is cached: the report shows the whole grid, so the
        // selector does not stop early (it still extends a best lambda at the strong edge).
        let setup = AttributionSetup(
            classifier: classifier, train: train, projDim: projDim, seed: seed, projector: projector, cache: cache,
            selector: selector.exhaustive, threads: threads, checkpoints: checkpoints, ensemble: ensemble,
            useSurrogateCache: false)
        for k in kernels {
            let o: KernelOutcome
            switch storage {
            case .memory:
                o = try inMemory(k, setup: setup, test: test, testName: testName, log: log, progress: progress)
            case .streamed(let budget, let selectionTexts, let chunk):
                o = try streamed(
                    k, setup: setup, test: test, budget: budget, selectionTexts: selectionTexts, chunk: chunk,
                    log: log, progress: progress)
            }
            var row = builder.add(
                kernel: k.name, glm: o.glm, surrogateLogits: o.surrogateLogits, grid: o.grid,
                gridLogits: o.gridLogits, networkLogits: o.networkLogits, seconds: o.seconds,
                featuresCached: !o.featurized, log: log)
            row.layerShares = o.layerShares
            row.note = o.note
            row.selection =
                "\(selector.criterion.rawValue), \(selector.folds) folds"
                + (o.selectionTexts < train.count ? " on \(o.selectionTexts) of \(train.count) training texts" : "")
            builder.rows.append(row)
        }
        return try builder.report()
    }

    /// One kernel's surrogate on the test texts, from either storage.
    struct KernelOutcome {
        let glm: KernelGLM
        /// Logits row-major [texts, classes]: the chosen fit's, each grid fit's, the network's.
        let surrogateLogits: [Double]
        let grid: [LambdaSelector.Point]
        let gridLogits: [[Double]]
        let networkLogits: [Double]
        let seconds: Double
        let featurized: Bool
        let selectionTexts: Int
        var layerShares: [LayerShare]? = nil
        var note: String? = nil
    }

    /// The kernel's training side in memory (its exact per-layer shares included).
    static func inMemory(
        _ k: SurrogateKernel, setup: AttributionSetup, test: [LabeledText], testName: String,
        log: (String) -> Void, progress: @escaping (String, Int, Int) -> Void
    ) throws -> KernelOutcome {
        try setup.forEachKernel([k], log: log, progress: progress) { run in
            let engine = run.engine
            // Test kernel rows through the same cache (resumable).
            let q = try engine.query(test, source: testName, cached: true, log: log, progress: run.progress("test"))
            let netLogits = q.logits.map(Double.init)
            var o = KernelOutcome(
                glm: engine.glm, surrogateLogits: engine.glm.logits(kernelRows: q.rows), grid: engine.grid,
                gridLogits: engine.gridFits.map { $0.logits(kernelRows: q.rows) }, networkLogits: netLogits,
                seconds: run.seconds, featurized: run.featurized, selectionTexts: setup.train.count)
            o.layerShares = q.parts.map {
                layerShares(
                    parts: $0, rows: q.rows, selfParts: engine.trainSelfParts, glm: engine.glm, logits: netLogits,
                    classes: setup.classifier.labels.count)
            }
            o.note = engine.checkpointSummary
            return o
        }[0]
    }

    /// The kernel's training features streamed from disk: the chosen fit and every lambda
    /// of the grid scored in one pass per chunk of test texts.
    static func streamed(
        _ k: SurrogateKernel, setup: AttributionSetup, test: [LabeledText], budget: Int, selectionTexts: Int,
        chunk: Int, log: (String) -> Void, progress: @escaping (String, Int, Int) -> Void
    ) throws -> KernelOutcome {
        log("== \(k.name) (streamed)")
        let started = Date()
        var featurized = false
        let file = try StreamedAttribution.cachedTrainingFeatures(
            classifier: setup.classifier, train: setup.train, kernel: k, projDim: setup.projDim, seed: setup.seed,
            projector: setup.projector, cache: setup.cache.directory, threads: setup.threads, log: log
        ) { done, total in
            featurized = true
            progress("\(k.name) train", done, total)
        }
        let s = try StreamedAttribution(
            classifier: setup.classifier, train: setup.train, trainFeatures: file, kernel: k, budget: budget,
            lambda: nil, selector: setup.selector, selectionTexts: selectionTexts, fitGrid: true,
            threads: setup.threads, log: log)
        let fits = [s.glm] + s.gridFits
        let m = test.count
        var z = [[Double]](repeating: [], count: fits.count)
        var netLogits: [Double] = []
        for start in stride(from: 0, to: m, by: chunk) {
            let r = try s.logits(Array(test[start..<min(m, start + chunk)]), surrogates: fits)
            netLogits += r.network.flatMap { $0 }
            for g in fits.indices { z[g] += r.surrogates[g].flatMap { $0 } }
            progress("\(k.name) test", min(m, start + chunk), m)
        }
        var o = KernelOutcome(
            glm: s.glm, surrogateLogits: z[0], grid: s.grid, gridLogits: Array(z.dropFirst()),
            networkLogits: netLogits, seconds: Date().timeIntervalSince(started), featurized: featurized,
            selectionTexts: s.selectionTexts)
        o.note = "training features streamed from disk in blocks of \(s.features.blockRows) texts"
        return o
    }

    /// Builds a report's rows, in memory or streamed alike: each kernel's surrogate logits
    /// (chosen lambda and every grid point) against the network's on the test texts.
    struct ReportBuilder {
        let testLabels: [Int]
        let classes: Int
        let trainCount: Int
        let header:
            (model: String, train: String, test: String, names: [String], projDim: Int, seed: UInt64, projector: String)
        /// The network's test accuracy, from the first kernel's network logits (every
        /// kernel's are the same network's), against which each surrogate's TAD is taken.
        var networkAccuracy: Double?
        var rows: [KernelReport] = []

        init(
            classifier: Classifier, trainCount: Int, test: [LabeledText], projDim: Int, seed: UInt64,
            projector: ProjectorChoice,
            modelName: String, trainName: String, testName: String
        ) throws {
            testLabels = try classifier.labels.indices(of: test, source: testName)
            classes = classifier.labels.count
            self.trainCount = trainCount
            header = (modelName, trainName, testName, classifier.labels.names, projDim, seed, projector.tag)
        }

        /// The row of one kernel (logits row-major, texts x classes), logged.
        mutating func add(
            kernel: String, glm: KernelGLM, surrogateLogits z: [Double], grid: [LambdaSelector.Point],
            gridLogits: [[Double]],
            networkLogits y: [Double], seconds: Double, featuresCached: Bool, log: (String) -> Void
        ) -> KernelReport {
            let C = classes
            let m = testLabels.count
            let measured = measure(surrogate: z, network: y, labels: testLabels, classes: C)
            let points = zip(grid, gridLogits).map { point, logits in
                GridPoint(
                    lambda: point.lambda, networkTau: point.networkTau, networkCrossEntropy: point.networkCrossEntropy,
                    labelCrossEntropy: point.labelCrossEntropy,
                    tau: measure(surrogate: logits, network: y, labels: testLabels, classes: C).tau)
            }
            let accuracy =
                networkAccuracy
                ?? {
                    let correct = (0..<m).filter { i in Softmax.argmax(y[(i * C)..<((i + 1) * C)]) == testLabels[i] }
                        .count
                    return Double(correct) / Double(m)
                }()
            networkAccuracy = accuracy
            let row = KernelReport(
                kernel: kernel, lambda: glm.lambda, iterations: glm.iterations, converged: glm.converged,
                tau: measured.tau, tauProbability: measured.tauProbability, tauProbabilityTexts: measured.kept,
                tad: measured.surrogateAccuracy - accuracy, surrogateAccuracy: measured.surrogateAccuracy,
                agreement: measured.agreement, grid: points, bestGridTau: points.map(\.tau).max() ?? measured.tau,
                seconds: seconds, peakMemoryMiB: TangentTensor.peakMemoryMiB() ?? .nan, featuresCached: featuresCached,
                surrogateLogOdds: measured.surrogateLogOdds, networkLogOdds: measured.networkLogOdds)
            log(
                String(
                    format:
                        "%@: tau %.3f (paper variant %.3f on %ld texts), TAD %+.3f, agreement %.3f, lambda %g, %.0f s",
                    kernel, row.tau, row.tauProbability, row.tauProbabilityTexts, row.tad, row.agreement, row.lambda,
                    seconds))
            return row
        }

        /// The report of the rows added; throws when there are none.
        func report() throws -> ComparisonReport {
            guard let networkAccuracy, !rows.isEmpty else {
                throw AttributionError("a comparison needs at least one kernel")
            }
            var r = ComparisonReport(
                model: header.model, train: header.train, test: header.test, trainTexts: trainCount,
                testTexts: testLabels.count,
                classes: header.names, projDim: header.projDim, seed: header.seed,
                networkTestAccuracy: networkAccuracy, kernels: rows)
            r.projector = header.projector
            return r
        }
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
    public static func projectionError(
        classifier: Classifier, train: [LabeledText], test: [LabeledText], kernels: [SurrogateKernel],
        dims: [Int], seed: UInt64, seeds: Int = 1, projectors: [ProjectorChoice] = [.default],
        trainCount: Int = 200, testCount: Int = 100,
        log: (String) -> Void = { _ in }
    ) throws -> [ProjectionErrorPoint] {
        let tr = Array(train.prefix(trainCount))
        let te = Array(test.prefix(testCount))
        let n = tr.count
        let m = te.count
        let computer = try GradientComputer<Float>(model: classifier.model, prefixes: ["all"])
        var out: [ProjectionErrorPoint] = []
        for kernel in kernels where kernel == .projTrntk || kernel == .projPntk {
            let name = kernel.name
            // The projected kernel's exact counterpart, and the features it projects.
            guard let exactKind = kernel.layerKind else { continue }
            let featureKind = kernel.features
            let exact = try ExactKernel.compute(
                computer, a: try te.map { try classifier.encode($0.text) },
                b: try tr.map { try classifier.encode($0.text) }, kind: exactKind
            ).total
            let norm = exact.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            for projector in projectors {
                for K in dims where projector.nonzeros <= K {
                    var squared = 0.0
                    for draw in 0..<max(1, seeds) {
                        var options = FeaturizeOptions(kind: featureKind)
                        options.projDim = K
                        options.seed = seed &+ UInt64(draw)
                        options.projector = projector
                        let featurizer = try Featurizer(classifier: classifier, options: options)
                        let a = try featurizer.block(te).features
                        let b = try featurizer.block(tr).features
                        var k = Gram.product(a, b, m: m, n: n, width: a.count / m)
                        Gram.normalize(
                            &k, rowSelf: Gram.squaredNorms(a, rows: m), columnSelf: Gram.squaredNorms(b, rows: n))
                        var err = 0.0
                        for i in 0..<m {
                            for j in 0..<n {
                                let d = Double(k[i * n + j]) - Double(exact[i * n + j])
                                err += d * d
                            }
                        }
                        squared += err / (norm * norm)
                    }
                    let rms = (squared / Double(max(1, seeds))).squareRoot()
                    out.append(
                        ProjectionErrorPoint(
                            kernel: name, projDim: K, relativeError: rms, trainTexts: n, testTexts: m,
                            projector: projector.tag, seeds: seeds > 1 ? seeds : nil))
                    log(
                        String(
                            format:
                                "%@ (%@) at K = %ld: relative error %.4f against the exact kernel (%ld x %ld texts, %ld seeds)",
                            name, projector.tag, K, rms, m, n, max(1, seeds)))
                }
            }
        }
        return out
    }

    /// NFT-K view: each group's share of the test x train kernel, of the kernel to each
    /// test text's top proponents, and of the training self-kernels.
    static func layerShares(
        parts: [(group: String, values: [Float])], rows: [Float], selfParts: [(group: String, values: [Float])]?,
        glm: KernelGLM, logits: [Double], classes C: Int
    ) -> [LayerShare] {
        let n = glm.trainCount
        let m = rows.count / n
        let total = rows.reduce(0.0) { $0 + Double($1) }
        var topSums = [Double](repeating: 0, count: parts.count)
        var topCount = 0
        for t in 0..<m {
            let c = Softmax.argmax(logits[(t * C)..<((t + 1) * C)])
            let row = Array(rows[(t * n)..<((t + 1) * n)])
            let scores = glm.attributions(kernelRow: row, classIndex: c)
            let top = scores.indices.sorted { scores[$0] > scores[$1] }.prefix(10).filter {
                scores[$0] > 0 && row[$0] != 0
            }
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
            } else {
                selfShare = .nan
            }
            return LayerShare(
                group: p.group, pairs: total == 0 ? .nan : p.values.reduce(0.0) { $0 + Double($1) } / total,
                topProponents: topCount == 0 ? .nan : topSums[g] / Double(topCount), selfKernel: selfShare)
        }
    }

    /// tau over log-odds, the paper's tau, surrogate accuracy and agreement.
    public static func measure(surrogate z: [Double], network y: [Double], labels: [Int], classes C: Int)
        -> (
            tau: Double, tauProbability: Double, kept: Int, surrogateAccuracy: Double, agreement: Double,
            surrogateLogOdds: [Double], networkLogOdds: [Double]
        )
    {
        let m = labels.count
        var a: [Double] = []
        var b: [Double] = []
        var pa: [Double] = []
        var pb: [Double] = []
        var correct = 0
        var agree = 0
        for i in 0..<m {
            let zs = Array(z[(i * C)..<((i + 1) * C)])
            let zn = Array(y[(i * C)..<((i + 1) * C)])
            let c = Faithfulness.comparedClass(classes: C, label: labels[i])
            a.append(Faithfulness.logOdds(logits: zs, classIndex: c))
            b.append(Faithfulness.logOdds(logits: zn, classIndex: c))
            let ps = Float(Faithfulness.probability(logits: zs, classIndex: c))
            let pn = Float(Faithfulness.probability(logits: zn, classIndex: c))
            if ps > 0 && ps < 1 && pn > 0 && pn < 1 {
                pa.append(Double(ps))
                pb.append(Double(pn))
            }
            if Softmax.argmax(zs) == labels[i] { correct += 1 }
            if Softmax.argmax(zs) == Softmax.argmax(zn) { agree += 1 }
        }
        return (
            Faithfulness.kendallTau(a, b), pa.count > 1 ? Faithfulness.kendallTau(pa, pb) : .nan, pa.count,
            Double(correct) / Double(m), Double(agree) / Double(m), a, b
        )
    }

}
