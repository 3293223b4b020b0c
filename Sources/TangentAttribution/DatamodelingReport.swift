import Foundation
import TangentData
import TangentKernels
import TangentModel

/// How an LDS run was set up (`tangent lds`).
public struct LDSSetting: Codable, Sendable {
    public var train: String, test: String
    public var trainTexts: Int, testTexts: Int
    public var subsets: Int
    public var fraction: Double
    public var seed: UInt64
    /// Architecture and training options of every model.
    public var recipe: String
    /// Test accuracy of the model under study and the mean over subset models.
    public var modelAccuracy: Double, subsetAccuracy: Double
    /// Training time of the subset models, summed.
    public var trainingSeconds: Double
    /// TRAK's ensemble size.
    public var ensemble: Int
    /// Wall time of the whole run (training skipped when resumed).
    public var seconds: Double
    /// Fingerprint of the run's settings (data, recipe, tokenizer, fraction, seed).
    public var run: String

    public init(train: String, test: String, trainTexts: Int, testTexts: Int, subsets: Int, fraction: Double, seed: UInt64, recipe: String,
                modelAccuracy: Double, subsetAccuracy: Double, trainingSeconds: Double, ensemble: Int, seconds: Double, run: String) {
        self.train = train; self.test = test; self.trainTexts = trainTexts; self.testTexts = testTexts
        self.subsets = subsets; self.fraction = fraction; self.seed = seed; self.recipe = recipe
        self.modelAccuracy = modelAccuracy; self.subsetAccuracy = subsetAccuracy; self.trainingSeconds = trainingSeconds
        self.ensemble = ensemble; self.seconds = seconds; self.run = run
    }
}

/// One method's LDS.
public struct LDSKernelReport: Codable, Sendable {
    public let kernel: String
    /// Which attribution was scored: "surrogate" (W[c, i] K(x, x_i)), "kernel" (the
    /// kernel value, with the test loss of the compared class), or "trak".
    public let attribution: String
    public let lds: LDSScore
    public let seconds: Double
}

/// The LDS of every method (lds.json).
public struct LDSReport: Codable, Sendable {
    public var setting: LDSSetting?
    public var kernels: [LDSKernelReport]
}

extension Datamodeling {
    /// Scores each kernel's attributions by LDS: the model under study `classifier` (with
    /// TRAK's other `ensemble` models) attributes every test text's margin to the training
    /// texts, and the sums over `subsets` are correlated with the subset models' `margins`
    /// [M][tests]. The compared class is class 1 for two classes, the true label otherwise.
    public static func evaluate(classifier: Classifier, ensemble: [Classifier] = [], train: [LabeledText], test: [LabeledText],
                                subsets: [[Int]], margins: [[Double]], kernels: [SurrogateKernel], projDim: Int, seed: UInt64,
                                projector: ProjectorChoice = .default, cache: URL, checkpoints: URL? = nil, resamples: Int = 1000, selector: LambdaSelector = LambdaSelector(),
                                log: (String) -> Void = { _ in },
                                progress: (String, Int, Int) -> Void = { _, _, _ in }) throws -> LDSReport {
        let C = classifier.labels.count, n = train.count
        guard subsets.count == margins.count, margins.allSatisfy({ $0.count == test.count }) else {
            throw AttributionError("LDS needs one margin per test text for each of the \(subsets.count) subsets")
        }
        guard subsets.allSatisfy({ $0.allSatisfy { (0..<n).contains($0) } }) else {
            throw AttributionError("a subset names a training text outside the \(n) given")
        }
        let compared = try classifier.labels.indices(of: test, source: "test texts").map { Faithfulness.comparedClass(classes: C, label: $0) }
        var rows: [LDSKernelReport] = []
        for k in kernels {
            log("== \(k.name)")
            let t0 = Date()
            let engine = try AttributionEngine(classifier: classifier, train: train, kernel: k, projDim: projDim, seed: seed, projector: projector,
                                               cache: cache, selector: selector, checkpoints: k.checkpointSummed ? checkpoints : nil,
                                               ensemble: k.ensembled ? ensemble : [], log: log,
                                               progress: { progress("\(k.name) train", $0, $1) })
            let q = try engine.query(test, source: "test texts", cached: true, lossLabels: k.attributesByKernelValue ? compared : nil, log: log,
                                     progress: { progress("\(k.name) test", $0, $1) })
            let scores = engine.methodScores(q, classes: compared)
            let lds = Datamodeling.score(scores, n: n, subsets: subsets, margins: margins, resamples: resamples, seed: seed)
            let attribution = q.scores != nil ? "trak" : k.attributesByKernelValue ? "kernel" : "surrogate"
            log(String(format: "%@: LDS %.3f [%.3f, %.3f]%@", k.name, lds.mean, lds.low, lds.high,
                       lds.undefined > 0 ? " (\(lds.undefined) test texts undefined)" : ""))
            rows.append(LDSKernelReport(kernel: k.name, attribution: attribution, lds: lds, seconds: Date().timeIntervalSince(t0)))
        }
        return LDSReport(setting: nil, kernels: rows)
    }

    /// lds.md: the setting and one row per method.
    public static func markdown(_ r: LDSReport) -> String {
        "# Linear datamodeling score\n\n" + markdownBody(r)
    }

    /// The setting, what LDS measures, and the table (also a section of report.md).
    public static func markdownBody(_ r: LDSReport) -> String {
        var s = ""
        if let c = r.setting {
            s += "Training texts: \(c.train), \(c.trainTexts) texts; test texts: \(c.test), \(c.testTexts) texts.\n\n"
            s += String(format: "%ld models trained on seeded random %.0f%% subsets (mean test accuracy %.3f) and the model under study on all training texts (test accuracy %.3f), ",
                        c.subsets, 100 * c.fraction, c.subsetAccuracy, c.modelAccuracy)
            s += "all from the same initialization with the recipe: \(c.recipe). These are not the compared model: LDS asks how well each method, applied to the model under study, predicts what retraining on subsets does. TRAK averages over \(c.ensemble) model\(c.ensemble == 1 ? "" : "s") trained on all training texts (seeds \(c.seed)...\(c.seed + UInt64(c.ensemble) - 1)).\n\n"
            s += String(format: "Run %@: %.0f s (subset training %.0f s).\n\n", c.run, c.seconds, c.trainingSeconds)
        }
        s += "LDS: mean over test texts of the Spearman correlation, over subsets, between a test text's margin "
        s += "(log-odds of the compared class) under each subset's model and the sum of its attributions over the subset; "
        s += "95% bootstrap interval over test texts. Attribution: surrogate = W[c,i] K(x,x_i); kernel = the kernel value with the test text's loss of the compared class "
        s += "(loss-gradient kernels; for influence functions minus Koh & Liang's influence); trak = TRAK's score.\n\n"
        s += "| kernel | attribution | LDS | 95% interval | undefined |\n|---|---|---|---|---|\n"
        for k in r.kernels {
            s += String(format: "| %@ | %@ | %.3f | [%.3f, %.3f] | %ld |\n", k.kernel, k.attribution, k.lds.mean, k.lds.low, k.lds.high, k.lds.undefined)
        }
        return s
    }
}
