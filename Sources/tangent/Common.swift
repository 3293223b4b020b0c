import ArgumentParser
import Foundation
import TangentAttribution
import TangentData
import TangentEvaluation
import TangentFeatures
import TangentIO
import TangentModel
import TangentReports
import TangentSafetensors
import TangentTensor
import TangentTokenizer
import TangentTraining

/// Options naming the text and label columns of CSV/TSV files (and fields of JSON Lines).
struct ColumnOptions: ParsableArguments {
    @Option(help: "Column (CSV/TSV) or field (JSON Lines) holding the text.")
    var textColumn: String = "text"
    @Option(help: "Column (CSV/TSV) or field (JSON Lines) holding the label.")
    var labelColumn: String = "label"

    func reader(requireLabels: Bool = true) -> DatasetReader {
        DatasetReader(textColumn: textColumn, labelColumn: labelColumn, requireLabels: requireLabels)
    }
}

/// Writes a line to standard error (diagnostics and progress; results go to standard output).
func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// Turns any error into a clean message and a non-zero exit, without a stack trace.
func reportingErrors<R>(_ body: () throws -> R) throws -> R {
    do { return try body() } catch let e as ExitCode { throw e } catch let e as CleanExit { throw e } catch let e
        as ValidationError
    {
        throw e
    } catch {
        printError("error: \(error)")
        throw ExitCode.failure
    }
}

func fileURL(_ path: String) -> URL { URL(fileURLWithPath: path) }

/// A path relative to the working directory when it lies inside it, so files written
/// into the repository (config.json) do not record one machine's absolute paths.
func displayPath(_ url: URL) -> String {
    let cwd = FileManager.default.currentDirectoryPath
    let p = url.standardizedFileURL.path
    return p.hasPrefix(cwd + "/") ? String(p.dropFirst(cwd.count + 1)) : p
}

/// The transformer's shape, shared by `train` and the benchmarks.
struct ArchitectureOptions: ParsableArguments {
    @Option(name: .customLong("d-model"), parsing: .unconditional, help: "Model width. (default: 128)")
    var dModelOption: Int?
    @Option(name: .customLong("heads"), parsing: .unconditional, help: "Attention heads. (default: 4)") var headsOption:
        Int?
    @Option(name: .customLong("layers"), parsing: .unconditional, help: "Transformer blocks. (default: 2)")
    var layersOption: Int?
    @Option(name: .customLong("d-ff"), parsing: .unconditional, help: "Feed-forward width. (default: 512)")
    var dFFOption: Int?

    var dModel: Int { dModelOption ?? 128 }
    var heads: Int { headsOption ?? 4 }
    var layers: Int { layersOption ?? 2 }
    var dFF: Int { dFFOption ?? 512 }

    /// The options the command line gave (a fine-tune takes its shape from the checkpoint,
    /// so these are refused with --init rather than ignored).
    var given: [String] {
        [("--d-model", dModelOption), ("--heads", headsOption), ("--layers", layersOption), ("--d-ff", dFFOption)]
            .compactMap { $0.1 == nil ? nil : $0.0 }
    }

    func validate() throws {
        guard dModel > 0, heads > 0, dModel % heads == 0 else {
            throw ValidationError("--d-model must be a positive multiple of --heads")
        }
        guard layers >= 0 else { throw ValidationError("--layers must be zero or positive, got \(layers)") }
        try Check.positive(dFF, "--d-ff")
        let limit = ModelConfig.maximumDimension
        for (option, value) in [("--d-model", dModel), ("--heads", heads), ("--layers", layers), ("--d-ff", dFF)]
        where value > limit {
            throw ValidationError("\(option) \(value) is above the largest supported size \(limit)")
        }
        // The weights alone (before the vocabulary and positions, unknown here) must fit.
        let config = ModelConfig(
            vocabSize: 3, maxLen: 2, dModel: dModel, nHeads: heads, nLayers: layers, dFF: dFF, nClasses: 2)
        do { try config.validate() } catch let e as ModelError {
            throw ValidationError(
                "--d-model \(dModel), --heads \(heads), --layers \(layers), --d-ff \(dFF): \(e.description.replacingOccurrences(of: "config: ", with: ""))"
            )
        }
    }
}

/// The refusal of shape flags (`--d-model`, `--pooling`, ...) beside `--init`: a fine-tune
/// takes its architecture from the checkpoint, so they would be ignored.
func shapeFlagsWithInit(_ flags: [String]) -> ValidationError {
    let one = flags.count == 1
    return ValidationError(
        "\(flags.joined(separator: ", ")) \(one ? "sets" : "set") the shape of a model trained from scratch; with --init the architecture is the checkpoint's (its config.json), so leave \(one ? "it" : "them") out"
    )
}

