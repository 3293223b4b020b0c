import ArgumentParser
import Foundation
import TangentAttribution
import TangentData
import TangentEvaluation
import TangentFeatures
import TangentIO
import TangentModel
import TangentReports
import TangentSurrogate
import TangentTensor
import TangentTokenizer
import TangentTraining

struct LDS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lds",
        abstract:
            "Linear datamodeling score: retrain on random subsets and check each kernel's attributions against them.",
        discussion: """
            Trains the model under study on the training texts (a seeded --max-train sample, as \
            `compare` draws it) and --subsets models on seeded random --fraction subsets of them, all \
            with one recipe (--recipe MODEL copies a model's architecture and training options; flags \
            override them) and the same initialization, and records every model's margin (log-odds of \
            the compared class: class 1 for two classes, the true label otherwise) on the test texts. \
            Then, for every kernel, it attributes each test text to the training texts with the model \
            under study and correlates (Spearman) the attributions summed over each subset with that \
            subset's margins: LDS is the mean over test texts, with a bootstrap 95% interval. OUT keeps \
            every finished model and subset's margins, so an interrupted run resumes and more subsets \
            extend it; writes OUT/lds.json and OUT/lds.md (`compare --lds OUT` adds them to a report).
            """)

    @Option(help: "Labelled data: a directory with train.* and test.*, or a training file (then give --test).")
    var data: String
    @Option(help: "Test data (default: the test.* beside the training data).") var test: String?
    @Option(help: "SentencePiece .model file (default: the --recipe model's tokenizer).") var tokenizer: String?
    @Option(
        help:
            "Model directory whose recipe (architecture, max_len, pooling, training options) the models are trained with."
    ) var recipe: String?
    @Option(parsing: .unconditional, help: "Subset models (at least 2; the kernels spec asks for 50 or more).")
    var subsets: Int = 50
    @Option(parsing: .unconditional, help: "Share of the training texts in each subset.") var fraction: Double = 0.5
    @Option(parsing: .unconditional, help: "Seed of sampling, subsets, training and projections.") var seed: UInt64 = 0
    @Option(help: KernelList.help("Kernels", default: SurrogateKernel.allCases), transform: KernelList.init(parsing:))
    var kernels = KernelList(SurrogateKernel.allCases)
    @Option(parsing: .unconditional, help: "Projected dimension K.") var projDim: Int = 4096
    @Option(
        parsing: .unconditional,
        help:
            "Average every method's attributions over N models: the model under study and N-1 retrainings of it with seeds SEED+1, ... on the same texts (kGLM surrogates: one per model; TRAK: its own ensemble)."
    ) var ensemble: Int = 1
    @Option(
        help:
            "Kernels that --ensemble applies to, comma-separated (default: every kernel); the others use the model under study alone.",
        transform: KernelList.init(parsing:))
    var ensembleKernels: KernelList?
    @Option(
        help: "Also score the averages over the first N models for each N listed (comma-separated), up to --ensemble.",
        transform: CountList.init(parsing:))
    var ensembleSizes = CountList([1, 2, 5, 10])
    @Option(
        parsing: .unconditional,
        help:
            "Choose each kGLM surrogate's lambda (representer and influence form apart) by LDS on the models of M other seeded subsets, trained for it, instead of by --selection on the training texts; the evaluation subsets are not looked at. 0: off."
    ) var selectionSubsets: Int = 0
    @Flag(
        help:
            "Noise ceiling: train every subset model a second time (same subset and initialization, training seed SEED + 0x5EED: other dropout masks and batch order), report how well one training's margins predict the other's, and score every method also against the mean of both."
    ) var ceiling = false
    @Option(parsing: .unconditional, help: "Use a seeded random sample of N training texts.") var maxTrain: Int?
    @Option(parsing: .unconditional, help: "Use a seeded random sample of N test texts.") var maxTest: Int?
    @Option(parsing: .unconditional, help: "Bootstrap resamples of the test texts for the interval.") var resamples:
        Int = 1000
    @OptionGroup var recipeOptions: RecipeOptions
    @Option(help: "Directory for cached features and surrogates.") var cache: String = "features"
    @Option(help: "Run directory: models, subset margins, lds.json and lds.md.") var out: String
    @Flag(help: "Discard a run of other settings in OUT instead of refusing it.") var overwrite = false
    @OptionGroup var projection: ProjectorOptions
    @OptionGroup var selectionOptions: SelectionOptions
    @OptionGroup var threading: ThreadOptions
    @OptionGroup var columns: ColumnOptions

    func validate() throws {
        guard tokenizer != nil || recipe != nil else {
            throw ValidationError("give --tokenizer, --recipe MODEL, or both")
        }
        try Check.atLeast(subsets, 2, "--subsets")
        guard fraction > 0 && fraction < 1 else {
            throw ValidationError("--fraction must be in (0, 1), got \(fraction)")
        }
        try Check.projDim(projDim)
        try projection.check(projDim: projDim)
        try Check.positive(ensemble, "--ensemble")
        if selectionSubsets != 0 { try Check.atLeast(selectionSubsets, 2, "--selection-subsets") }
        // Each is a model trained on the whole training set (ensemble) or a subset: beyond
        // these counts a run would take days on any machine this tool runs on.
        for (option, value, limit) in [
            ("--ensemble", ensemble, 1000), ("--subsets", subsets, 100_000),
            ("--selection-subsets", selectionSubsets, 100_000),
        ]
        where value > limit {
            throw ValidationError(
                "\(option) \(value) is above \(limit): each is a model to train; give at most \(limit)")
        }
        if let extra = ensembleKernels?.kernels.first(where: { !kernels.kernels.contains($0) }) {
            throw ValidationError("--ensemble-kernels names \(extra.name), which is not in --kernels")
        }
        try Check.positive(maxTrain, "--max-train")
        try Check.positive(maxTest, "--max-test")
        try Check.positive(resamples, "--resamples")
    }

    func run() throws {
        try reportingErrors {
            let inputs: [(String, String?)] = [
                ("--data", data), ("--test", test), ("--tokenizer", tokenizer), ("--recipe", recipe),
            ]
            try refuseOverlaps([("--out", out)], inputs: inputs)
            let started = Date()
            let outURL = fileURL(out)
            try checkCacheDirectory(cache)
            try OutputPath.checkDirectory(outURL, kind: "LDS run", markers: [], overwrite: true, allowOtherFiles: true)
            let lock = try OutputLock(guarding: outURL, what: "the LDS run in \(outURL.path)")
            defer { withExtendedLifetime(lock) {} }
            let nThreads = threading.count
            let (trainFile, testFile, trainTexts, testTexts) = try readTrainAndTest(
                data: data, test: test, columns: columns,
                maxTrain: maxTrain, maxTest: maxTest, seed: seed)
            try requireTwoClasses(trainTexts, in: trainFile)
            let labels = try LabelSet(collecting: trainTexts)
            // Every test label must be one of the training labels (the error names the file).
            _ = try labels.indices(of: testTexts, source: testFile.path)

            let recipeModel = try recipe.map { try Classifier(directory: fileURL($0), threads: 1) }
            let resolved = try recipeOptions.resolve(
                recipe: recipeModel, tokenizerPath: tokenizer, labels: labels, recipePath: recipe)
            try checkFits(resolved.recipe, trainTexts: trainTexts.count, testTexts: testTexts.count)
            let runKey = try self.runKey(resolved, train: trainTexts, test: testTexts)
            let runDirectory = DatamodelingRunDirectory(url: outURL, key: runKey)
            try runDirectory.claim(overwrite: overwrite)
            announce(
                runKey, trainTexts: trainTexts.count, testTexts: testTexts.count, recipe: resolved.recipe,
                options: resolved.options)
            let run = DatamodelingRun(
                directory: runDirectory, recipe: resolved.recipe, options: resolved.options, labels: labels,
                train: trainTexts, test: testTexts, trainFile: trainFile, seed: seed, threads: nThreads)
            let training = StageProgress()
            let progress = { (label: String, epoch: Int, done: Int, total: Int, status: String) in
                training.report("\(label), epoch \(epoch)/\(resolved.options.epochs)", done, total, status: status)
            }
            // The model under study and TRAK's ensemble: the whole training set, seeds SEED, SEED+1, ...
            let models = try run.fullModels(ensemble, progress: progress)
            let full = try run.margins(models[0])
            printError(
                String(format: "model under study: test accuracy %.4f on %ld texts", full.accuracy, testTexts.count))
            let t = try trainSubsetModels(run, n: trainTexts.count, progress: progress)
            let (plan, subsetMargins, accuracies, trainSeconds) = (
                t.plan, t.first.margins, t.first.accuracies, t.first.seconds
            )
            let (selectionPlan, selection, second) = (t.selectionPlan, t.selection, t.second)
            try writeSample(
                outURL, train: trainTexts, test: testTexts, labels: labels, plan: plan, margins: subsetMargins)

            let stages = StageProgress()
            var result = try Datamodeling.evaluate(
                models: models, sizes: ensembleSizes.counts, train: trainTexts, test: testTexts,
                subsets: plan, margins: subsetMargins, ceilingMargins: second?.margins,
                lambdaSelection: selection.map { (selectionPlan, $0.margins) },
                ensembleKernels: ensembleKernels.map { Set($0.kernels) }, kernels: kernels.kernels,
                projDim: projDim, seed: seed, projector: projection.choice, cache: fileURL(cache),
                checkpoints: runDirectory.modelDirectory(0).appendingPathComponent(ModelDirectory.checkpointsDirectory),
                resamples: resamples, selector: selectionOptions.selector(seed: seed), log: { printError($0) },
                progress: { stages.report($0, $1, $2) })
            var setting = LDSSetting(
                train: displayPath(trainFile) + (maxTrain.map { " (random \($0), seed \(seed))" } ?? ""),
                test: displayPath(testFile) + (maxTest.map { " (random \($0), seed \(seed))" } ?? ""),
                trainTexts: trainTexts.count, testTexts: testTexts.count, subsets: subsets, fraction: fraction,
                seed: seed, recipe: try recipeSummary(resolved.recipe, resolved.options),
                modelAccuracy: full.accuracy, subsetAccuracy: accuracies.reduce(0, +) / Double(subsets),
                trainingSeconds: trainSeconds.reduce(0, +), ensemble: ensemble,
                seconds: Date().timeIntervalSince(started), run: runKey)
            setting.trainFingerprint = fingerprint(labelled: trainTexts)
            setting.modelSeconds = models.map { $0.configJSON["seconds"] as? Double ?? .nan }
            setting.ceilingTrainingSeconds = second.map { $0.seconds.reduce(0, +) }
            result.setting = setting
            try write(result, to: outURL)
        }
    }

    /// The run's first line: what it is and how many models it trains.
    func announce(_ runKey: String, trainTexts: Int, testTexts: Int, recipe: ModelRecipe, options: TrainingOptions) {
        printError(
            "LDS run \(runKey) in \(out): \(trainTexts) training and \(testTexts) test texts, \(subsets) subsets of \(fraction), "
                + "recipe \(recipe.summary), \(options.epochs) epochs, lr \(options.learningRate); "
                + "\(ensemble + subsets * (ceiling ? 2 : 1) + selectionSubsets) models to train (trained ones in the run directory are reused)"
        )
    }

    /// What identifies the run (its directory refuses another): the starting model, training
    /// options, sampled texts, tokenizer, subset fraction and seed.
    func runKey(
        _ resolved: (recipe: ModelRecipe, config: ModelConfig?, tokenizer: Tokenizer?, options: TrainingOptions),
        train: [LabeledText], test: [LabeledText]
    ) throws -> String {
        let key = RunKey(
            model: resolved.config, start: resolved.config == nil ? resolved.recipe.identity : nil,
            options: resolved.options, train: fingerprint(labelled: train), test: fingerprint(labelled: test),
            tokenizer: resolved.tokenizer.map { fingerprint($0.serializedModel) }, fraction: fraction, seed: seed)
        return fingerprint(Data(try JSONEncoder.sorted.encode(key)))
    }

    /// The report's line on how every model was trained: the recipe and its options.
    func recipeSummary(_ recipe: ModelRecipe, _ options: TrainingOptions) throws -> String {
        (self.recipe.map { "\($0), " } ?? "") + recipe.summary + "; "
            + String(decoding: try JSONEncoder.sorted.encode(options), as: UTF8.self)
    }

    /// OUT/lds.json and lds.md, and the report on standard output.
    func write(_ result: LDSReport, to outURL: URL) throws {
        try ReportFile.write(result, to: outURL.appendingPathComponent("lds.json"))
        try AtomicFile.write(ReportMarkdown.lds(result), to: outURL.appendingPathComponent("lds.md"))
        print(ReportMarkdown.lds(result))
        print("wrote \(out)/lds.json and lds.md")
    }

    /// Refuses a run that would not fit, before any model is trained or anything written:
    /// the kernels' featurization of a model of the recipe, the ensemble's models (weights
    /// and a training copy of each), and the subsets' index lists and margins.
    func checkFits(_ recipe: ModelRecipe, trainTexts: Int, testTexts: Int) throws {
        let probe = try recipe.make(seed, 1)
        try checkFeaturizerMemory(probe, kernels: kernels.kernels, projDim: projDim, projector: projection.choice)
        let parameters = probe.model.layout.count
        let memory = Double(ProcessInfo.processInfo.physicalMemory)
        let ensembleBytes = Double(ensemble) * Double(parameters) * 4 * 2
        guard ensembleBytes < memory / 4 else {
            throw ValidationError(
                "--ensemble \(ensemble): its \(ensemble) models of \(parameters) parameters are held at once, about \(ByteSize.describe(ensembleBytes)), more than a quarter of this machine's \(ByteSize.describe(memory))"
            )
        }
        let planBytes =
            Double(subsets * (ceiling ? 2 : 1) + selectionSubsets)
            * (Double(trainTexts) * fraction * 8 + Double(testTexts) * 8 + 64)
        guard planBytes < memory / 4 else {
            let counts =
                ["--subsets \(subsets)\(ceiling ? " (twice, with --ceiling)" : "")"]
                + (selectionSubsets > 0 ? ["--selection-subsets \(selectionSubsets)"] : [])
            throw ValidationError(
                "\(counts.joined(separator: " and ")): the subsets' index lists and margins would need \(ByteSize.describe(planBytes)), more than a quarter of this machine's \(ByteSize.describe(memory))"
            )
        }
    }

    /// OUT/sample.json: the sampled texts (line, text, label), each test text's compared
    /// class, the subsets (training indices) and their models' test margins: what a peer
    /// library needs to score the same texts and be judged on the same retrainings.
    func writeSample(
        _ out: URL, train: [LabeledText], test: [LabeledText], labels: LabelSet, plan: [[Int]], margins: [[Double]]
    ) throws {
        func rows(_ texts: [LabeledText]) -> [[String: Any]] {
            texts.map { ["line": $0.line, "text": $0.text, "label": $0.label ?? NSNull()] }
        }
        let compared = try labels.indices(of: test, source: "test texts").map {
            Faithfulness.comparedClass(classes: labels.count, label: $0)
        }
        let json: [String: Any] = [
            "format": "tangent-lds-sample-1", "labels": labels.names, "train": rows(train), "test": rows(test),
            "compared": compared, "subsets": plan, "margins": margins,
        ]
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]),
            to: out.appendingPathComponent("sample.json"))
    }

    /// The subset models: the evaluation subsets', with --ceiling their second training,
    /// and with --selection-subsets those of the lambda-selection subsets; trained or read
    /// back, each with its test margins, accuracies and seconds.
    func trainSubsetModels(
        _ run: DatamodelingRun, n: Int,
        progress: @escaping (_ label: String, _ epoch: Int, _ done: Int, _ total: Int, _ status: String) -> Void
    ) throws
        -> (
            plan: [[Int]], first: (margins: [[Double]], accuracies: [Double], seconds: [Double]),
            second: (margins: [[Double]], accuracies: [Double], seconds: [Double])?,
            selectionPlan: [[Int]], selection: (margins: [[Double]], accuracies: [Double], seconds: [Double])?
        )
    {
        let plan = Datamodeling.subsets(n: n, count: subsets, fraction: fraction, seed: seed)
        let first = try run.subsetModels(plan, progress: progress)
        printError(
            String(
                format: "%ld subset models: mean test accuracy %.4f, %.1f s of training each", subsets,
                first.accuracies.reduce(0, +) / Double(subsets), first.seconds.reduce(0, +) / Double(subsets)))
        let second = ceiling ? try run.subsetModels(plan, replicate: 1, progress: progress) : nil
        if let second {
            printError(
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

/// The recipe of the models an LDS run trains: a model's (`--recipe`), with any flag given
/// here overriding it, or the `train` command's defaults.
struct RecipeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Model width (default: the recipe's, else 128).") var dModel: Int?
    @Option(parsing: .unconditional, help: "Attention heads (default: the recipe's, else 4).") var heads: Int?
    @Option(parsing: .unconditional, help: "Transformer blocks (default: the recipe's, else 2).") var layers: Int?
    @Option(parsing: .unconditional, help: "Feed-forward width (default: the recipe's, else 512).") var dFF: Int?
    @Option(parsing: .unconditional, help: "Maximum tokens per text (default: the recipe's, else 64).") var maxLen: Int?
    @Option(parsing: .unconditional, help: "Passes over the training texts (default: the recipe's, else 5).")
    var epochs: Int?
    @Option(parsing: .unconditional, help: "Texts per step (default: the recipe's, else 32).") var batchSize: Int?
    @Option(parsing: .unconditional, help: "Peak learning rate (default: the recipe's, else 1e-3).") var lr: Double?
    @Option(parsing: .unconditional, help: "Dropout rate (default: the recipe's, else 0.1).") var dropout: Double?

    /// Whether any option was given.
    var given: Bool {
        [dModel, heads, layers, dFF, maxLen, epochs, batchSize].contains { $0 != nil } || lr != nil || dropout != nil
    }

    func validate() throws {
        try Check.positive(dModel, "--d-model")
        try Check.positive(heads, "--heads")
        try Check.positive(dFF, "--d-ff")
        if let layers, layers < 0 { throw ValidationError("--layers must be zero or positive, got \(layers)") }
        if let maxLen { try Check.atLeast(maxLen, 2, "--max-len") }
        try Check.positive(epochs, "--epochs")
        try Check.positive(batchSize, "--batch-size")
        if let lr { try Check.positive(lr, "--lr") }
        if let dropout { try Check.rate(dropout, "--dropout") }
    }

    /// The recipe: the fresh model each run starts from (tangent's own architecture, or the
    /// pretrained encoder a `train --init` model was fine-tuned from) and the training options.
    func resolve(recipe: Classifier?, tokenizerPath: String?, labels: LabelSet, recipePath: String?) throws
        -> (recipe: ModelRecipe, config: ModelConfig?, tokenizer: Tokenizer?, options: TrainingOptions)
    {
        var options = TrainingOptions()
        if let recipe {
            guard
                let o = try RecordedTraining(
                    configJSON: recipe.configJSON, source: (recipePath ?? "recipe") + "/config.json"
                ).options
            else {
                throw DataError(
                    "\(recipePath ?? "recipe"): config.json records no training options ('training'); give the recipe as flags instead"
                )
            }
            options = o
        }
        if let epochs { options.epochs = epochs }
        if let batchSize { options.batchSize = batchSize }
        if let lr { options.learningRate = lr }
        if let dropout { options.dropout = dropout }
        try options.validate()
        if let recipe, recipe.tangentModel == nil {
            return (
                try pretrainedRecipe(
                    recipe, labels: labels, recipePath: recipePath ?? "--recipe", tokenizerPath: tokenizerPath), nil,
                nil, options
            )
        }
        guard let tok = try tokenizerPath.map({ try Tokenizer(contentsOf: fileURL($0)) }) ?? recipe?.tokenizer else {
            throw ValidationError("give --tokenizer, or --recipe with a model that has one")
        }
        let base = recipe?.tangentModel?.config
        var config = ModelConfig(
            vocabSize: tok.vocabSize, maxLen: maxLen ?? base?.maxLen ?? 64, dModel: dModel ?? base?.dModel ?? 128,
            nHeads: heads ?? base?.nHeads ?? 4, nLayers: layers ?? base?.nLayers ?? 2, dFF: dFF ?? base?.dFF ?? 512,
            nClasses: labels.count, pooling: base?.pooling ?? .mean)
        config.padID = Int(tok.padID)
        config.bosID = Int(tok.bosID)
        if let base { config.normEps = base.normEps }
        guard tok.padID == 0, tok.bosID >= 0 else {
            throw TokenizerError(
                "\(tok.source): tokenizer must have pad_id=0 and a bos id (train it with `tangent tokenizer train`)")
        }
        guard config.dModel % config.nHeads == 0 else {
            throw ValidationError("--d-model must be a multiple of --heads")
        }
        try config.validate()
        let fixed = config
        let summary =
            "d_model \(config.dModel), \(config.nHeads) heads, \(config.nLayers) layers, d_ff \(config.dFF), "
            + "max_len \(config.maxLen), \(config.pooling.rawValue) pooling"
        let recipeModel = ModelRecipe(summary: summary, identity: summary) { seed, threads in
            try Classifier(
                model: TransformerClassifier<Float>.initialized(config: fixed, seed: seed, threads: threads),
                tokenizer: tok, labels: labels)
        }
        return (recipeModel, config, tok, options)
    }

    /// A fine-tuned Hugging Face model's recipe: every model starts from the pretrained
    /// directory it was fine-tuned from (config.json's `tangent.init`), with the same
    /// truncation length; architecture flags do not apply.
    func pretrainedRecipe(_ recipe: Classifier, labels: LabelSet, recipePath: String, tokenizerPath: String?) throws
        -> ModelRecipe
    {
        let given =
            [("--d-model", dModel), ("--heads", heads), ("--layers", layers), ("--d-ff", dFF)].filter { $0.1 != nil }
            .map(\.0)
            + (tokenizerPath == nil ? [] : ["--tokenizer"])
        guard given.isEmpty else {
            throw ValidationError(
                "\(given.joined(separator: ", ")): \(recipePath) is a fine-tuned \(recipe.model.architecture) model; its models start from its pretrained weights, so architecture and tokenizer options do not apply"
            )
        }
        guard let start = recipe.configJSON["init"] as? String else {
            throw DataError(
                "\(recipePath)/config.json: no 'tangent.init' (the pretrained directory it was fine-tuned from); fine-tune it with `tangent train --init` to use it as a recipe"
            )
        }
        let startURL = URL(fileURLWithPath: start)
        let length = maxLen ?? (recipe.encoder as? HFTextEncoder)?.maxLength ?? 64
        // What the runs start from: its architecture, its weights' bytes and its tokenizer.
        let probe = try ModelRegistry.loadForFineTuning(
            directory: startURL, labels: labels.names, maxLength: length, seed: 0, threads: 1
        ).0
        var identity = probe.model.configurationData
        identity.append(try WholeFile.read(startURL.appendingPathComponent(ModelDirectory.weightsFile)))
        identity.append(probe.encoder.identity)
        return ModelRecipe(
            summary: "fine-tuned from \(start) (\(probe.model.architecture)), max length \(length)",
            identity: fingerprint(identity)
        ) { seed, threads in
            let (loaded, _) = try ModelRegistry.loadForFineTuning(
                directory: startURL, labels: labels.names, maxLength: length, seed: seed, threads: threads)
            return try Classifier(model: loaded.model, encoder: loaded.encoder, labels: loaded.labels)
        }
    }
}
