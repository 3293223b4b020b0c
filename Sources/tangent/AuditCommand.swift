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

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Rank training texts by how likely their label is wrong, with the evidence for each.",
        discussion: """
            Scores every training text by each --methods (higher: more suspect): surrogate-oof (minus the \
            out-of-fold log-odds of its label under the kGLM surrogate fitted without its fold), surrogate-self \
            (the surrogate's self-influence: how much the text's own term raises its margin), network-loss, \
            tracin-self (over MODEL/checkpoints or --checkpoints), trak-self and ekfac-self (EK-FAC self-influence). Prints the methods and the --top \
            suspects under the first method, each with the surrogate's label and the training texts that \
            support it; --json and --html write them.

            Benchmark: --flip RATE flips that share of the training labels at random (seeded), retrains a \
            model with MODEL's recipe on them (kept in CACHE/audit, resumable) and reports each method's ROC \
            AUC and its precision among the RATE x n most suspect texts.
            """)

    @Option(help: "Model directory (with --flip: the recipe to retrain with).") var model: String
    @Option(help: "Training texts with labels (a file, or a data directory: its train.* is used).") var train: String
    @Option(help: "Kernel of the surrogate methods.") var kernel: SurrogateKernel = .projTrntk
    @Option(
        help:
            "Methods, comma-separated; the first ranks the suspects: \(AuditMethod.allCases.map(\.rawValue).joined(separator: ", ")). (default: all, in that order)",
        transform: AuditCommand.methods(parsing:))
    var methods: [AuditMethod] = AuditMethod.allCases
    @Option(parsing: .unconditional, help: "Suspects listed.") var top: Int = 20
    @Option(parsing: .unconditional, help: "Supporting training texts shown per suspect.") var proponents: Int = 3
    @Option(
        parsing: .unconditional,
        help: "Projected dimension K of projected kernels and of TracIn's and TRAK's gradients.") var projDim: Int =
            1024
    @Option(parsing: .unconditional, help: "Seed of sampling, flipping, training, projections and folds.") var seed:
        UInt64 = 0
    @Option(parsing: .unconditional, help: "Use a seeded random sample of N training texts.") var maxTrain: Int?
    @Option(
        parsing: .unconditional,
        help:
            "Benchmark: flip this share of the training labels, retrain with the model's recipe, and score how well each method finds them."
    ) var flip: Double?
    @Option(help: "TracIn checkpoints (epoch-K.safetensors; default MODEL/checkpoints).") var checkpoints: String?
    @Option(help: "Directory for cached features, surrogates and (--flip) retrained models.") var cache: String =
        "features"
    @Option(help: "Write the report as JSON to this file.") var json: String?
    @Option(help: "Write a self-contained HTML page of the suspects to this file.") var html: String?
    @Flag(help: "Replace existing --json / --html files (only files this command wrote).") var overwrite = false
    @OptionGroup var recipeOptions: RecipeOptions
    @OptionGroup var projection: ProjectorOptions
    @OptionGroup var selectionOptions: SelectionOptions
    @OptionGroup var threading: ThreadOptions
    @OptionGroup var columns: ColumnOptions

    static func methods(parsing value: String) throws -> [AuditMethod] {
        var seen: Set<AuditMethod> = []
        return try Check.list(value, "--methods").map { name in
            guard let m = AuditMethod(rawValue: name) else {
                throw ValidationError(
                    "unknown method '\(name)'; valid: \(AuditMethod.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard seen.insert(m).inserted else { throw ValidationError("--methods names \(name) twice") }
            return m
        }
    }

    func validate() throws {
        try Check.positive(top, "--top")
        try Check.positive(proponents, "--proponents")
        try Check.projDim(projDim)
        try projection.check(projDim: projDim)
        try Check.positive(maxTrain, "--max-train")
        if let flip, !(flip > 0 && flip < 0.5) { throw ValidationError("--flip must be in (0, 0.5), got \(flip)") }
        if flip == nil, recipeOptions.given {
            throw ValidationError("recipe options (--epochs, --lr, ...) apply to --flip's retraining only")
        }
        if flip != nil, checkpoints != nil {
            throw ValidationError("--checkpoints: with --flip, TracIn uses the retrained model's checkpoints")
        }
    }

    static func isPage(_ url: URL) -> Bool {
        guard let h = try? FileHandle(forReadingFrom: url), let head = try? h.read(upToCount: 512) else { return false }
        try? h.close()
        return String(decoding: head, as: UTF8.self).contains("content=\"\(AuditHTML.generator)\"")
    }

    static func isReport(_ url: URL) -> Bool {
        guard let data = try? WholeFile.read(url) else { return false }
        return (try? JSONDecoder().decode(AuditReport.self, from: data)) != nil
    }

    /// The --flip benchmark's model: `texts` with a seeded share of their labels flipped,
    /// and the model retrained on them with `model`'s recipe (kept under the cache, reused
    /// when finished), its checkpoints and what the report says of the retraining.
    func retrainFlipped(_ texts: inout [LabeledText], rate: Double, model clf: Classifier, trainFile: URL) throws
        -> (classifier: Classifier, checkpoints: URL, setting: AuditFlip)
    {
        let labels = try LabelSet(collecting: texts)
        let flipped = try Audit.flip(texts, labels: labels, rate: rate, seed: seed)
        texts = flipped.texts
        let resolved = try recipeOptions.resolve(recipe: clf, tokenizerPath: nil, labels: labels, recipePath: model)
        let flipKey = FlipKey(
            recipe: resolved.model.identity, options: resolved.options, train: fingerprint(labelled: texts), seed: seed
        )
        let key = fingerprint(Data(try JSONEncoder.sorted.encode(flipKey)))
        let dir = DatamodelingRunDirectory(url: fileURL(cache).appendingPathComponent("audit/\(key)"), key: key)
        try FileManager.default.createDirectory(at: dir.url, withIntermediateDirectories: true)
        let lock = try OutputLock(guarding: dir.url, what: "the audit retraining in \(dir.url.path)")
        defer { withExtendedLifetime(lock) {} }
        try dir.claim(overwrite: false)
        printError(
            "audit benchmark: \(flipped.flipped.count) of \(texts.count) labels flipped (seed \(seed)); retraining with \(resolved.model.summary) in \(dir.url.path)"
        )
        let run = DatamodelingRun(
            directory: dir, recipe: resolved.model, options: resolved.options, labels: labels, train: texts,
            test: [], trainFile: trainFile, seed: seed, threads: threading.count)
        let training = StageProgress()
        let retrained = try run.fullModels(1) { label, epoch, done, total, status in
            training.report("\(label), epoch \(epoch)/\(resolved.options.epochs)", done, total, status: status)
        }[0]
        let setting = AuditFlip(
            rate: rate, seed: seed, flipped: flipped.flipped, recipe: resolved.model.summary,
            trainingSeconds: retrained.configJSON["seconds"] as? Double ?? .nan)
        return (retrained, dir.modelDirectory(0).appendingPathComponent(ModelDirectory.checkpointsDirectory), setting)
    }

    func run() throws {
        try reportingErrors {
            try refuseOverlaps(
                [("--json", json), ("--html", html)],
                inputs: [("--model", model), ("--train", train), ("--checkpoints", checkpoints)])
            try checkCacheDirectory(cache)
            // Outputs are checked and locked before any work.
            let pageLock = try html.map {
                try claimOutputFile($0, kind: "audit page", overwrite: overwrite, isSameKind: AuditCommand.isPage)
            }
            let jsonLock = try json.map {
                try claimOutputFile($0, kind: "audit report", overwrite: overwrite, isSameKind: AuditCommand.isReport)
            }
            defer { withExtendedLifetime((pageLock, jsonLock)) {} }
            let nThreads = threading.count
            let trainFile = try DataLocation.file(fileURL(train), split: "train")
            var texts = try columns.reader().read(trainFile)
            if let maxTrain { texts = seededSample(texts, maxTrain, seed: seed, stream: 1) }
            var clf = try loadClassifier(model, threads: nThreads)
            try requireTwoClasses(texts, in: trainFile, model: clf)
            try checkFeaturizerMemory(
                clf, kernels: [kernel, .tracin, .trak], projDim: projDim, projector: projection.choice)
            var flipSetting: AuditFlip?
            var checkpointsURL = checkpoints.map(fileURL)
            if let flip {
                let retrained = try retrainFlipped(&texts, rate: flip, model: clf, trainFile: trainFile)
                (clf, checkpointsURL, flipSetting) = (retrained.classifier, retrained.checkpoints, retrained.setting)
            }
            let setup = AttributionSetup(
                classifier: clf, train: texts, projDim: projDim, seed: seed, projector: projection.choice,
                cache: fileURL(cache),
                selector: selectionOptions.selector(seed: seed), threads: nThreads, checkpoints: checkpointsURL)
            let stages = StageProgress()
            var (report, scores) = try Audit.run(
                setup: setup, kernel: kernel, methods: methods, top: min(top, texts.count), proponents: proponents,
                modelName: model,
                trainName: displayPath(trainFile) + (maxTrain.map { " (random \($0), seed \(seed))" } ?? ""),
                log: { printError($0) }, progress: { stages.report($0, $1, $2) })
            if let flipSetting {
                let positive = Set(flipSetting.flipped)
                for (m, s) in scores.enumerated() {
                    report.methods[m].auc = Poisoning.auc(scores: s, positive: positive)
                    report.methods[m].precisionAtFlipRate = Audit.precision(
                        scores: s, positive: positive, k: positive.count)
                }
                report.flip = flipSetting
            }
            print(AuditHTML.markdown(report))
            if let json {
                try ReportFile.write(report, to: fileURL(json))
                printError("wrote \(json)")
            }
            if let html {
                try AtomicFile.write(Data(AuditHTML.render(report).utf8), to: fileURL(html))
                printError("wrote \(html)")
            }
        }
    }
}

/// What identifies a --flip retraining: another value means another model.
private struct FlipKey: Encodable {
    let recipe: String
    let options: TangentTraining.TrainingOptions
    let train: String
    let seed: UInt64
}
