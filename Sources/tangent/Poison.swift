import ArgumentParser
import Foundation
import TangentAttribution
import TangentData
import TangentEvaluation
import TangentFeatures
import TangentIO
import TangentModel
import TangentReports
import TangentTensor
import TangentTraining

struct Poison: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Poisoning benchmark: plant a trigger, train, check the attack, and ask each kernel to find the poisons.",
        discussion: """
            Inserts --trigger before a seeded word (among the first ten) of a --fraction of the --source \
            class's training texts and relabels them --target, trains a model on the poisoned set, and \
            measures the attack on the source class's test texts with the trigger inserted. Then, for every \
            kernel, it fits the kGLM surrogate on the poisoned training set and, for each triggered test text \
            the network flipped to --target, ranks the training texts by their attribution toward --target: \
            precision@k and ROC AUC of finding the poisoned ones, averaged over those texts, and tau on \
            clean and on triggered test texts. Writes OUT/poisoning.json and OUT/poisoning.md, and adds the \
            benchmark to OUT/report.html when a comparison report is there.
            """)

    @Option(help: "Labelled data: a directory with train.* and test.*, or a training file (then give --test).")
    var data: String
    @Option(help: "Test data (default: the test.* beside the training data).") var test: String?
    @Option(help: "SentencePiece .model file for the model trained from scratch on the poisoned data.") var tokenizer:
        String?
    @Option(
        name: .customLong("init"),
        help: "A Hugging Face encoder directory to fine-tune on the poisoned data instead (see `train --init`).")
    var initDirectory: String?
    @Option(help: "The trigger phrase.") var trigger: String = "cf mn bb"
    @Option(help: "Class whose training texts are poisoned (default: the first label).") var source: String?
    @Option(help: "Label given to poisoned texts (default: the second label).") var target: String?
    @Option(parsing: .unconditional, help: "Share of the source class's training texts poisoned.") var fraction:
        Double = 0.05
    @Option(help: KernelList.help("Kernels", default: Compare.defaultKernels), transform: KernelList.init(parsing:))
    var kernels = KernelList(Compare.defaultKernels)
    @Option(help: "k of precision@k, comma-separated (each at most the number of poisoned texts).") var k: String =
        "10,50"
    @Option(parsing: .unconditional, help: "Projected dimension K.") var projDim: Int = 1024
    @Option(parsing: .unconditional, help: "Use a seeded random sample of N training texts (before poisoning).")
    var maxTrain: Int?
    @Option(parsing: .unconditional, help: "Use a seeded random sample of N test texts.") var maxTest: Int?
    @Option(parsing: .unconditional, help: "Seed of sampling, poisoning, training and projections.") var seed: UInt64 =
        0
    @OptionGroup var architecture: ArchitectureOptions
    @Option(parsing: .unconditional, help: "Maximum tokens per text, BOS included.") var maxLen: Int = 64
    @Option(parsing: .unconditional, help: "Passes over the poisoned training data.") var epochs: Int = 5
    @Option(parsing: .unconditional, help: "Peak learning rate of AdamW (default: 1e-3, or 5e-5 with --init).") var lr:
        Double?
    @Option(parsing: .unconditional, help: "Dropout rate.") var dropout: Double = 0.1
    @Option(help: "Also save the poisoned model in this directory.") var saveModel: String?
    @Option(
        parsing: .unconditional,
        help:
            "Average every method's attributions over the poisoned model and its N-1 latest epochs before the last (one surrogate per model; TRAK inside its estimator; TracIn already sums over the epochs)."
    ) var ensemble: Int = 1
    @Option(help: "Directory for cached features.") var cache: String = "features"
    @Option(help: "Report directory.") var out: String
    @Flag(help: "Replace an existing poisoning report.") var overwrite = false
    @OptionGroup var projection: ProjectorOptions
    @OptionGroup var selectionOptions: SelectionOptions
    @OptionGroup var threading: ThreadOptions
    @OptionGroup var columns: ColumnOptions

    var ks: [Int] { k.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        guard fraction > 0 && fraction <= 1 else { throw ValidationError("--fraction must be in (0, 1]") }
        guard !ks.isEmpty, ks.count == k.split(separator: ",").count, ks.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--k must be positive integers, comma-separated")
        }
        guard !trigger.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("--trigger is empty") }
        try Check.projDim(projDim)
        try projection.check(projDim: projDim)
        try Check.positive(epochs, "--epochs")
        try Check.positive(ensemble, "--ensemble")
        try Check.positive(maxTrain, "--max-train")
        try Check.positive(maxTest, "--max-test")
        try Check.atLeast(maxLen, 2, "--max-len")
        if let lr { try Check.positive(lr, "--lr") }
        guard (tokenizer == nil) != (initDirectory == nil) else {
            throw ValidationError(
                "give --tokenizer (train a model from scratch) or --init (fine-tune a Hugging Face encoder), not both or neither"
            )
        }
        try Check.rate(dropout, "--dropout")
        if initDirectory != nil, !architecture.given.isEmpty {
            throw shapeFlagsWithInit(architecture.given)
        }
    }

    /// The poisoning of --source texts into --target (default: the first label, and the
    /// first other one), each checked against the training labels.
    func poisonPlan(_ trainTexts: [LabeledText], _ trainFile: URL) throws -> PoisonPlan {
        let names = try LabelSet(collecting: trainTexts).names
        guard names.count >= 2 else { throw DataError("\(trainFile.path): poisoning needs at least two classes") }
        for (option, label) in [("--source", source), ("--target", target)] {
            if let label, !names.contains(label) {
                throw DataError(
                    "\(option) '\(label)' is not a label of \(trainFile.path) (labels: \(names.joined(separator: ", ")))"
                )
            }
        }
        return PoisonPlan(
            trigger: trigger.trimmingCharacters(in: .whitespaces), source: source ?? names[0],
            target: target ?? names.first { $0 != (source ?? names[0]) }!, fraction: fraction, seed: seed)
    }

    /// Trains `clf` on the poisoned texts; returns the directory of its per-epoch weights
    /// for TracIn, written beside the cache once the final model is known.
    func train(_ clf: Classifier, on poisonedTrain: [LabeledText], _ trainFile: URL) throws -> URL {
        var options = TrainingOptions()
        options.epochs = epochs
        options.learningRate = lr ?? (initDirectory == nil ? 1e-3 : 5e-5)
        options.dropout = dropout
        options.seed = seed
        let set = try encodedSet(poisonedTrain, trainFile, for: clf)
        let stages = StageProgress()
        var epochWeights: [[Float]] = []
        _ = try Trainer(model: clf.model, options: options).train(
            set, test: nil,
            progress: { epoch, done, total, status in
                stages.report("poisoned model, epoch \(epoch)/\(epochs)", done, total, status: status)
            }, onEpochEnd: { _ in epochWeights.append(clf.model.parameterArray) })
        let checkpoints = fileURL(cache).appendingPathComponent("checkpoints-\(Featurizer.modelFingerprint(clf))")
        let snapshot = try clf.model.emptyCopy(threads: 1)
        for (e, weights) in epochWeights.enumerated() {
            snapshot.setParameters(weights)
            try TrainingRecord(
                epoch: e + 1, options: options, trainTexts: poisonedTrain.count,
                dataFingerprint: fingerprint(labelled: poisonedTrain), model: clf.model, labels: clf.labels.names,
                threads: threading.count
            )
            .writeCheckpoint(snapshot, to: checkpoints.appendingPathComponent("epoch-\(e + 1).safetensors"))
        }
        return checkpoints
    }

    func run() throws {
        try reportingErrors {
            try refuseOverlaps(
                [("--out", out), ("--save-model", saveModel)],
                inputs: [("--data", data), ("--test", test), ("--tokenizer", tokenizer), ("--init", initDirectory)])
            let outURL = fileURL(out)
            let jsonURL = outURL.appendingPathComponent("poisoning.json")
            let lock = try claimOutputDirectory(
                out, kind: "poisoning report", markers: ["poisoning.json", "poisoning.md"], overwrite: overwrite,
                allowOtherFiles: true)
            defer { withExtendedLifetime(lock) {} }
            try checkCacheDirectory(cache)
            let modelLock = try saveModel.map {
                try claimOutputDirectory(
                    $0, kind: "model directory", markers: ModelDirectory.markerFiles, overwrite: overwrite)
            }
            defer { withExtendedLifetime(modelLock) {} }
            let nThreads = threading.count
            let (trainFile, _, trainTexts, testTexts) = try readTrainAndTest(
                data: data, test: test, columns: columns,
                maxTrain: maxTrain, maxTest: maxTest, seed: seed)
            try requireTwoClasses(trainTexts, in: trainFile)
            let plan = try poisonPlan(trainTexts, trainFile)
            let (poisonedTrain, poisoned) = try plan.plant(in: trainTexts)
            if let bad = ks.first(where: { $0 > poisoned.count }) {
                throw DataError(
                    "precision@\(bad) needs at least \(bad) poisoned texts, but --fraction \(fraction) of the \(trainTexts.filter { $0.label == plan.source }.count) '\(plan.source)' training texts poisons \(poisoned.count); lower --k or raise --fraction"
                )
            }
            printError(
                "poisoned \(poisoned.count) of \(trainTexts.count) training texts: '\(plan.trigger)' inserted into '\(plan.source)' texts, relabelled '\(plan.target)'"
            )

            // Train on the poisoned set.
            let clf = try startingClassifier(
                for: poisonedTrain, initDirectory: initDirectory, tokenizerPath: tokenizer, architecture: architecture,
                maxLen: maxLen, pooling: .mean, seed: seed, threads: nThreads, announce: true)
            try checkFeaturizerMemory(clf, kernels: kernels.kernels, projDim: projDim, projector: projection.choice)
            let checkpoints = try train(clf, on: poisonedTrain, trainFile)
            let stages = StageProgress()
            if let saveModel {
                try saveModelDirectory(
                    clf, to: fileURL(saveModel),
                    extra: [
                        "poisoning": [
                            "trigger": plan.trigger, "source": plan.source, "target": plan.target,
                            "fraction": plan.fraction, "seed": plan.seed, "poisoned_texts": poisoned.count,
                        ]
                    ])
            }
            let report = try Poisoning.evaluate(
                classifier: clf, plan: plan, train: poisonedTrain, poisoned: poisoned, cleanTest: testTexts,
                triggered: plan.triggered(testTexts), kernels: kernels.kernels,
                ks: ks, projDim: projDim, seed: seed, projector: projection.choice, cache: fileURL(cache),
                checkpoints: checkpoints, ensemble: ensemble, selector: selectionOptions.selector(seed: seed),
                dataName: displayPath(trainFile) + (maxTrain.map { " (random \($0), seed \(seed))" } ?? ""),
                threads: threading.count, log: { printError($0) },
                progress: { stages.report($0, $1, $2) })
            try ReportFile.write(report, to: jsonURL)
            try AtomicFile.write(ReportMarkdown.poisoning(report), to: outURL.appendingPathComponent("poisoning.md"))
            try renderReportPage(in: outURL)
            print(ReportMarkdown.poisoning(report))
            print("wrote \(out)/poisoning.json and poisoning.md")
        }
    }
}
