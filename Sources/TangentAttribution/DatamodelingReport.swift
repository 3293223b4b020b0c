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
    /// Fingerprint of the training texts with their labels (`fingerprint(labelled:)`);
    /// nil in runs written before it was recorded.
    public var trainFingerprint: String? = nil

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
                                progress: @escaping (String, Int, Int) -> Void = { _, _, _ in }) throws -> LDSReport {
        let C = classifier.labels.count, n = train.count
        guard subsets.count == margins.count, margins.allSatisfy({ $0.count == test.count }) else {
            throw AttributionError("LDS needs one margin per test text for each of the \(subsets.count) subsets")
        }
        guard subsets.allSatisfy({ $0.allSatisfy { (0..<n).contains($0) } }) else {
            throw AttributionError("a subset names a training text outside the \(n) given")
        }
        let compared = try classifier.labels.indices(of: test, source: "test texts").map { Faithfulness.comparedClass(classes: C, label: $0) }
        let setup = AttributionSetup(classifier: classifier, train: train, projDim: projDim, seed: seed, projector: projector, cache: cache,
                                     selector: selector, checkpoints: checkpoints, ensemble: ensemble)
        let rows = try setup.forEachKernel(kernels, log: log, progress: progress) { run -> LDSKernelReport in
            let k = run.kernel, engine = run.engine!
            let q = try engine.query(test, source: "test texts", cached: true, lossLabels: k.attributesByKernelValue ? compared : nil, log: log,
                                     progress: run.progress("test"))
            let scores = engine.methodScores(q, classes: compared)
            let lds = Datamodeling.score(scores, n: n, subsets: subsets, margins: margins, resamples: resamples, seed: seed)
            let attribution = q.scores != nil ? "trak" : k.attributesByKernelValue ? "kernel" : "surrogate"
            log(String(format: "%@: LDS %.3f [%.3f, %.3f]%@", k.name, lds.mean, lds.low, lds.high,
                       lds.undefined > 0 ? " (\(lds.undefined) test texts undefined)" : ""))
            return LDSKernelReport(kernel: k.name, attribution: attribution, lds: lds, seconds: run.seconds)
        }
        return LDSReport(setting: nil, kernels: rows)
    }


}
