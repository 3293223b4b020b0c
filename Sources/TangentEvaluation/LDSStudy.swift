import Foundation
import TangentAttribution
import TangentData
import TangentFeatures
import TangentIO
import TangentModel
import TangentSurrogate
import TangentTensor
import TangentTraining

/// A linear datamodeling study (kernels spec: LDS), the whole of `tangent lds`: trains the
/// model under study (and an ensemble) on the training texts and `subsets` models on
/// seeded random `fraction` subsets of them, all by one recipe, in a run directory that
/// resumes; then scores every kernel's attributions against the subset models' margins.
///
/// ```swift
/// let recipe = try LDSRecipe(of: modelDirectory, labels: LabelSet(collecting: train))
/// var study = LDSStudy(recipe: recipe, train: train, test: test, directory: runDirectory)
/// study.kernels = [.gradCos, .projTrntk]
/// let report = try study.run()
/// for k in report.kernels { print(k.kernel, k.lds) }
/// ```
public struct LDSStudy {
    public var recipe: LDSRecipe
    public var train: [LabeledText], test: [LabeledText]
    /// The run directory: models, subsets' margins, sample.json.
    public var directory: URL
    /// Cached features and surrogates (default: `directory`/cache).
    public var cache: URL
    public var kernels: [SurrogateKernel] = [.projTrntk, .gradCos]
    public var subsets = 20
    public var fraction = 0.5
    /// Seed of subsets, training and projections.
    public var seed: UInt64 = 0
    public var projDim = 4096
    public var projector: ProjectorChoice = .default
    /// Models trained on all training texts (the model under study and N - 1 retrainings),
    /// averaged over the first N of each of `ensembleSizes`, for `ensembleKernels` (nil: all).
    public var ensemble = 1
    public var ensembleSizes: [Int] = [1]
    public var ensembleKernels: Set<SurrogateKernel>? = nil
    /// Trains every subset model twice to report the noise ceiling.
    public var ceiling = false
    /// Subset models (other subsets) that choose lambda and damping by LDS; 0: off.
    public var selectionSubsets = 0
    public var resamples = 1000
    public var selector = LambdaSelector()
    public var threads = Threads.cores
    /// Where the texts came from, for the report and errors.
    public var trainSource = "training texts", testSource = "test texts"
    /// The training file, named by errors (default: `trainSource`).
    public var trainFile: URL? = nil
    /// The recipe's name for the report (say, the model directory it came from).
    public var recipeName: String? = nil

    public init(recipe: LDSRecipe, train: [LabeledText], test: [LabeledText], directory: URL, cache: URL? = nil) {
        self.recipe = recipe
        self.train = train
        self.test = test
        self.directory = directory
        self.cache = cache ?? directory.appendingPathComponent("cache")
    }

    /// Models the study trains (those already in the run directory are reused).
    public var modelsToTrain: Int { ensemble + subsets * (ceiling ? 2 : 1) + selectionSubsets }

    /// What identifies the run (its directory refuses another): the starting model, training
    /// options, sampled texts, tokenizer, subset fraction and seed.
    public func runKey() throws -> String {
        let key = RunKey(
            model: recipe.config, start: recipe.config == nil ? recipe.model.identity : nil, options: recipe.options,
            train: fingerprint(labelled: train), test: fingerprint(labelled: test),
            tokenizer: recipe.tokenizer.map { fingerprint($0.serializedModel) }, fraction: fraction, seed: seed)
        return fingerprint(Data(try JSONEncoder.sorted.encode(key)))
    }