/// A seeded random sample of n texts in file order (data files are often sorted by label).
func seededSample(_ texts: [LabeledText], _ n: Int, seed: UInt64, stream: UInt64) -> [LabeledText] {
    if n >= texts.count { return texts }
    let rng = CounterRNG.derive(seed, 0x5A3B1E, stream)
    let chosen = texts.indices.sorted { rng.bits(UInt64($0)) < rng.bits(UInt64($1)) }.prefix(n).sorted()
    return chosen.map { texts[$0] }
}

/// Training and test texts of the commands that train their own models (`poison`, `lds`):
/// `data` is a training file or a directory with train.* (and test.*, unless `test` names
/// one); `maxTrain`/`maxTest` draw the seeded samples `compare` draws.
func readTrainAndTest(data: String, test: String?, columns: ColumnOptions, maxTrain: Int?, maxTest: Int?, seed: UInt64)
    throws
    -> (trainFile: URL, testFile: URL, train: [LabeledText], test: [LabeledText])
{
    let dataURL = fileURL(data)
    let trainFile = try DataLocation.file(dataURL, split: "train")
    guard
        let testFile = try test.map({ try DataLocation.file(fileURL($0), split: "test") })
            ?? (trainFile == dataURL ? nil : DataLocation.optionalFile(dataURL, split: "test"))
    else {
        throw DataError("\(data): no test.* file beside the training data; give --test")
    }
    let reader = columns.reader()
    var trainTexts = try reader.read(trainFile)
    var testTexts = try reader.read(testFile)
    if let maxTrain { trainTexts = seededSample(trainTexts, maxTrain, seed: seed, stream: 1) }
    if let maxTest { testTexts = seededSample(testTexts, maxTest, seed: seed, stream: 2) }
    return (trainFile, testFile, trainTexts, testTexts)
}

/// A freshly initialized classifier for `texts` (labels collected from them, in sorted
/// order) with the tokenizer at `tokenizerPath`, and the texts encoded for training.
func newClassifier(
    for texts: [LabeledText], tokenizerPath: String, architecture: ArchitectureOptions,
    maxLen: Int, pooling: ModelConfig.Pooling, seed: UInt64, threads: Int
) throws -> Classifier {
    let labels = try LabelSet(collecting: texts)
    let tok = try Tokenizer(contentsOf: fileURL(tokenizerPath))
    var config = ModelConfig(
        vocabSize: tok.vocabSize, maxLen: maxLen, dModel: architecture.dModel, nHeads: architecture.heads,
        nLayers: architecture.layers, dFF: architecture.dFF, nClasses: labels.count, pooling: pooling)
    config.padID = Int(tok.padID)
    config.bosID = Int(tok.bosID)
    guard tok.padID == 0, tok.bosID >= 0 else {
        throw TokenizerError(
            "\(tokenizerPath): tokenizer must have pad_id=0 and a bos id (train it with `tangent tokenizer train`)")
    }
    let model = try TransformerClassifier<Float>.initialized(config: config, seed: seed, threads: threads)
    return try Classifier(model: model, tokenizer: tok, labels: labels)
}

/// The model a training command starts from: the encoder in `initDirectory` with a new head
/// for the texts' labels (announced when `announce`), or a new model of tangent's
/// architecture over the tokenizer at `tokenizerPath`.
func startingClassifier(
    for texts: [LabeledText], initDirectory: String?, tokenizerPath: String?, architecture: ArchitectureOptions,
    maxLen: Int, pooling: ModelConfig.Pooling, seed: UInt64, threads: Int, announce: Bool
) throws -> Classifier {
    if let initDirectory {
        let (loaded, head) = try ModelRegistry.loadForFineTuning(
            directory: fileURL(initDirectory), labels: try LabelSet(collecting: texts).names, maxLength: maxLen,
            seed: seed, threads: threads)
        if announce { printError("fine-tuning \(initDirectory) (\(loaded.model.architecture)) with \(head)") }
        return try Classifier(model: loaded.model, encoder: loaded.encoder, labels: loaded.labels)
    }
    guard let tokenizerPath else {
        throw ValidationError(
            "give --tokenizer (train a model from scratch) or --init (fine-tune a Hugging Face encoder)")
    }
    return try newClassifier(
        for: texts, tokenizerPath: tokenizerPath, architecture: architecture, maxLen: maxLen, pooling: pooling,
        seed: seed, threads: threads)
}

/// Labelled texts encoded as the classifier's model sees them; `file` names them in errors.
func encodedSet(_ texts: [LabeledText], _ file: URL, for classifier: Classifier) throws -> EncodedSet {
    EncodedSet(
        sequences: try texts.map { try classifier.encode($0.text) },
        labels: try classifier.labels.indices(of: texts, source: file.path))
}

