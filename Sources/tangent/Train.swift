import ArgumentParser
import Foundation
import TangentData
import TangentFeatures
import TangentIO
import TangentModel
import TangentSafetensors
import TangentTensor
import TangentTokenizer
import TangentTraining

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Train a transformer classifier, or fine-tune a Hugging Face encoder, and save it as a model directory.",
        discussion: """
            From scratch (--tokenizer): writes OUT/config.json, model.safetensors, tokenizer.model \
            and labels.json. Fine-tuning (--init DIR, a Hugging Face BERT-family directory): all \
            weights train, with DIR's classification head when its labels (id2label) are the data's \
            and a new head otherwise; OUT is a Hugging Face directory (config.json with id2label, \
            model.safetensors, the tokenizer files with model_max_length = --max-len) that \
            transformers' AutoModelForSequenceClassification loads. Either way OUT is written after \
            every epoch (atomically), so an interrupted or diverging run keeps its last finished \
            epoch. Labels are indexed in sorted order.
            """)

    @Option(help: "Training data: a file (.jsonl/.csv/.tsv) or a directory with train.* (and test.*).")
    var data: String
    @Option(help: "Test data (default: the test.* file beside the training data, when present).")
    var test: String?
    @Option(help: "SentencePiece .model file (see `tangent tokenizer train`), for a model trained from scratch.")
    var tokenizer: String?
    @Option(
        name: .customLong("init"),
        help:
            "A Hugging Face encoder directory (bert, roberta, xlm-roberta, camembert, distilbert, electra, albert) to fine-tune instead."
    )
    var initDirectory: String?
    @Option(help: "Output model directory.")
    var out: String
    @Flag(help: "Replace an existing model directory.")
    var overwrite = false
    @Flag(
        help:
            "Continue an interrupted run in OUT after its last finished epoch, with the same settings; bit-identical to an uninterrupted run on the same machine and thread count."
    )
    var resume = false

    @OptionGroup var architecture: ArchitectureOptions
    @Option(parsing: .unconditional, help: "Maximum tokens per text, BOS included (longer texts are cut).") var maxLen:
        Int = 64
    @Option(
        name: .customLong("pooling"),
        help: "Pooling of token states into the text's vector (tangent's models). (default: mean)")
    var poolingOption: ModelConfig.Pooling?
    var pooling: ModelConfig.Pooling { poolingOption ?? .mean }

    @Option(parsing: .unconditional, help: "Passes over the training data.") var epochs: Int = 5
    @Option(parsing: .unconditional, help: "Texts per step.") var batchSize: Int = 32
    @Option(parsing: .unconditional, help: "Peak learning rate of AdamW (default: 1e-3, or 5e-5 with --init).") var lr:
        Double?
    @Option(parsing: .unconditional, help: "Share of steps for linear warm-up.") var warmup: Double = 0.1
    @Option(help: "Decay of the learning rate after warm-up.") var decay: LearningRateSchedule.Decay = .linear
    @Option(parsing: .unconditional, help: "AdamW weight decay (weight matrices only).") var weightDecay: Double = 0.01
    @Option(parsing: .unconditional, help: "Clip the global gradient norm to this value (0: off).") var clip: Double =
        1.0
    @Option(parsing: .unconditional, help: "Dropout rate on embeddings and residual branches (0: off).") var dropout:
        Double = 0.1
    @Option(parsing: .unconditional, help: "Seed of initialization, shuffling and dropout.") var seed: UInt64 = 0
    @Option(
        help:
            "With --init: save weights above this size in shards (model-0000i-of-0000n.safetensors and model.safetensors.index.json), e.g. 2GB. (default: 50GB, as transformers)"
    )
    var maxShardSize: String?
    @Flag(help: "Also keep OUT/checkpoints/epoch-K.safetensors for every epoch (for TracIn).")
    var keepCheckpoints = false
    @OptionGroup var threading: ThreadOptions
    @OptionGroup var columns: ColumnOptions

    func validate() throws {
        try Check.atLeast(maxLen, 2, "--max-len")
        guard maxLen <= ModelConfig.maximumDimension else {
            throw ValidationError(
                "--max-len \(maxLen) is above the largest supported size \(ModelConfig.maximumDimension)")
        }
        try Check.positive(epochs, "--epochs")
        try Check.positive(batchSize, "--batch-size")
        if let lr { try Check.positive(lr, "--lr") }
        guard (tokenizer == nil) != (initDirectory == nil) else {
            throw ValidationError(
                "give --tokenizer (train a model from scratch) or --init (fine-tune a Hugging Face encoder), not both or neither"
            )
        }
        guard warmup >= 0, warmup < 1 else {
            throw ValidationError("--warmup must be at least 0 and below 1, got \(warmup)")
        }
        try Check.nonNegative(weightDecay, "--weight-decay")
        try Check.nonNegative(clip, "--clip")
        try Check.rate(dropout, "--dropout")
        if resume && overwrite {
            throw ValidationError("--resume continues OUT and --overwrite replaces it; give one of them")
        }
        if let maxShardSize {
            guard initDirectory != nil else {
                throw ValidationError(
                    "--max-shard-size applies to Hugging Face directories (--init); tangent's own models are one model.safetensors"
                )
            }
            _ = try Check.bytes(maxShardSize, "--max-shard-size")
        }
        if initDirectory != nil {
            let shape = architecture.given + (poolingOption == nil ? [] : ["--pooling"])
            guard shape.isEmpty else {
                throw shapeFlagsWithInit(shape)
            }
        }
    }

    func run() throws {
        try reportingErrors {
            let outURL = fileURL(out)
            try refuseOverlaps(
                [("--out", out)],
                inputs: [("--data", data), ("--test", test), ("--tokenizer", tokenizer), ("--init", initDirectory)])
            try refuseInterruptedRun(in: outURL)
            let lock = try claimOutputDirectory(
                out, kind: "model directory", markers: ModelDirectory.markerFiles, overwrite: overwrite || resume)
            defer { withExtendedLifetime(lock) {} }
            // --overwrite writes the new model beside the old one and swaps it in after its
            // first epoch: no file of the old model survives, and a run that fails before
            // then leaves the old model as it was.
            let staged =
                overwrite && FileManager.default.fileExists(atPath: outURL.path)
                ? try StagedDirectory(replacing: outURL) : nil
            var swapped = false
            defer { if !swapped { staged?.discard() } }
            let previous = try unfinishedModel(outURL)
            let (trainFile, testFile) = try dataFiles()
            let reader = columns.reader()
            let trainTexts = try reader.read(trainFile)
            try requireTwoClasses(trainTexts, in: trainFile)
            let nThreads = threading.count
            let fresh = try startingClassifier(
                for: trainTexts, initDirectory: initDirectory, tokenizerPath: tokenizer, architecture: architecture,
                maxLen: maxLen, pooling: pooling, seed: seed, threads: nThreads, announce: previous == nil)
            let classifier = previous ?? fresh
            let dataFingerprint = fingerprint(labelled: trainTexts)
            let model = classifier.model
            let labels = classifier.labels
            let trainSet = try encodedSet(trainTexts, trainFile, for: classifier)
            let testSet = try testFile.map { try encodedSet(try reader.read($0), $0, for: classifier) }

            let options = try trainingOptions()
            let trainer = try Trainer(model: model, options: options)
            var history: [EpochSummary] = []
            if let previous {
                history = try resumeState(
                    previous, fresh: fresh, options: options, dataFingerprint: dataFingerprint, threads: nThreads,
                    trainer: trainer, stepsPerEpoch: trainer.stepsPerEpoch(trainSet.count))
                printError("resuming \(out) after epoch \(history.count) of \(epochs)")
            }
            printError(
                "training on \(trainSet.count) texts of \(trainFile.path) (\(labels.names.joined(separator: ", "))); "
                    + "\(model.layout.count) parameters; \(nThreads) threads"
                    + (testFile.map { "; testing on \(testSet?.count ?? 0) texts of \($0.path)" } ?? ""))

            let dataset = datasetRecord(trainFile, testFile, trainTexts: trainSet.count, testTexts: testSet?.count)
            func extra(final: Bool) throws -> [String: Any] {
                try configExtra(
                    options: options, dataset: dataset, dataFingerprint: dataFingerprint, threads: nThreads,
                    history: history,
                    parameters: model.layout.count, final: final)
            }
            // Hugging Face directories shard above --max-shard-size, as save_pretrained does.
            let shardBytes = try initDirectory.map { _ in try Check.bytes(maxShardSize ?? "50GB", "--max-shard-size") }
            func trainingRun(into directory: URL) -> TrainingRun {
                TrainingRun(
                    classifier: classifier, directory: directory, options: options, keepCheckpoints: keepCheckpoints,
                    trainTexts: trainSet.count, dataFingerprint: dataFingerprint, threads: nThreads,
                    maxShardBytes: shardBytes)
            }
            var run = trainingRun(into: staged?.staging ?? outURL)
            let summaries = try trainEpochs(trainer, trainSet, testSet, after: history.count) { s in
                history.append(s)
                try run.finishEpoch(s, trainer: trainer, history: history, extra: try extra(final: s.epoch == epochs))
                if let staged, !swapped {
                    try staged.commit()
                    swapped = true
                    run = trainingRun(into: outURL)
                }
            }
            guard let last = summaries.last ?? history.last else { throw DataError("\(out): no epoch was trained") }
            print(
                "saved \(out): \(history.count) epochs, train accuracy \(String(format: "%.4f", last.trainAccuracy))"
                    + (last.testAccuracy.map { String(format: ", test accuracy %.4f", $0) } ?? ""))
        }
    }

    /// Trains the epochs after the first `after`, with a progress bar per epoch that ends
    /// with its summary; `finished` saves each epoch.
    func trainEpochs(
        _ trainer: Trainer, _ trainSet: EncodedSet, _ testSet: EncodedSet?, after: Int,
        finished: (EpochSummary) throws -> Void
    ) throws -> [EpochSummary] {
        let stages = StageProgress()
        return try trainer.train(
            trainSet, test: testSet, after: after,
            progress: { epoch, done, total, status in
                // The epoch's bar ends with its summary, below.
                stages.report("epoch \(epoch)/\(epochs)", done, total, status: status, finishAtTotal: false)
            },
            onEpochEnd: { s in
                let status = Train.status(s)
                stages.finish(status: status)
                if !stages.drawsInPlace { printError("epoch \(s.epoch): \(status)") }
                try finished(s)
            })
    }

    /// config.json's record of the data set (beside the architecture, rewritten after every epoch).
    func datasetRecord(_ trainFile: URL, _ testFile: URL?, trainTexts: Int, testTexts: Int?) -> [String: Any] {
        [
            "train": displayPath(trainFile), "test": testFile.map(displayPath) as Any, "train_texts": trainTexts,
            "test_texts": testTexts as Any, "text_column": columns.textColumn, "label_column": columns.labelColumn,
        ]
    }

    /// The model in OUT when resuming (refused when its training finished), else nil.
    func unfinishedModel(_ outURL: URL) throws -> Classifier? {
        guard resume else { return nil }
        let previous = try Classifier(directory: outURL, threads: threading.count)
        if previous.configJSON["complete"] as? Bool != false {
            throw DataError("\(out): training already finished (config.json says complete); nothing to resume")
        }
        return previous
    }

    /// The training file, and the test file (--test, else a test.* beside a --data directory's train.*).
    func dataFiles() throws -> (train: URL, test: URL?) {
        let dataURL = fileURL(data)
        let trainFile = try DataLocation.file(dataURL, split: "train")
        let testFile: URL? =
            try test.map { try DataLocation.file(fileURL($0), split: "test") }
            ?? (trainFile == dataURL ? nil : DataLocation.optionalFile(dataURL, split: "test"))
        return (trainFile, testFile)
    }

    /// An epoch's one-line summary: training loss and accuracy, and the test's when there is one.
    static func status(_ s: EpochSummary) -> String {
        var status = String(format: "train loss %.4f acc %.4f", s.trainLoss, s.trainAccuracy)
        if let a = s.testAccuracy, let l = s.testLoss { status += String(format: " | test loss %.4f acc %.4f", l, a) }
        return status
    }

    /// The options as given (lr: 1e-3 from scratch, 5e-5 for fine-tuning), validated.
    func trainingOptions() throws -> TrainingOptions {
        var options = TrainingOptions()
        options.epochs = epochs
        options.batchSize = batchSize
        options.learningRate = lr ?? (initDirectory == nil ? 1e-3 : 5e-5)
        options.warmupFraction = warmup
        options.decay = decay
        options.weightDecay = weightDecay
        options.clipNorm = clip
        options.dropout = dropout
        options.seed = seed
        try options.validate()
        return options
    }

    /// The training record of `config.json`: options, data set, history and final metrics.
    func configExtra(
        options: TrainingOptions, dataset: [String: Any], dataFingerprint: String, threads: Int,
        history: [EpochSummary],
        parameters: Int, final: Bool
    ) throws -> [String: Any] {
        let enc = JSONEncoder()
        var e: [String: Any] = [
            "training": try JSONSerialization.jsonObject(with: enc.encode(options)),
            "dataset": dataset,
            "tokenizer_source": tokenizer ?? initDirectory ?? "",
            "train_fingerprint": dataFingerprint,
            "threads": threads,
            "epochs_completed": history.count,
            "history": try JSONSerialization.jsonObject(with: enc.encode(history)),
            "parameter_count": parameters,
        ]
        // Absolute: `lds --recipe` starts its models from it, from any directory.
        if let initDirectory { e["init"] = fileURL(initDirectory).standardizedFileURL.path }
        if let last = history.last {
            e["train_accuracy"] = last.trainAccuracy
            if let a = last.testAccuracy { e["test_accuracy"] = a }
            if let l = last.testLoss { e["test_loss"] = l }
        }
        e["complete"] = final
        return e
    }

    /// Without --resume or --overwrite, an OUT that holds an interrupted run is refused with
    /// the advice to continue it (which keeps its finished epochs) rather than replace it.
    func refuseInterruptedRun(in outURL: URL) throws {
        guard !resume && !overwrite,
            let data = try? WholeFile.read(outURL.appendingPathComponent(ModelDirectory.configFile)),
            let file = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            // A Hugging Face directory keeps tangent's record under one key.
            case let json = file["tangent"] as? [String: Any] ?? file, json["complete"] as? Bool == false
        else { return }
        let done = json["epochs_completed"] as? Int ?? 0
        try refuseIfBeingWritten(outURL, kind: "model directory")
        throw DataError(
            "\(out): holds an interrupted training run (\(done) epoch\(done == 1 ? "" : "s") finished); pass --resume to continue it with the same settings, or --overwrite to start again"
        )
    }

    /// The most tokens a text keeps (BOS or framing included) under `classifier`'s encoder.
    static func maxLength(_ classifier: Classifier) -> Int? {
        (classifier.encoder as? HFTextEncoder)?.maxLength ?? classifier.tangentModel?.config.maxLen
    }

    /// Checks that a resumed run has the settings of the interrupted one, restores the
    /// optimizer, and returns the finished epochs' history.
    func resumeState(
        _ previous: Classifier, fresh: Classifier, options: TrainingOptions, dataFingerprint: String, threads: Int,
        trainer: Trainer, stepsPerEpoch: Int
    ) throws -> [EpochSummary] {
        let recorded = try RecordedTraining(configJSON: previous.configJSON, source: out + "/config.json")
        var differences: [String] = []
        if let old = recorded.options {
            let a = try JSONSerialization.jsonObject(with: JSONEncoder().encode(old)) as? [String: Any] ?? [:]
            let b = try JSONSerialization.jsonObject(with: JSONEncoder().encode(options)) as? [String: Any] ?? [:]
            for key in Set(a.keys).union(b.keys).sorted() where "\(a[key] ?? "-")" != "\(b[key] ?? "-")" {
                differences.append("\(key) (\(a[key] ?? "-") then, \(b[key] ?? "-") now)")
            }
        } else {
            differences.append("training options (not recorded in config.json)")
        }
        if recorded.dataFingerprint != dataFingerprint {
            differences.append("training texts (\(data) differs from the data of the interrupted run)")
        }
        // The pretrained start: `lds --recipe` fine-tunes from the recorded directory.
        let recordedInit = (previous.configJSON["init"] as? String).map { PathOverlap.resolved(fileURL($0)) }
        let givenInit = initDirectory.map { PathOverlap.resolved(fileURL($0)) }
        if recordedInit != givenInit {
            differences.append("--init (\(recordedInit ?? "none") then, \(givenInit ?? "none") now)")
        }
        let (lengthThen, lengthNow) = (Train.maxLength(previous), Train.maxLength(fresh))
        if lengthThen != lengthNow {
            differences.append(
                "--max-len (\(lengthThen.map(String.init) ?? "?") then, \(lengthNow.map(String.init) ?? "?") now)")
        } else {
            if previous.model.configurationData != fresh.model.configurationData {
                differences.append("architecture or tokenizer (model configuration differs)")
            }
            if previous.encoder.identity != fresh.encoder.identity {
                differences.append("tokenizer (\(tokenizer ?? initDirectory ?? "") is not the one in \(out))")
            }
        }
        if previous.labels != fresh.labels {
            differences.append("labels (\(previous.labels.names) then, \(fresh.labels.names) now)")
        }
        if let t = recorded.threads, t != threads {
            differences.append("threads (\(t) then, \(threads) now; bit-identical results need the same count)")
        }
        guard differences.isEmpty else {
            throw DataError("\(out): cannot resume with other settings: \(differences.joined(separator: "; "))")
        }
        return try ResumeState.restore(
            from: fileURL(out).appendingPathComponent(ResumeState.fileName), into: previous.model, trainer: trainer,
            stepsPerEpoch: stepsPerEpoch, directory: out)
    }
}