    /// Trains (or reads back) every model, writes `directory`/sample.json and scores every
    /// kernel. `overwrite` discards a run of other settings in `directory` instead of refusing it.
    public func run(
        overwrite: Bool = false, log: @escaping (String) -> Void = { _ in },
        training: @escaping (_ label: String, _ epoch: Int, _ done: Int, _ total: Int, _ status: String) -> Void = {
            _, _, _, _, _ in
        },
        progress: @escaping (String, Int, Int) -> Void = { _, _, _ in }
    ) throws -> LDSReport {
        // Parallel over texts and models by the toolkit, so BLAS runs single-threaded inside.
        BLASThreads.set(1)
        let started = Date()
        let labels = try LabelSet(collecting: train)
        _ = try labels.indices(of: test, source: testSource)
        let runKey = try runKey()
        let runDirectory = DatamodelingRunDirectory(url: directory, key: runKey)
        try runDirectory.claim(overwrite: overwrite)
        let run = DatamodelingRun(
            directory: runDirectory, recipe: recipe.model, options: recipe.options, labels: labels, train: train,
            test: test, trainFile: trainFile ?? URL(fileURLWithPath: trainSource), seed: seed, threads: threads)
        // The model under study and TRAK's ensemble: the whole training set, seeds SEED, SEED+1, ...
        let models = try run.fullModels(ensemble, progress: training)
        let full = try run.margins(models[0])
        log(String(format: "model under study: test accuracy %.4f on %ld texts", full.accuracy, test.count))
        let t = try subsetModels(run, log: log, progress: training)
        try writeSample(labels: labels, plan: t.plan, margins: t.first.margins)
        var result = try Datamodeling.evaluate(
            models: models, sizes: ensembleSizes, train: train, test: test,
            subsets: t.plan, margins: t.first.margins, ceilingMargins: t.second?.margins,
            lambdaSelection: t.selection.map { (t.selectionPlan, $0.margins) },
            ensembleKernels: ensembleKernels, kernels: kernels, projDim: projDim, seed: seed, projector: projector,
            cache: cache,
            checkpoints: runDirectory.modelDirectory(0).appendingPathComponent(ModelDirectory.checkpointsDirectory),
            resamples: resamples, selector: selector, log: log, progress: progress)
        var setting = LDSSetting(
            train: trainSource, test: testSource, trainTexts: train.count, testTexts: test.count, subsets: subsets,
            fraction: fraction, seed: seed,
            recipe: (recipeName.map { "\($0), " } ?? "") + recipe.model.summary + "; "
                + String(decoding: try JSONEncoder.sorted.encode(recipe.options), as: UTF8.self),
            modelAccuracy: full.accuracy,
            subsetAccuracy: t.first.accuracies.reduce(0, +) / Double(subsets),
            trainingSeconds: t.first.seconds.reduce(0, +), ensemble: ensemble,
            seconds: Date().timeIntervalSince(started), run: runKey)
        setting.trainFingerprint = fingerprint(labelled: train)
        setting.modelSeconds = models.map { $0.configJSON["seconds"] as? Double ?? .nan }
        setting.ceilingTrainingSeconds = t.second.map { $0.seconds.reduce(0, +) }
        result.setting = setting
        return result
    }

    typealias Trained = (margins: [[Double]], accuracies: [Double], seconds: [Double])

    /// The subset models: the evaluation subsets', with `ceiling` their second training,
    /// and with `selectionSubsets` those of the lambda-selection subsets; trained or read
    /// back, each with its test margins, accuracies and seconds.
    func subsetModels(
        _ run: DatamodelingRun, log: (String) -> Void,
        progress: @escaping (_ label: String, _ epoch: Int, _ done: Int, _ total: Int, _ status: String) -> Void
    ) throws -> (plan: [[Int]], first: Trained, second: Trained?, selectionPlan: [[Int]], selection: Trained?) {
        let n = train.count
        let plan = Datamodeling.subsets(n: n, count: subsets, fraction: fraction, seed: seed)
        let first = try run.subsetModels(plan, progress: progress)
        log(
            String(
                format: "%ld subset models: mean test accuracy %.4f, %.1f s of training each", subsets,
                first.accuracies.reduce(0, +) / Double(subsets), first.seconds.reduce(0, +) / Double(subsets)))
        let second = ceiling ? try run.subsetModels(plan, replicate: 1, progress: progress) : nil
        if let second {
            log(
                String(
                    format: "%ld subset models trained again (noise ceiling): mean test accuracy %.4f", subsets,
                    second.accuracies.reduce(0, +) / Double(subsets)))
        }
        let selectionPlan = Datamodeling.subsets(
            n: n, count: selectionSubsets, fraction: fraction, seed: DatamodelingRun.selectionSubsetSeed(seed))
        let selection =
            selectionSubsets > 0 ? try run.subsetModels(selectionPlan, replicate: 2, progress: progress) : nil
        return (plan, first, second, selectionPlan, selection)
    }

    /// `directory`/sample.json: the sampled texts (line, text, label), each test text's
    /// compared class, the subsets (training indices) and their models' test margins: what a
    /// peer library needs to score the same texts and be judged on the same retrainings.
    func writeSample(labels: LabelSet, plan: [[Int]], margins: [[Double]]) throws {
        func rows(_ texts: [LabeledText]) -> [[String: Any]] {
            texts.map { ["line": $0.line, "text": $0.text, "label": $0.label ?? NSNull()] }
        }
        let compared = try labels.indices(of: test, source: testSource).map {
            Faithfulness.comparedClass(classes: labels.count, label: $0)
        }
        let json: [String: Any] = [
            "format": "tangent-lds-sample-1", "labels": labels.names, "train": rows(train), "test": rows(test),
            "compared": compared, "subsets": plan, "margins": margins,
        ]
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]),
            to: directory.appendingPathComponent("sample.json"))
    }
}

/// What identifies an LDS run: a different value means other models and margins.
private struct RunKey: Encodable {
    /// tangent's own architecture, or (for a pretrained start) what identifies the start.
    let model: ModelConfig?
    let start: String?
    let options: TrainingOptions
    let train: String, test: String
    let tokenizer: String?
    let fraction: Double
    let seed: UInt64
}
