import Foundation
import TangentAttribution
import TangentData
import TangentFeatures
import TangentModel
import TangentSurrogate

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
    /// Models every method's attributions are averaged over (before ensembles for every
    /// method: TRAK's ensemble size).
    public var ensemble: Int
    /// Wall time of the whole run (training skipped when resumed).
    public var seconds: Double
    /// Fingerprint of the run's settings (data, recipe, tokenizer, fraction, seed).
    public var run: String
    /// Fingerprint of the training texts with their labels (`fingerprint(labelled:)`);
    /// nil in runs written before it was recorded.
    public var trainFingerprint: String? = nil
    /// Training seconds of each model on all training texts (the model under study first).
    public var modelSeconds: [Double]? = nil
    /// Training time of the noise ceiling's second subset models, summed.
    public var ceilingTrainingSeconds: Double? = nil

    public init(
        train: String, test: String, trainTexts: Int, testTexts: Int, subsets: Int, fraction: Double, seed: UInt64,
        recipe: String,
        modelAccuracy: Double, subsetAccuracy: Double, trainingSeconds: Double, ensemble: Int, seconds: Double,
        run: String
    ) {
        self.train = train
        self.test = test
        self.trainTexts = trainTexts
        self.testTexts = testTexts
        self.subsets = subsets
        self.fraction = fraction
        self.seed = seed
        self.recipe = recipe
        self.modelAccuracy = modelAccuracy
        self.subsetAccuracy = subsetAccuracy
        self.trainingSeconds = trainingSeconds
        self.ensemble = ensemble
        self.seconds = seconds
        self.run = run
    }
}

/// One method's LDS.
public struct LDSKernelReport: Codable, Sendable {
    /// The method: a kernel's name, or KERNEL-infl for its surrogate's influence.
    public let kernel: String
    /// Which attribution was scored: "surrogate" (W[c, i] K(x, x_i)), "surrogate influence"
    /// (`SurrogateInfluence`), "kernel" (the kernel value, with the test loss of the
    /// compared class), or "trak".
    public let attribution: String
    /// Against the subset models' margins.
    public let lds: LDSScore
    /// Seconds of attribution (features, kernels, surrogates and scores) for these models.
    public let seconds: Double
    /// Models the attributions are averaged over (nil in runs before ensembles: 1, or
    /// the run's ensemble for TRAK).
    public var ensemble: Int? = nil
    /// Against the mean of the two trainings' margins (runs with a noise ceiling).
    public var ldsMean: LDSScore? = nil
    /// LDS of each model's attributions alone (the model under study first), for rows
    /// averaged over several models: how much the figure depends on which retraining is
    /// attributed.
    public var perModel: [Double]? = nil
    /// Surrogates: LDS of the model under study's attributions at each lambda of the grid,
    /// and the lambda its selector chose.
    public var grid: [LDSGridPoint]? = nil
    public var lambda: Double? = nil
    /// How `lambda` was chosen: the selector's criterion (network-tau by default), or
    /// "lds on M selection subsets".
    public var lambdaRule: String? = nil

    public init(kernel: String, attribution: String, lds: LDSScore, seconds: Double, ensemble: Int? = nil) {
        self.kernel = kernel
        self.attribution = attribution
        self.lds = lds
        self.seconds = seconds
        self.ensemble = ensemble
    }
}

/// A surrogate's LDS at one lambda (the model under study alone).
public struct LDSGridPoint: Codable, Sendable {
    public let lambda: Double
    /// The selector's out-of-fold Kendall tau against the network (what `network-tau` picks by).
    public let networkTau: Double
    public let lds: Double
    /// Against the mean of the two trainings' margins, with a ceiling.
    public let ldsMean: Double?
    /// LDS on the lambda-selection subsets (`--lambda-selection subsets`), by which it chose.
    public var selectionLDS: Double? = nil
}

/// The LDS of every method (lds.json).
public struct LDSReport: Codable, Sendable {
    public var setting: LDSSetting?
    /// Every method at the run's ensemble size (rows of `curve` at the largest size).
    public var kernels: [LDSKernelReport]
    /// The noise ceiling: the Spearman correlation over subsets between two trainings of
    /// each subset model, averaged over test texts (`lds --ceiling`).
    public var ceiling: LDSScore? = nil
    /// Every method at each ensemble size (ascending), when more than one was scored.
    public var curve: [LDSKernelReport]? = nil

    public init(
        setting: LDSSetting?, kernels: [LDSKernelReport], ceiling: LDSScore? = nil, curve: [LDSKernelReport]? = nil
    ) {
        self.setting = setting
        self.kernels = kernels
        self.ceiling = ceiling
        self.curve = curve
    }

    /// Per-text correlations kept for the main rows' LDS only (the curve repeats them, and
    /// against the mean of two trainings they add little): reports stay small.
    public var compacted: LDSReport {
        func strip(_ row: LDSKernelReport, keepPerText: Bool) -> LDSKernelReport {
            var r = LDSKernelReport(
                kernel: row.kernel, attribution: row.attribution, lds: keepPerText ? row.lds : row.lds.summary,
                seconds: row.seconds, ensemble: row.ensemble)
            r.ldsMean = row.ldsMean?.summary
            r.lambda = row.lambda
            r.lambdaRule = row.lambdaRule
            r.perModel = row.perModel
            r.grid = keepPerText ? row.grid : nil
            return r
        }
        var out = self
        out.kernels = kernels.map { strip($0, keepPerText: true) }
        out.ceiling = ceiling?.summary
        out.curve = curve?.map { strip($0, keepPerText: false) }
        return out
    }
}

