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
            try checkFits(resolved.model, trainTexts: trainTexts.count, testTexts: testTexts.count)
            var study = LDSStudy(
                recipe: resolved, train: trainTexts, test: testTexts, directory: outURL, cache: fileURL(cache))
            study.kernels = kernels.kernels
            (study.subsets, study.fraction, study.seed) = (subsets, fraction, seed)
            (study.projDim, study.projector) = (projDim, projection.choice)
            (study.ensemble, study.ensembleSizes) = (ensemble, ensembleSizes.counts)
            study.ensembleKernels = ensembleKernels.map { Set($0.kernels) }
            (study.ceiling, study.selectionSubsets, study.resamples) = (ceiling, selectionSubsets, resamples)
            (study.selector, study.threads) = (selectionOptions.selector(seed: seed), threading.count)
            study.trainSource = displayPath(trainFile) + (maxTrain.map { " (random \($0), seed \(seed))" } ?? "")
            study.testSource = displayPath(testFile) + (maxTest.map { " (random \($0), seed \(seed))" } ?? "")
            study.trainFile = trainFile
            study.recipeName = recipe
            printError(
                "LDS run \(try study.runKey()) in \(out): \(trainTexts.count) training and \(testTexts.count) test texts, "
                    + "\(subsets) subsets of \(fraction), "
                    + "recipe \(resolved.model.summary), \(resolved.options.epochs) epochs, "
                    + "lr \(resolved.options.learningRate); "
                    + "\(study.modelsToTrain) models to train (trained ones in the run directory are reused)")
            let training = StageProgress()
            let stages = StageProgress()
            var result = try study.run(
                overwrite: overwrite, log: { printError($0) },
                training: { label, epoch, done, total, status in
                    training.report("\(label), epoch \(epoch)/\(resolved.options.epochs)", done, total, status: status)
                }, progress: { stages.report($0, $1, $2) })
            result.setting?.seconds = Date().timeIntervalSince(started)
            try write(result, to: outURL)
        }
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
        -> LDSRecipe
    {
        var o = LDSRecipe.Overrides()
        (o.dModel, o.heads, o.layers, o.dFF, o.maxLen) = (dModel, heads, layers, dFF, maxLen)
        (o.epochs, o.batchSize, o.learningRate, o.dropout) = (epochs, batchSize, lr, dropout)
        do {
            return try LDSRecipe.resolve(
                recipe: recipe, recipePath: recipePath,
                tokenizer: try tokenizerPath.map { (try Tokenizer(contentsOf: fileURL($0)), option: "--tokenizer") },
                labels: labels, overrides: o)
        } catch let e as RecipeError {
            // Options that do not fit together: a usage error, as in `validate`.
            throw ValidationError(e.description)
        }
    }
}
