import ArgumentParser
import Foundation
import TangentAttribution
import TangentData
import TangentFeatures
import TangentIO
import TangentModel
import TangentReports
import TangentSurrogate
import TangentTensor

struct Attribute: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explain predictions by training texts: top proponents and opponents under a kernel surrogate.",
        discussion: """
            Fits the kGLM surrogate (L2 multinomial logistic regression on the train x train kernel; lambda \
            chosen by k-fold cross-validation on the training texts, see --selection) and scores training \
            text i for the predicted class c as W[c, i] * K(x, x_i): positive scores push the prediction \
            toward c (proponents), negative ones away (opponents). Training features and the fitted surrogate \
            are cached in --cache, so later calls are fast. Kernels: proj-trntk (default), proj-pntk, \
            embedding, ck, grad-cos, tracin (summed over MODEL/checkpoints when present), if-head, if-proj, and the exact trntk and pntk-norm (exact kernels cost \
            one backward pass per training text for every block pair: meant for a few thousand training texts).

            Large training sets: --train-features FILE (a finished feature file of the training texts, for \
            example the merge of a sharded `featurize`) or --memory-budget fit and score the surrogate with the \
            training features streamed from disk in row blocks, holding at most about the budget of them \
            (proj-pntk, proj-trntk, embedding, ck and grad-cos). lambda is then --lambda, or chosen by the \
            k-fold rule on a seeded sample of --selection-texts training texts; per-layer shares are skipped.
            """)

    @Option(help: "Model directory.") var model: String
    @Option(help: "Training texts with labels (a file, or a data directory: its train.* is used).") var train: String
    @Option(name: .customLong("text"), help: "A text to explain (repeatable).") var texts: [String] = []
    @Option(help: "A file of texts to explain (.jsonl/.csv/.tsv).") var data: String?
    @Option(help: "Kernel of the surrogate.") var kernel: SurrogateKernel = .projTrntk
    @Option(parsing: .unconditional, help: "Training texts listed on each side.") var top: Int = 10
    @Option(
        name: .customLong("proj-dim"), parsing: .unconditional,
        help: "Projected dimension K of projected kernels. (default: 1024)")
    var projDimOption: Int?
    var projDim: Int { projDimOption ?? 1024 }
    @Option(
        name: .customLong("seed"), parsing: .unconditional,
        help:
            "Seed of the projection and of the cross-validation folds (default: 0). With --train-features the file's projection is used and this seeds the folds only."
    ) var seedOption: UInt64?

    /// Optional so that a seed given next to --train-features, whose projection is fixed, can be reported.
    var seed: UInt64 { seedOption ?? 0 }
    @Option(help: "Directory for cached training features and surrogates.") var cache: String = "features"
    @Option(help: "TracIn checkpoints (epoch-K.safetensors; default MODEL/checkpoints).") var checkpoints: String?
    @Flag(help: "Skip the per-layer shares of the top items (exact per-layer NTK).") var noLayers = false
    @Option(
        parsing: .unconditional,
        help:
            "Average the attributions over the model and its N-1 latest checkpoints before the final epoch (MODEL/checkpoints or --checkpoints), one surrogate per model; no per-layer shares."
    ) var ensemble: Int = 1
    @Flag(help: "One JSON object per text.") var json = false
    @Option(
        help:
            "Also write a self-contained HTML page of every explanation (filter by predicted class), e.g. attributions.html."
    )
    var html: String?
    @Flag(help: "Replace an existing --html page (only a page this command wrote).") var overwrite = false
    @Option(
        help:
            "Training features (a finished feature file of the --train texts, e.g. from `tangent merge`): fit and score streamed from it."
    )
    var trainFeatures: String?
    @Option(
        help:
            "Bound on the training features held in memory at once, e.g. 2GiB (streamed scoring; default with --train-features: 2GiB)."
    )
    var memoryBudget: String?
    @Option(
        parsing: .unconditional,
        help:
            "The surrogate's relative lambda (streamed scoring only; default: chosen by k-fold selection on a sample).")
    var lambda: Double?
    @Option(parsing: .unconditional, help: "Training texts the lambda selection samples (streamed scoring).")
    var selectionTexts: Int = 4096
    @OptionGroup var projection: ProjectorOptions
    @OptionGroup var selectionOptions: SelectionOptions
    @OptionGroup var threading: ThreadOptions
    @OptionGroup var columns: ColumnOptions

    func validate() throws {
        if texts.isEmpty && data == nil { throw ValidationError("give --text or --data") }
        try Check.positive(ensemble, "--ensemble")
        if ensemble > 1, trainFeatures != nil || memoryBudget != nil {
            throw ValidationError(
                "--ensemble applies to in-memory scoring, not with --train-features or --memory-budget")
        }
        if ensemble > 1, kernel == .tracin || kernel == .trak {
            throw ValidationError(
                "--ensemble: \(kernel.name) already sums over checkpoints or models; use it with another kernel")
        }
        try Check.positive(top, "--top")
        try Check.projDim(projDim)
        try projection.check(projDim: projDim)
        if let memoryBudget { _ = try Check.bytes(memoryBudget, "--memory-budget") }
        if let lambda { try Check.positive(lambda, "--lambda") }
        try Check.positive(selectionTexts, "--selection-texts")
        try Check.selectionSample(selectionTexts, folds: selectionOptions.folds)
        if (lambda != nil || selectionTexts != 4096) && trainFeatures == nil && memoryBudget == nil {
            throw ValidationError(
                "--lambda and --selection-texts apply to streamed scoring: give --train-features or --memory-budget")
        }
        if trainFeatures != nil || memoryBudget != nil, !StreamedAttribution.supports(kernel) {
            throw ValidationError(
                "streamed scoring (--train-features, --memory-budget) supports \(KernelList.streamable), not \(kernel.name)"
            )
        }
    }

    func run() throws {
        try reportingErrors {
            try refuseOverlaps(
                [("--html", html)],
                inputs: [
                    ("--model", model), ("--train", train), ("--data", data),
                    ("--checkpoints", checkpoints), ("--train-features", trainFeatures),
                ])
            try checkCacheDirectory(cache)
            // The page's path is checked and locked before any work.
            let pageLock = try html.map {
                try claimOutputFile($0, kind: "attribution page", overwrite: overwrite, isSameKind: Attribute.isPage)
            }
            defer { withExtendedLifetime(pageLock) {} }
            let nThreads = threading.count
            let clf = try loadClassifier(model, threads: nThreads)
            if trainFeatures == nil {
                try checkFeaturizerMemory(clf, kernels: [kernel], projDim: projDim, projector: projection.choice)
            }
            let trainFile = try DataLocation.file(fileURL(train), split: "train")
            let trainTexts = try columns.reader().read(trainFile)
            try requireTwoClasses(trainTexts, in: trainFile, model: clf)
            guard top <= trainTexts.count else {
                throw DataError("--top \(top) exceeds the \(trainTexts.count) training texts of \(trainFile.path)")
            }
            var inputs = texts
            for (i, t) in texts.enumerated() where t.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                throw DataError("--text #\(i + 1) is empty")
            }
            if let data { inputs += try columns.reader(requireLabels: false).read(fileURL(data)).map(\.text) }
            let k = kernel
            if trainFeatures != nil || memoryBudget != nil {
                try streamed(clf, trainTexts: trainTexts, inputs: inputs, kernel: k, threads: nThreads)
                return
            }
            let stages = StageProgress()
            let engine = try AttributionEngine(
                classifier: clf, train: trainTexts, kernel: k, projDim: projDim, seed: seed,
                projector: projection.choice, cache: fileURL(cache),
                threads: nThreads, selector: selectionOptions.selector(seed: seed),
                checkpoints: checkpoints.map(fileURL), log: { printError($0) },
                progress: { stages.report("training features", $0, $1) })
            // The ensemble's other models: the latest checkpoints before the final epoch.
            let others = try TracIn.ensemble(
                of: clf, directory: checkpoints.map(fileURL), count: ensemble, threads: nThreads)
            let engines =
                try [engine]
                + others.enumerated().map { j, m in
                    try AttributionEngine(
                        classifier: m, train: trainTexts, kernel: k, projDim: projDim, seed: seed,
                        projector: projection.choice,
                        cache: fileURL(cache), threads: nThreads, selector: selectionOptions.selector(seed: seed),
                        log: { printError($0) },
                        progress: { stages.report("ensemble model \(j + 2)/\(ensemble) training features", $0, $1) })
                }
            var all: [Explanation] = []
            for start in stride(from: 0, to: inputs.count, by: 64) {
                let chunk = Array(inputs[start..<min(inputs.count, start + 64)])
                let e =
                    engines.count > 1
                    ? try AttributionEngine.explain(chunk, engines: engines, top: top)
                    : try engine.explain(chunk, top: top, layerShares: !noLayers)
                try output(e, kernel: k)
                if html != nil { all += e }
            }
            try writePage(all, classifier: clf, kernel: k)
        }
    }

    /// Fit and scoring with the training features streamed from a file.
    func streamed(
        _ clf: Classifier, trainTexts: [LabeledText], inputs: [String], kernel k: SurrogateKernel, threads: Int
    ) throws {
        let budget = try Check.bytes(memoryBudget ?? "2GiB", "--memory-budget")
        let file: FeatureFile
        if let trainFeatures {
            file = try FeatureFile(url: fileURL(trainFeatures))
            // The file's projection is the one used; one asked for on the command line must agree.
            let m = file.metadata
            if let asked = projDimOption, m.projDim != asked {
                throw ValidationError(
                    "--proj-dim \(asked) differs from the K = \(m.projDim) of --train-features \(trainFeatures); omit --proj-dim or featurize again"
                )
            }
            if projection.given, m.projector != projection.choice.tag {
                throw ValidationError(
                    "--projector \(projection.choice.tag) differs from the \(m.projector.isEmpty ? "unprojected" : m.projector) features of --train-features \(trainFeatures); omit --projector or featurize again"
                )
            }
            if let asked = seedOption, asked != m.seed, !m.projector.isEmpty {
                printError(
                    "note: --train-features \(trainFeatures) was projected with seed \(m.seed); --seed \(asked) seeds the selection folds only"
                )
            }
        } else {
            let stages = StageProgress()
            file = try StreamedAttribution.cachedTrainingFeatures(
                classifier: clf, train: trainTexts, kernel: k, projDim: projDim, seed: seed,
                projector: projection.choice,
                cache: fileURL(cache), threads: threads, log: { printError($0) },
                progress: { stages.report("training features", $0, $1) })
        }
        let t0 = Date()
        let scorer = try StreamedAttribution(
            classifier: clf, train: trainTexts, trainFeatures: file, kernel: k, budget: budget, lambda: lambda,
            selector: selectionOptions.selector(seed: seed), selectionTexts: selectionTexts, threads: threads,
            log: { printError($0) })
        printError(
            String(
                format: "surrogate ready in %.1f s; peak memory %@", Date().timeIntervalSince(t0),
                peakMemoryDescription()))
        let t1 = Date()
        var all: [Explanation] = []
        for start in stride(from: 0, to: inputs.count, by: 64) {
            let chunk = Array(inputs[start..<min(inputs.count, start + 64)])
            let e = try scorer.explain(chunk, top: top)
            try output(e, kernel: k)
            if html != nil { all += e }
        }
        try writePage(all, classifier: clf, kernel: k)
        printError(
            String(
                format: "%ld texts explained in %.1f s; peak memory %@", inputs.count, Date().timeIntervalSince(t1),
                peakMemoryDescription()))
    }

    /// An attribution page this command wrote (its head names the generator).
    static func isPage(_ url: URL) -> Bool {
        guard let h = try? FileHandle(forReadingFrom: url), let head = try? h.read(upToCount: 512) else { return false }
        try? h.close()
        return String(decoding: head, as: UTF8.self).contains("content=\"\(AttributionHTML.generator)\"")
    }

    /// Writes the `--html` page of all explanations, atomically.
    func writePage(_ explanations: [Explanation], classifier: Classifier, kernel k: SurrogateKernel) throws {
        guard let html else { return }
        let page = AttributionHTML.render(
            explanations, model: model, train: train, kernel: k.name, classes: classifier.labels.names)
        try AtomicFile.write(Data(page.utf8), to: fileURL(html))
        printError("wrote \(html): \(explanations.count) explanation\(explanations.count == 1 ? "" : "s")")
    }

    /// Prints explanations as JSON lines (`--json`) or as text.
    func output(_ explanations: [Explanation], kernel k: SurrogateKernel) throws {
        for e in explanations {
            // Inputs are checked for NaN; should one still come through, say so instead of
            // printing "nan" or failing inside the JSON encoder.
            guard e.probability.isFinite, e.surrogateProbability.isFinite,
                (e.proponents + e.opponents).allSatisfy({ $0.score.isFinite && $0.kernel.isFinite })
            else {
                throw AttributionError(
                    "the \(k.name) surrogate gave a non-finite score for \"\(e.text.prefix(60))\"; its cached features or surrogate in --cache may be damaged (delete them to rebuild)"
                )
            }
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try enc.encode(e), as: UTF8.self))
            } else {
                print(render(e, kernel: k.name))
            }
        }
    }

    func render(_ e: Explanation, kernel: String) -> String {
        func clip(_ s: String) -> String { s.count > 90 ? String(s.prefix(87)) + "..." : s }
        // Per-layer parts of K(x, x_i) as shares of the sum of their absolute values, signed:
        // parts that cancel (embeddings -2477%, head +2832% of a small total) stay readable.
        func shares(_ s: [String: Double]?) -> String {
            guard let s else { return "" }
            let top = s.sorted { abs($0.value) > abs($1.value) }.prefix(3)
            return "  [" + top.map { "\($0.key) \(String(format: "%+.0f%%", 100 * $0.value))" }.joined(separator: ", ")
                + "]"
        }
        // Scores with four significant digits: near-equal contributions stay apart.
        func line(_ i: Int, _ a: AttributedText) -> String {
            String(format: "  %2ld. %+.4g  k=%.4g  [%@] %@", i + 1, a.score, a.kernel, a.label, clip(a.text))
                + shares(a.layerShares) + "\n"
        }
        var out = "text: \(e.text)\n"
        out += String(
            format: "prediction: %@ (p = %.3f; %@ surrogate p = %.3f)\n", e.label, e.probability, kernel,
            e.surrogateProbability)
        out +=
            (ensemble > 1
                ? "score = the mean over \(ensemble) models of W[c,i] K(x, x_i): " : "score = W[c,i] K(x, x_i): ")
            + "the training text's term in the surrogate's logit for \(e.label); k = K(x, x_i)"
            + (ensemble > 1 ? " (mean)" : "")
            + (e.proponents.first?.layerShares != nil ? "; [layer shares of k, signed, of the sum of |parts|]" : "")
            + "\n"
        out += "proponents (push toward \(e.label)):\n"
        for (i, a) in e.proponents.enumerated() { out += line(i, a) }
        if e.proponents.isEmpty { out += "  (none)\n" }
        out += "opponents (push away from \(e.label)):\n"
        for (i, a) in e.opponents.enumerated() { out += line(i, a) }
        if e.opponents.isEmpty { out += "  (none)\n" }
        return out
    }
}