/// Renders DIR/report.html from DIR/report.json and, when present, DIR/poisoning.json,
/// so either command can run first. Does nothing without a comparison report.
func renderReportPage(in dir: URL) throws {
    let reportURL = dir.appendingPathComponent("report.json")
    guard FileManager.default.fileExists(atPath: reportURL.path) else { return }
    let report = try ReportFile.read(ComparisonReport.self, from: reportURL)
    let poisonURL = dir.appendingPathComponent("poisoning.json")
    var poisoning =
        FileManager.default.fileExists(atPath: poisonURL.path)
        ? try ReportFile.read(PoisonReport.self, from: poisonURL) : nil
    // A benchmark of another data set left in the same directory must not be shown as this
    // one's: it belongs when it poisoned the same training file and labels of these classes.
    if let p = poisoning {
        func file(_ name: String) -> String { name.components(separatedBy: " (random ").first ?? name }
        let labels = [p.plan.source, p.plan.target]
        if file(p.data) != file(report.train) || !labels.allSatisfy(report.classes.contains) {
            printError(
                "note: \(poisonURL.path) is a benchmark of \(p.data) (\(labels.joined(separator: " -> "))), not of the report's \(report.train); left out of report.html"
            )
            poisoning = nil
        }
    }
    try AtomicFile.write(ReportHTML.render(report, poisoning: poisoning), to: dir.appendingPathComponent("report.html"))
}

/// DIR/lds.json of an LDS run, which must be over the training texts `train` (as a report
/// names them: file, sample size and seed).
/// With `texts` (the training texts themselves, in `compare`), the run must carry their
/// fingerprint: a path and a count do not tell two data sets apart.
func readLDS(_ dir: String, train: String, trainTexts: Int, texts: [LabeledText]? = nil) throws -> LDSReport {
    let url = fileURL(dir).appendingPathComponent("lds.json")
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw DataError("\(dir): no lds.json; run `tangent lds --out \(dir)` first")
    }
    let r = try ReportFile.read(LDSReport.self, from: url)
    guard let s = r.setting, s.train == train, s.trainTexts == trainTexts else {
        throw DataError(
            "\(url.path): its training texts (\(r.setting?.train ?? "unknown")) are not the report's (\(train)); use the same --train, --max-train and --seed"
        )
    }
    if let texts {
        guard let recorded = s.trainFingerprint else {
            throw DataError(
                "\(url.path): written before LDS runs recorded their texts' fingerprint, so they cannot be checked; run `tangent lds` on \(dir) again (it reuses its trained models)"
            )
        }
        guard recorded == fingerprint(labelled: texts) else {
            throw DataError(
                "\(url.path): its training texts have the same name and count as the report's (\(train)) but other contents (fingerprint \(recorded), not \(fingerprint(labelled: texts)))"
            )
        }
    }
    return r.compacted
}

/// Refuses, before any work, an output that is, contains or lies inside one of the
/// command's inputs, however either is spelled (see `PathOverlap`).
/// Each entry is an option and its value (nil when not given).
func refuseOverlaps(_ outputs: [(String, String?)], inputs: [(String, String?)]) throws {
    let named = inputs.compactMap { option, path in path.map { PathOverlap.Named(option, $0) } }
    let given = outputs.compactMap { option, path in path.map { PathOverlap.Named(option, $0) } }
    for (i, output) in given.enumerated() {
        try PathOverlap.check(output: output, inputs: named)
        // Two outputs of one run must not be one path either.
        if let other = given[..<i].first(where: {
            PathOverlap.resolved(fileURL($0.path)) == PathOverlap.resolved(fileURL(output.path))
        }) {
            throw OutputError(
                "\(other.option) and \(output.option) name the same file (\(output.path)); give each output its own path"
            )
        }
    }
}

/// Saves `classifier` as a whole model directory at `url`: written into a staging
/// directory and swapped in, so no file of a model that was there survives and a failure
/// leaves it as it was. Hold `url`'s output lock.
func saveModelDirectory(_ classifier: Classifier, to url: URL, extra: [String: Any]) throws {
    let staged = try StagedDirectory(replacing: url)
    do {
        try classifier.save(to: staged.staging, extra: extra)
        try staged.commit()
    } catch {
        staged.discard()
        throw error
    }
}

/// Checks a file output before any work (see `OutputPath.checkFile`) and locks it for
/// the run; keep the lock alive until the file is written. `isSameKind` says whether an
/// existing file is one `--overwrite` may replace.
func claimOutputFile(_ path: String, kind: String, overwrite: Bool, isSameKind: (URL) -> Bool) throws -> OutputLock {
    let url = fileURL(path)
    try OutputPath.checkFile(url, kind: kind, overwrite: overwrite, isSameKind: isSameKind)
    let lock = try OutputLock(guarding: url, what: "\(url.path)")
    // Again under the lock: a run that held it may have written the file meanwhile.
    try OutputPath.checkFile(url, kind: kind, overwrite: overwrite, isSameKind: isSameKind)
    return lock
}

