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

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare kernel surrogates' faithfulness to the network (tau, TAD, agreement) and write a report.",
        discussion: """
            For each kernel: featurize training and test texts (cached in --cache), fit the kGLM over the \
            regularization grid (lambda chosen by k-fold cross-validation on the training texts, see --selection), and measure Kendall tau between \
            the surrogate's and the network's log-odds, the paper's probability tau, TAD and label agreement, \
            with time and peak memory. Writes OUT/report.json (every number), OUT/report.md and a \
            self-contained OUT/report.html with SVG plots.
            """)

    @Option(
        help: "Model directory; repeat for several models of the same data (e.g. training seeds) to get error bars.")
    var model: [String]
    @Option(help: "Training texts with labels (file or data directory).") var train: String
    @Option(help: "Test texts with labels (file or data directory).") var test: String
    static let defaultKernels: [SurrogateKernel] = [.projTrntk, .projPntk, .embedding, .ck, .gradCos, .ifHead, .ifProj]
    @Option(help: KernelList.help("Kernels", default: Compare.defaultKernels), transform: KernelList.init(parsing:))
    var kernels = KernelList(Compare.defaultKernels)
    @Option(parsing: .unconditional, help: "Projected dimension K.") var projDim: Int = 1024
    @Option(parsing: .unconditional, help: "Seed of projections and of the cross-validation folds.") var seed: UInt64 =
        0
    @Option(
        parsing: .unconditional,
        help:
            "Use a random sample of N training texts (seeded by --seed, file order kept; data files are often sorted by label)."
    ) var maxTrain: Int?
    @Option(parsing: .unconditional, help: "Use a random sample of N test texts (seeded by --seed, file order kept).")
    var maxTest: Int?
    @Option(help: "Directory for cached features.") var cache: String = "features"
    @Option(
        help:
            "TracIn checkpoints (epoch-K.safetensors; default MODEL/checkpoints). With several models, only for the first."
    ) var checkpoints: String?
    @Option(
        parsing: .unconditional,
        help:
            "TRAK's ensemble: the model and its N-1 latest training checkpoints before the final epoch (from --checkpoints)."
    ) var ensemble: Int = 1
    @Option(
        help:
            "An LDS run (`tangent lds --out DIR`) on the same training texts, whose scores the report shows beside tau."
    ) var lds: String?
    @Option(help: "Report directory.") var out: String
    @Option(
        help:
            "Projected dimensions at which projected kernels are compared with the exact ones (on 100 test x 200 training texts); empty to skip."
    )
    var errorDims: String = "256,512,1024,2048,4096"
    @Option(parsing: .unconditional, help: "Projection seeds the projection error is averaged over (root mean square).")
    var errorSeeds: Int = 1
    @Flag(help: "Replace an existing report.") var overwrite = false
    @OptionGroup var projection: ProjectorOptions
    @OptionGroup var selectionOptions: SelectionOptions
    @OptionGroup var threading: ThreadOptions
    @OptionGroup var columns: ColumnOptions
    @Option(
        help:
            "Stream each kernel's training features from disk within this many bytes of blocks, e.g. 2GiB, for training sets whose features do not fit in memory (proj-pntk, proj-trntk, embedding, ck, grad-cos)."
    )
    var memoryBudget: String?
    @Option(parsing: .unconditional, help: "With --memory-budget: training texts the lambda selection samples.")
    var selectionTexts: Int = 4096

    func validate() throws {
        try Check.projDim(projDim)
        try projection.check(projDim: projDim)
        try Check.positive(maxTrain, "--max-train")
        try Check.positive(maxTest, "--max-test")
        try Check.positive(errorSeeds, "--error-seeds")
        try Check.positive(ensemble, "--ensemble")
        try Check.positive(selectionTexts, "--selection-texts")
        if let memoryBudget {
            _ = try Check.bytes(memoryBudget, "--memory-budget")
            if let bad = kernels.kernels.first(where: { !StreamedAttribution.supports($0) }) {
                throw ValidationError("--memory-budget streams \(KernelList.streamable) only, not \(bad.name)")
            }
        }
        for d in errorDims.split(separator: ",")
        where Int(d.trimmingCharacters(in: .whitespaces)).map({ $0 <= 0 }) ?? true {
            throw ValidationError("--error-dims: '\(d)' is not a positive integer")
        }
        // Each K is projected for 200 training and 100 test texts at once; bound it as
        // --proj-dim is bounded, before any fit.
        for d in errorDims.split(separator: ",").compactMap({ Int($0.trimmingCharacters(in: .whitespaces)) })
        where d > Check.maximumProjDim {
            throw ValidationError(
                "--error-dims: K = \(d) is above the largest projected dimension \(Check.maximumProjDim)")
        }
        try Check.selectionSample(selectionTexts, folds: selectionOptions.folds)
    }

    /// The training and test texts (sampled with --max-train, --max-test), checked against
    /// the model's labels and the selection's folds.
    func readTexts(labels: LabelSet) throws -> (URL, URL, [LabeledText], [LabeledText]) {
        let trainFile = try DataLocation.file(fileURL(train), split: "train")
        let testFile = try DataLocation.file(fileURL(test), split: "test")
        var trainTexts = try columns.reader().read(trainFile)
        var testTexts = try columns.reader().read(testFile)
        if let maxTrain { trainTexts = seededSample(trainTexts, maxTrain, seed: seed, stream: 1) }
        if let maxTest { testTexts = seededSample(testTexts, maxTest, seed: seed, stream: 2) }
        guard trainTexts.count >= 2 * selectionOptions.folds else {
            throw DataError(
                "\(trainFile.path): \(trainTexts.count) training texts are too few for \(selectionOptions.folds)-fold selection of lambda (need at least \(2 * selectionOptions.folds))"
            )
        }
        guard testTexts.count >= 2 else { throw DataError("\(testFile.path): tau needs at least 2 test texts") }
        _ = try labels.indices(of: trainTexts, source: trainFile.path)
        try requireTwoClasses(trainTexts, in: trainFile)
        _ = try labels.indices(of: testTexts, source: testFile.path)
        return (trainFile, testFile, trainTexts, testTexts)
    }

    /// One model's comparison: streamed within --memory-budget, else in memory (with TracIn's
    /// checkpoints and TRAK's ensemble for the first model).
    func compare(
        _ classifier: Classifier, named path: String, train trainTexts: [LabeledText], test testTexts: [LabeledText],
        names: (train: String, test: String), ensemble: [Classifier], progress: @escaping (String, Int, Int) -> Void
    ) throws -> ComparisonReport {
        let storage: Comparison.TrainingStorage =
            try memoryBudget.map {
                .streamed(budget: try Check.bytes($0, "--memory-budget"), selectionTexts: selectionTexts)
            } ?? .memory
        return try Comparison.run(
            classifier: classifier, train: trainTexts, test: testTexts, kernels: kernels.kernels, projDim: projDim,
            seed: seed, projector: projection.choice, cache: fileURL(cache), modelName: path,
            trainName: names.train, testName: names.test, storage: storage,
            checkpoints: path == model[0] && storage == .memory ? checkpoints.map(fileURL) : nil,
            ensemble: storage == .memory ? ensemble : [],
            selector: selectionOptions.selector(seed: seed), threads: threading.count, log: { printError($0) },
            progress: progress)
    }

    /// The projectors whose error the report shows: --projector's, and dense Rademacher for
    /// comparison unless its matrix (parameters x K entries, drawn for every K of
    /// --error-dims and every block of texts) is too large to draw in minutes: for
    /// all-MiniLM-L6-v2 (22.7M parameters) it took about 15 minutes at K = 256 alone.
    func errorProjectors(parameters: Int, dims: [Int]) -> [ProjectorChoice] {
        if projection.choice == .rademacher { return [.rademacher] }
        let entries = Double(parameters) * Double(dims.reduce(0, +))
        guard entries <= 2e10 else {
            printError(
                String(
                    format:
                        "note: the projection error of dense Rademacher is skipped: its %.3g x %ld entries per block of texts "
                        + "would take hours; give --projector rademacher to compute it",
                    Double(parameters), dims.reduce(0, +)))
            return [projection.choice]
        }
        return [projection.choice, .rademacher]
    }

    func run() throws {
        try reportingErrors {
            try refuseOverlaps(
                [("--out", out)],
                inputs: model.map { ("--model", Optional($0)) } + [
                    ("--train", train), ("--test", test),
                    ("--checkpoints", checkpoints), ("--lds", lds),
                ])
            let outURL = fileURL(out)
            let jsonURL = outURL.appendingPathComponent("report.json")
            let lock = try claimOutputDirectory(
                out, kind: "comparison report", markers: ["report.json", "report.md"], overwrite: overwrite,
                allowOtherFiles: true)
            defer { withExtendedLifetime(lock) {} }
            try checkCacheDirectory(cache)
            let classifiers = try model.map { try loadClassifier($0, threads: threading.count) }
            let clf = classifiers[0]
            try checkFeaturizerMemory(clf, kernels: kernels.kernels, projDim: projDim, projector: projection.choice)
            if let other = classifiers.dropFirst().first(where: { $0.labels != clf.labels }) {
                throw DataError(
                    "\(other.directory?.path ?? "model"): labels \(other.labels.names) differ from \(model[0])'s \(clf.labels.names); compare several models only on the same data"
                )
            }
            let (trainFile, testFile, trainTexts, testTexts) = try readTexts(labels: clf.labels)
            let ks = kernels.kernels
            let trainName = displayPath(trainFile) + (maxTrain.map { " (random \($0), seed \(seed))" } ?? "")
            let ldsReport = try lds.map {
                try readLDS($0, train: trainName, trainTexts: trainTexts.count, texts: trainTexts)
            }
            let trakEnsemble =
                ks.contains(where: \.ensembled)
                ? try TracIn.ensemble(
                    of: clf, directory: checkpoints.map(fileURL), count: ensemble, threads: threading.count) : []
            let stages = StageProgress()
            let testName = displayPath(testFile) + (maxTest.map { " (random \($0), seed \(seed))" } ?? "")
            let reports = try zip(model, classifiers).map { path, classifier in
                if model.count > 1 { printError("=== model \(path)") }
                return try compare(
                    classifier, named: path, train: trainTexts, test: testTexts, names: (trainName, testName),
                    ensemble: path == model[0] ? trakEnsemble : [], progress: { stages.report($0, $1, $2) })
            }
            var report = Comparison.merge(reports)
            report.lds = ldsReport
            let dims = errorDims.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            if !dims.isEmpty && ks.contains(where: { $0 == .projTrntk || $0 == .projPntk }) {
                printError("== projection error against the exact kernels")
                report.projectionError = try Comparison.projectionError(
                    classifier: clf, train: trainTexts, test: testTexts,
                    kernels: ks, dims: dims, seed: seed, seeds: errorSeeds,
                    projectors: errorProjectors(parameters: clf.model.layout.count, dims: dims),
                    log: { printError($0) })
            }
            try ReportFile.write(report, to: jsonURL)
            try AtomicFile.write(ReportMarkdown.comparison(report), to: outURL.appendingPathComponent("report.md"))
            try renderReportPage(in: outURL)
            print(ReportMarkdown.comparison(report))
            print("wrote \(out)/report.json, report.md and report.html")
        }
    }
}
