import ArgumentParser
import Foundation
import TangentData
import TangentFeatures
import TangentIO
import TangentModel
import TangentSafetensors
import TangentTensor

struct Featurize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write kernel features of texts (projected NTK gradients or embeddings) to a feature file.",
        discussion: """
            Kernels: pntk (proj-pntk), trntk (proj-trntk), embedding (also for ck), grad (loss gradient, \
            for grad-cos/TracIn; texts without a label use the predicted one). Features stream to \
            OUT.partial block by block; an interrupted run resumes where it stopped; OUT appears when done.
            """)

    @Option(help: "Model directory.") var model: String
    @Option(help: "Texts (.jsonl/.csv/.tsv, or a data directory: its train.* is used). Labels are optional.")
    var data: String
    @Option(help: "Features to store (proj-pntk, proj-trntk, ck, grad-cos and tracin name theirs too).")
    var kernel: FeatureKind
    @Option(
        help:
            "Parameter tensors by name prefix, comma-separated: all, embeddings, blocks.0, norm, head, or full tensor names."
    )
    var params: String = "all"
    @Option(parsing: .unconditional, help: "Projected dimension K.") var projDim: Int = 4096
    @Option(parsing: .unconditional, help: "Seed of the random projection.") var seed: UInt64 = 0
    @Option(
        parsing: .unconditional, help: "Texts per computation (memory grows with it; the output does not depend on it)."
    ) var batchSize: Int = 128
    @Flag(
        help: "Also store projected features per layer group (embeddings, blocks.i, norm, head), for per-layer kernels."
    )
    var perLayer = false
    @Option(help: "Output feature file (.safetensors).") var out: String
    @Flag(help: "Replace an existing output, or restart an unfinished one made with other settings.") var overwrite =
        false
    @Option(parsing: .unconditional, help: "Featurize shard I of N only (numbered from 0), e.g. 3/16.") var shard:
        String?
    @Option(
        parsing: .unconditional,
        help:
            "The number of shards of a Kubernetes Indexed Job (its completions); the index comes from JOB_COMPLETION_INDEX."
    )
    var shardCount: Int?
    @OptionGroup var projection: ProjectorOptions
    @OptionGroup var threading: ThreadOptions
    @OptionGroup var columns: ColumnOptions

    func validate() throws {
        if let shard { _ = try ShardSpec(parsing: shard) }
        try Check.projDim(projDim)
        try projection.check(projDim: projDim)
        try Check.positive(batchSize, "--batch-size")
        _ = try Check.list(params, "--params")
    }

    func run() throws {
        try reportingErrors {
            try refuseOverlaps([("--out", out)], inputs: [("--model", model), ("--data", data)])
            let spec = try ShardSpec.resolve(
                option: shard, shardCount: shardCount, environment: ProcessInfo.processInfo.environment)
            let output = spec.map { FeatureMerger.shardURL(fileURL(out), $0) } ?? fileURL(out)
            let nThreads = threading.count
            let clf = try loadClassifier(model, threads: nThreads)
            let file = try DataLocation.file(fileURL(data), split: "train")
            if spec == nil { try FeatureWriter.checkOutput(output, replace: overwrite ? .featureFile : .never) }
            let texts = try columns.reader(requireLabels: false).read(file)
            for t in texts {
                if let l = t.label, clf.labels.index(of: l) == nil {
                    throw DataError(
                        "\(file.path): line \(t.line): label '\(l)' is not one the model knows (\(clf.labels.names.joined(separator: ", ")))"
                    )
                }
            }
            var options = FeaturizeOptions(kind: kernel)
            options.params = try Check.list(params, "--params")
            options.projDim = projDim
            options.seed = seed
            options.projector = projection.choice
            options.batchSize = batchSize
            options.threads = nThreads
            options.perLayer = perLayer
            try checkFeaturizerMemory(clf, options)
            let f = try Featurizer(classifier: clf, options: options)
            let source = displayPath(file)
            if let spec {
                // A complete shard of the same run is kept: resubmitting a whole array
                // redoes only the tasks that failed.
                let want = try f.metadata(texts: texts, source: source).shard(spec, of: texts)
                if !overwrite, let existing = try? FeatureFile(url: output), existing.metadata == want {
                    print(
                        "\(displayPath(output)): shard \(spec) is already complete (\(want.texts) texts); nothing to do"
                    )
                    return
                }
                try FeatureWriter.checkOutput(output, replace: overwrite ? .featureFile : .never)
                printError(
                    "shard \(spec): texts \(want.shardFirst!)..<\(want.shardFirst! + want.texts) of \(texts.count) -> \(displayPath(output))"
                )
            }
            let bar = ProgressBar(
                total: spec.map { $0.range(texts: texts.count, blockTexts: options.blockSize).count } ?? texts.count,
                label: "featurize \(options.kind.rawValue)")
            let t0 = Date()
            let result = try f.run(
                texts: texts, source: source, to: output, replace: overwrite ? .featureFile : .never, shard: spec
            ) { done, total in
                bar.update(done, status: "")
            }
            bar.finish()
            let m = result.metadata
            print(
                "wrote \(spec == nil ? out : displayPath(output))\(spec.map { " (shard \($0))" } ?? ""): \(m.texts) texts x \(m.outputs) x \(m.width) (\(m.kernel), params \(m.params.isEmpty ? "-" : m.params), K \(m.projDim), \(m.projector.isEmpty ? "no projection" : m.projector), seed \(m.seed)) in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s; peak memory \(peakMemoryDescription())"
            )
        }
    }
}