/// Checks an output directory before any work (see `OutputPath.checkDirectory`) and
/// locks it for the run.
func claimOutputDirectory(
    _ path: String, kind: String, markers: [String], overwrite: Bool,
    allowOtherFiles: Bool = false
) throws -> OutputLock {
    let url = fileURL(path)
    do {
        try OutputPath.checkDirectory(
            url, kind: kind, markers: markers, overwrite: overwrite, allowOtherFiles: allowOtherFiles)
    } catch {
        try refuseIfBeingWritten(url, kind: kind)
        throw error
    }
    let lock = try OutputLock(guarding: url, what: "the \(kind) in \(url.path)")
    try OutputPath.checkDirectory(
        url, kind: kind, markers: markers, overwrite: overwrite, allowOtherFiles: allowOtherFiles)
    return lock
}

/// Before refusing an existing output for what it holds, says instead that another
/// process is writing it, when one holds its lock: a running job's half-made output is
/// not a finished or interrupted one, and --overwrite or --resume would not help.
func refuseIfBeingWritten(_ url: URL, kind: String) throws {
    guard FileManager.default.fileExists(atPath: url.path) else { return }
    _ = try OutputLock(guarding: url, what: "the \(kind) in \(url.path)")
}

/// Whether `url` is a safetensors file whose header carries the format tag `format`.
func hasFormat(_ format: String) -> (URL) -> Bool {
    { SafetensorsFile.formatTag(of: $0) == format }
}

/// A cache directory must be a directory we can write in.
func checkCacheDirectory(_ path: String) throws {
    try OutputPath.checkDirectory(
        fileURL(path), kind: "feature cache", markers: [], overwrite: true, allowOtherFiles: true)
}

/// A surrogate separates classes: training texts of a single class leave it nothing to
/// learn (p = 1 for everything, no opponents), so they are refused, as `train` does.
/// With `model`, also that every label is one the model knows (the error names the file
/// and line, before any work).
func requireTwoClasses(_ texts: [LabeledText], in file: URL, model: Classifier? = nil) throws {
    let labels = Set(texts.compactMap(\.label))
    guard labels.count >= 2 else {
        throw DataError(
            "\(file.path): all \(texts.count) training texts have the label '\(labels.first ?? "")'; a classifier and its surrogate need training texts of at least two classes"
        )
    }
    if let model { _ = try model.labels.indices(of: texts, source: file.path) }
}

/// Loads a model directory; warns when its training did not finish (`complete: false`
/// in config.json: a run stopped mid-training keeps its last finished epoch).
func loadClassifier(_ path: String, threads: Int) throws -> Classifier {
    let clf = try Classifier(directory: fileURL(path), threads: threads)
    if let complete = clf.configJSON["complete"] as? Bool, !complete {
        let done = clf.configJSON["epochs_completed"] as? Int
        let planned = ((clf.configJSON["training"] as? [String: Any])?["epochs"] as? Int)
        printError(
            "warning: \(path): training did not finish (\(done.map(String.init) ?? "?") of \(planned.map(String.init) ?? "?") epochs); "
                + "the model is its last finished epoch. Finish it with `tangent train ... --out \(path) --resume`.")
    }
    return clf
}

/// Refuses, before any work, a featurization whose blocks would not fit in this machine's
/// memory (80% of it): the library says what a run needs, the CLI decides what is too much.
func checkFeaturizerMemory(_ clf: Classifier, _ options: FeaturizeOptions) throws {
    let need = try Featurizer.memoryEstimate(options: options, classifier: clf)
    let available = ProcessInfo.processInfo.physicalMemory
    guard need < available / 10 * 8 else {
        throw ValidationError(
            "--proj-dim \(options.projDim) with blocks of \(options.batchSize) texts would need about \(ByteSize.describe(Double(need))) of memory for \(options.kind.rawValue) features, more than this machine's \(ByteSize.describe(Double(available))) allows; lower --proj-dim or --batch-size"
        )
    }
}

/// `checkFeaturizerMemory` for the features of each of `kernels` at K = `projDim`.
func checkFeaturizerMemory(_ clf: Classifier, kernels: [SurrogateKernel], projDim: Int, projector: ProjectorChoice)
    throws
{
    for kind in Set(kernels.map(\.features)).sorted(by: { $0.rawValue < $1.rawValue }) {
        var options = FeaturizeOptions(kind: kind)
        options.projDim = projDim
        options.projector = projector
        try checkFeaturizerMemory(clf, options)
    }
}