extension Datamodeling {
    /// Ensemble sizes to score: those of `requested` up to `models`, and `models` itself.
    public static func ensembleSizes(_ requested: [Int], models: Int) -> [Int] {
        Array(Set(requested.filter { $0 >= 1 && $0 < models } + [models])).sorted()
    }

    /// Scores each method's attributions by LDS: each of `models` (the model under study
    /// first, then retrainings of it with other seeds on the same texts) attributes every
    /// test text's margin to the training texts, and the average over the first N models,
    /// for each N of `sizes`, is summed over `subsets` and correlated with the subset
    /// models' `margins` [M][tests] (and, given `ceilingMargins` from second trainings, with
    /// the mean of both). kGLM surrogates fit one surrogate per model and are scored twice:
    /// by their representer attribution and by their own influence (KERNEL-infl); the model
    /// under study's are also scored at every lambda of the grid. TRAK averages inside its
    /// estimator (its ensemble's features), the other methods average their scores. The
    /// compared class is class 1 for two classes, the true label otherwise.
    ///
    /// `ensembleKernels` (default: all) limits the ensemble to those kernels; the others
    /// use the model under study alone.
    ///
    /// With `lambdaSelection` (other subsets and their models' margins), each surrogate is
    /// also scored, as "KERNEL (lambda by LDS)" and "KERNEL-infl (lambda by LDS)", at the
    /// lambda of the grid 1e-6 ... 1e6 whose model-under-study attributions (in that form)
    /// have the highest LDS on those subsets; every model of the ensemble then uses it. The
    /// evaluation subsets are not looked at.
    public static func evaluate(
        models: [Classifier], sizes requested: [Int], train: [LabeledText], test: [LabeledText],
        subsets: [[Int]], margins: [[Double]], ceilingMargins: [[Double]]? = nil,
        lambdaSelection: (subsets: [[Int]], margins: [[Double]])? = nil, ensembleKernels: Set<SurrogateKernel>? = nil,
        kernels: [SurrogateKernel], projDim: Int, seed: UInt64,
        projector: ProjectorChoice = .default, cache: URL, checkpoints: URL? = nil, resamples: Int = 1000,
        selector: LambdaSelector = LambdaSelector(),
        log: @escaping (String) -> Void = { _ in },
        progress: @escaping (String, Int, Int) -> Void = { _, _, _ in }
    ) throws -> LDSReport {
        guard let classifier = models.first else { throw AttributionError("LDS needs the model under study") }
        let C = classifier.labels.count
        let n = train.count
        guard subsets.count == margins.count, margins.allSatisfy({ $0.count == test.count }) else {
            throw AttributionError("LDS needs one margin per test text for each of the \(subsets.count) subsets")
        }
        if let ceilingMargins,
            ceilingMargins.count != margins.count || !ceilingMargins.allSatisfy({ $0.count == test.count })
        {
            throw AttributionError(
                "the noise ceiling needs a second training's margins for each of the \(subsets.count) subsets")
        }
        guard subsets.allSatisfy({ $0.allSatisfy { (0..<n).contains($0) } }) else {
            throw AttributionError("a subset names a training text outside the \(n) given")
        }
        if let lambdaSelection,
            lambdaSelection.subsets.count != lambdaSelection.margins.count
                || !lambdaSelection.margins.allSatisfy({ $0.count == test.count })
                || !lambdaSelection.subsets.allSatisfy({ $0.allSatisfy { (0..<n).contains($0) } })
        {
            throw AttributionError(
                "the lambda selection needs one margin per test text for each of its subsets, and subsets of the \(n) training texts"
            )
        }
        let sizes = ensembleSizes(requested, models: models.count)
        let evaluation = LDSEvaluation(
            models: models, train: train, test: test, subsets: subsets, margins: margins,
            meanMargins: ceilingMargins.map { Datamodeling.meanMargins(margins, $0) }, lambdaSelection: lambdaSelection,
            compared: try classifier.labels.indices(of: test, source: "test texts").map {
                Faithfulness.comparedClass(classes: C, label: $0)
            },
            projDim: projDim, seed: seed, projector: projector, cache: cache, checkpoints: checkpoints,
            resamples: resamples, selector: selector,
            log: log, progress: progress)
        var curve: [LDSKernelReport] = []
        for k in kernels {
            // Kernels outside `ensembleKernels` are scored with the model under study alone.
            let kernelSizes = (ensembleKernels.map { $0.contains(k) } ?? true) ? sizes : [1]
            curve +=
                k.ensembled
                ? try evaluation.trak(k, sizes: kernelSizes) : try evaluation.acrossModels(k, sizes: kernelSizes)
        }
        curve.append(try evaluation.classPrior())
        let ceiling = ceilingMargins.map { Datamodeling.ceiling(margins, $0, resamples: resamples, seed: seed) }
        if let ceiling {
            log(String(format: "noise ceiling: %.3f [%.3f, %.3f]", ceiling.mean, ceiling.low, ceiling.high))
        }
        // Each method at the largest ensemble it was scored with.
        let largest = Dictionary(curve.map { ($0.kernel, $0.ensemble ?? 1) }, uniquingKeysWith: max)
        return LDSReport(
            setting: nil, kernels: curve.filter { $0.ensemble == largest[$0.kernel] }, ceiling: ceiling,
            curve: sizes.count > 1 ? curve : nil
        ).compacted
    }
}