struct Kernel: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Kernel matrix between two feature files (blockwise; B can be large).")

    @Option(help: "Feature file of the rows.") var a: String
    @Option(help: "Feature file of the columns (default: A).") var b: String?
    @Flag(help: "Cosine-normalize: K(x,x') / sqrt(K(x,x) K(x',x')).") var normalize = false
    @Option(help: "Kernel of one layer group only (files made with --per-layer); normalized by the whole-model norms.")
    var layer: String?
    @Option(help: "Output (.safetensors, tensor `kernel` [nA, nB]).") var out: String
    @Flag(help: "Replace an existing output.") var overwrite = false
    @Option(
        help: "Bound on the feature and kernel blocks held at once, e.g. 512MiB (default: 256 rows of A at a time).")
    var memoryBudget: String?

    func validate() throws {
        if let memoryBudget { _ = try Check.bytes(memoryBudget, "--memory-budget") }
    }

    func run() throws {
        try reportingErrors {
            try refuseOverlaps([("--out", out)], inputs: [("--a", a), ("--b", b)])
            let lock = try claimOutputFile(
                out, kind: "kernel file", overwrite: overwrite, isSameKind: hasFormat("tangent-kernel-1"))
            defer { withExtendedLifetime(lock) {} }
            let fa = try FeatureFile(url: fileURL(a))
            let fb = try b.map { try FeatureFile(url: fileURL($0)) } ?? fa
            var rowBlock = 256
            var columnBlock = 2048
            if let memoryBudget {
                // Held at once: rows of the output [r, nB], a tile [r, c] and the two feature blocks.
                let budget = try Check.bytes(memoryBudget, "--memory-budget")
                let nB = fb.metadata.texts
                let width = fa.metadata.outputs * fa.metadata.width
                columnBlock = max(1, min(columnBlock, nB, budget / 2 / max(1, 4 * width)))
                rowBlock = max(1, (budget - 4 * columnBlock * width) / max(1, 4 * (nB + columnBlock + width)))
                // One row of the output and one column of features is the least a block holds.
                let least = 4 * (rowBlock * (nB + columnBlock + width) + columnBlock * width)
                if least > budget {
                    printError(
                        "warning: --memory-budget \(memoryBudget) is below the \(ByteSize.describe(Double(least))) that the smallest blocks (1 x 1 texts of \(width) features, one output row of \(nB)) need; using them"
                    )
                }
                printError("kernel: blocks of \(rowBlock) x \(columnBlock) texts within \(memoryBudget)")
            }
            let bar = ProgressBar(total: fa.metadata.texts, label: "kernel")
            try KernelMatrix.compute(
                a: fa, b: fb, normalize: normalize, layer: layer, to: fileURL(out), rowBlock: rowBlock,
                columnBlock: columnBlock
            ) { done, _ in bar.update(done) }
            bar.finish()
            print(
                "wrote \(out): \(fa.metadata.texts) x \(fb.metadata.texts) \(normalize ? "normalized " : "")\(fa.metadata.kernel) kernel"
            )
        }
    }
}

struct ExactKernelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exact-kernel",
        abstract: "Exact (unprojected) NTK kernel between small text sets, with its per-layer parts.",
        discussion:
            "Writes `kernel` [nA, nB] and `part.GROUP` for each layer group (embeddings, blocks.i, norm, head); the parts add up to the kernel."
    )

    @Option(help: "Model directory.") var model: String
    @Option(help: "Row texts (.jsonl/.csv/.tsv).") var data: String
    @Option(help: "Column texts (default: the row texts).") var dataB: String?
    @Option(help: "The exact kernel.") var kernel: NTKKind
    @Option(help: "Parameter tensors by name prefix, comma-separated.") var params: String = "all"
    @Option(help: "Output (.safetensors).") var out: String
    @Flag(help: "Replace an existing output.") var overwrite = false
    @Option(parsing: .unconditional, help: "Texts per block.") var batchSize: Int = 64
    @OptionGroup var threading: ThreadOptions
    @OptionGroup var columns: ColumnOptions

    func validate() throws {
        try Check.positive(batchSize, "--batch-size")
        _ = try Check.list(params, "--params")
    }

    func run() throws {
        try reportingErrors {
            try refuseOverlaps([("--out", out)], inputs: [("--model", model), ("--data", data), ("--data-b", dataB)])
            let lock = try claimOutputFile(
                out, kind: "kernel file", overwrite: overwrite, isSameKind: hasFormat("tangent-kernel-1"))
            defer { withExtendedLifetime(lock) {} }
            let clf = try loadClassifier(model, threads: threading.count)
            let reader = columns.reader(requireLabels: false)
            let aTexts = try reader.read(fileURL(data))
            let bTexts = try dataB.map { try reader.read(fileURL($0)) }
            let a = try aTexts.map { try clf.encode($0.text) }
            let b = try bTexts.map { try $0.map { try clf.encode($0.text) } }
            let computer = try GradientComputer(model: clf.model, prefixes: try Check.list(params, "--params"))
            // Two blocks of per-example gradients (one per output for trntk) are held at once.
            let kind = kernel
            let rows = min(batchSize, max(a.count, b?.count ?? 0))
            let need =
                2 * Double(rows) * Double(computer.dense.count)
                * Double(kind.output.count(classes: clf.model.shape.classes)) * 4
            let memory = Double(ProcessInfo.processInfo.physicalMemory)
            guard need < memory * 0.8 else {
                throw ValidationError(
                    "--batch-size \(batchSize): blocks of \(rows) texts' gradients would need \(ByteSize.describe(need)), more than this machine's \(ByteSize.describe(memory)) allows"
                )
            }
            let t0 = Date()
            let r = try ExactKernel.compute(computer, a: a, b: b, kind: kernel, blockSize: batchSize)
            // Gradients that overflow float32 leave no trace but non-finite kernel values.
            let stage = "\(kernel.rawValue) kernel values"
            try FiniteCheck.rows(r.rowDiagonal, width: 1, stage: stage, model: clf.directory) {
                FiniteCheck.describe(aTexts[$0])
            }
            try FiniteCheck.rows(r.columnDiagonal, width: 1, stage: stage, model: clf.directory) {
                FiniteCheck.describe((bTexts ?? aTexts)[$0])
            }
            try FiniteCheck.rows(r.total, width: r.columns, stage: stage, model: clf.directory) {
                FiniteCheck.describe(aTexts[$0])
            }
            var w = SafetensorsWriter()
            w.metadata = [
                "format": "tangent-kernel-1", "kernel": kernel.rawValue, "params": params, "model": model,
                "model_fingerprint": Featurizer.modelFingerprint(clf), "a": data, "b": dataB ?? data,
                "normalized": String(kernel.normalized),
            ]
            w.add("kernel", shape: [r.rows, r.columns], float32: r.total)
            for p in r.parts { w.add("part.\(p.group)", shape: [r.rows, r.columns], float32: p.values) }
            w.add("diag_a", shape: [r.rows], float32: r.rowDiagonal)
            w.add("diag_b", shape: [r.columns], float32: r.columnDiagonal)
            try w.write(to: fileURL(out))
            let shares = r.parts.map { p in (p.group, p.values.reduce(0) { $0 + Double($1) }) }
            let total = shares.reduce(0) { $0 + $1.1 }
            print(
                "wrote \(out): \(r.rows) x \(r.columns) \(kernel.rawValue) in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s"
            )
            print(
                "share of the kernel's sum by layer: "
                    + shares.map { "\($0.0) \(String(format: "%.3f", $0.1 / total))" }.joined(separator: ", "))
        }
    }
}
