import ArgumentParser
import Foundation
import TangentData
import TangentFeatures
import TangentIO
import TangentModel
import TangentTensor
import TangentTraining

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (build with -c release).", subcommands: [BenchTrain.self, BenchFeaturize.self])
}

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training throughput (forward + backward + AdamW) on random tokens.",
        discussion: "Default workload: d_model 128, 2 layers, d_ff 512, vocab 8000, 64 tokens, batch 64.")

    @OptionGroup var architecture: ArchitectureOptions
    @OptionGroup var input: RandomTokenOptions
    @Option(parsing: .unconditional, help: "Texts per step.") var batchSize: Int = 64
    @Option(parsing: .unconditional, help: "Measured steps (after 3 warm-up steps).") var steps: Int = 20
    @OptionGroup var threading: ThreadOptions
    @Option(parsing: .unconditional, help: "Dropout rate during the benchmark.") var dropout: Double = 0.1

    func validate() throws {
        try Check.positive(batchSize, "--batch-size")
        try Check.positive(steps, "--steps")
        try Check.rate(dropout, "--dropout")
    }

    func run() throws {
        try reportingErrors {
            let nThreads = threading.count
            let vocab = input.vocab
            let tokens = input.tokens
            let a = architecture
            let config = ModelConfig(
                vocabSize: vocab, maxLen: tokens, dModel: a.dModel, nHeads: a.heads, nLayers: a.layers,
                dFF: a.dFF, nClasses: 2)
            let model = try TransformerClassifier<Float>.initialized(config: config, seed: 1, threads: nThreads)
            var options = TrainingOptions()
            options.batchSize = batchSize
            options.epochs = 1
            options.dropout = dropout
            let n = batchSize * (steps + 3)
            let seqs = input.sequences(n, seed: 7)
            let labels = (0..<n).map { $0 % 2 }
            let warm = EncodedSet(
                sequences: Array(seqs[0..<(3 * batchSize)]), labels: Array(labels[0..<(3 * batchSize)]))
            // Warm-up on the same model (its workspaces stay allocated), then a trainer of its
            // own for the measured steps: a trainer runs its epochs once.
            _ = try Trainer(model: model, options: options).train(warm, test: nil)
            let measured = EncodedSet(
                sequences: Array(seqs[(3 * batchSize)...]), labels: Array(labels[(3 * batchSize)...]))
            let trainer = try Trainer(model: model, options: options)
            let t0 = Date()
            _ = try trainer.train(measured, test: nil)
            let dt = Date().timeIntervalSince(t0)
            let nonEmbedding = model.layout.tensors.filter { !$0.name.hasPrefix("embeddings") }.reduce(0) {
                $0 + $1.count
            }
            let tokenCount = Double(steps * batchSize * tokens)
            let flops = 6 * Double(nonEmbedding) * tokenCount
            print(
                "workload: d_model \(a.dModel), \(a.layers) layers, d_ff \(a.dFF), vocab \(vocab), \(tokens) tokens, batch \(batchSize), dropout \(dropout)"
            )
            print("threads: \(nThreads)")
            print("parameters: \(model.layout.count) (\(nonEmbedding) outside the embeddings)")
            print(String(format: "steps: %ld in %.3f s (%.2f ms/step)", steps, dt, 1000 * dt / Double(steps)))
            print(
                String(
                    format: "throughput: %.0f tokens/s, %.1f examples/s", tokenCount / dt,
                    Double(steps * batchSize) / dt))
            print(String(format: "approx. %.1f GFLOP/s (6 x non-embedding parameters x tokens)", flops / dt / 1e9))
            print("peak memory (VmHWM): \(peakMemoryDescription())")
        }
    }
}

/// The process's peak resident memory, for printing.
func peakMemoryDescription() -> String {
    peakMemoryMiB().map { String(format: "%.1f MiB", $0) } ?? "unknown"
}

struct BenchFeaturize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "featurize",
        abstract: "Featurization throughput (per-example gradients + random projection) on random tokens.",
        discussion:
            "Default workload W1: d_model 128, 2 layers, d_ff 512, vocab 8000, 64 tokens, 512 texts, K 1024, proj-pntk over all parameters."
    )

    @OptionGroup var architecture: ArchitectureOptions
    @OptionGroup var input: RandomTokenOptions
    @Option(
        help:
            "A Hugging Face config.json (BERT family): time that architecture, with random weights and its own vocabulary, instead of --d-model ... --vocab."
    )
    var modelConfig: String?
    @Option(parsing: .unconditional, help: "Texts.") var texts: Int = 512
    @Option(parsing: .unconditional, help: "Projected dimension K.") var projDim: Int = 1024
    @Option(help: "pntk, trntk or grad (or a kernel's name for them: proj-pntk, proj-trntk, grad-cos).")
    var kernel: FeatureKind = .pntk
    @Option(help: "Parameter prefixes.") var params: String = "all"
    @Option(parsing: .unconditional, help: "Texts per block.") var batchSize: Int = 128
    @OptionGroup var projection: ProjectorOptions
    @Flag(inversion: .prefixedNo, help: "With a sketch, also time the dense Rademacher projection in the same run.")
    var denseReference = true
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        try Check.positive(texts, "--texts")
        try Check.projDim(projDim)
        try Check.positive(batchSize, "--batch-size")
        try projection.check(projDim: projDim)
        guard kernel.projected else { throw ValidationError("--kernel must be pntk, trntk or grad, got '\(kernel)'") }
        _ = try Check.list(params, "--params")
    }

    func run() throws {
        try reportingErrors {
            let nThreads = threading.count
            let tokens = input.tokens
            let (model, sizes, seqs, workload) = try workloadModel(threads: nThreads)
            let kind = kernel
            let computer = try GradientComputer(model: model, prefixes: try Check.list(params, "--params"))
            print(
                "workload: \(workload), \(tokens) tokens, \(texts) texts, K \(projDim), \(kernel) over \(params) (\(computer.subset.count) parameters), blocks of \(batchSize)"
            )
            print("threads: \(nThreads)")
            var choices = [projection.choice]
            if projection.choice.distribution == .sketch && denseReference { choices.append(.rademacher) }
            var rates: [Double] = []
            for choice in choices {
                let projector = Projector(dimension: projDim, seed: 0, choice: choice, threads: nThreads)
                let r = try measure(kind: kind, computer: computer, projector: projector, sequences: seqs)
                rates.append(Double(texts) / r.total)
                print("projector \(choice):")
                print(String(format: "  end to end: %.2f s, %.1f examples/s", r.total, Double(texts) / r.total))
                if let p = r.projection {
                    print(
                        String(
                            format: "  gradients: %.2f s (%.0f%%), %.1f examples/s alone", r.gradients,
                            100 * r.gradients / r.total, Double(texts) / r.gradients))
                    print(String(format: "  projection: %.2f s (%.0f%%)", p, 100 * p / r.total))
                } else {
                    print("  gradients and sketch fused (each text's gradient of a tensor is sketched while in cache)")
                }
            }
            if rates.count == 2 {
                print(
                    String(
                        format: "speed-up of %@ over dense rademacher: %.2fx", projection.choice.description,
                        rates[0] / rates[1]))
            }
            try printGradientStepAlone(model, computer: computer, kind: kind, sizes: sizes, sequences: seqs)
            print("peak memory (VmHWM): \(peakMemoryDescription())")
        }
    }

    /// The benchmarked model (random weights): a Hugging Face config's, or tangent's own
    /// architecture; its sizes for the FLOP count, the random texts, and the workload's line.
    func workloadModel(threads nThreads: Int) throws -> (
        model: any ClassifierModel<Float>, sizes: (width: Int, ff: Int, layers: Int), sequences: [[Int32]],
        workload: String
    ) {
        let tokens = input.tokens
        let a = architecture
        let model: any ClassifierModel<Float>
        let sizes: (width: Int, ff: Int, layers: Int)
        let seqs: [[Int32]]
        let workload: String
        if let modelConfig {
            var url = fileURL(modelConfig)
            // A model directory stands for its config.json.
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
                url = url.appendingPathComponent("config.json")
            }
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw DataError(
                    "\(url.path): no such file (--model-config takes a Hugging Face config.json or its directory)")
            }
            guard let data = try? WholeFile.read(url),
                let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else {
                throw DataError("\(url.path): not a readable JSON object")
            }
            let config = try HFEncoderConfig(json: json, source: url.path)
            guard tokens <= config.maxTokens else {
                throw ValidationError("--tokens \(tokens) exceeds the \(config.maxTokens) positions of \(url.path)")
            }
            model =
                config.family == .modernbert
                ? try ModernBertClassifier<Float>.initialized(
                    config: config, labels: ["a", "b"], seed: 1, threads: nThreads)
                : try BertClassifier<Float>.initialized(
                    config: config, labels: ["a", "b"], seed: 1, threads: nThreads)
            sizes = (config.hiddenSize, config.intermediateSize, config.layers)
            // Ids past the special ones (and the pad id), from the model's own vocabulary.
            seqs = RandomTokenOptions(vocab: config.vocabSize, tokens: tokens).sequences(texts, seed: 3).map { s in
                s.map { max($0, 5) }
            }
            workload =
                "\(config.modelType) hidden \(config.hiddenSize), \(config.layers) layers, intermediate \(config.intermediateSize), vocab \(config.vocabSize)"
        } else {
            let config = ModelConfig(
                vocabSize: input.vocab, maxLen: tokens, dModel: a.dModel, nHeads: a.heads, nLayers: a.layers,
                dFF: a.dFF, nClasses: 2)
            model = try TransformerClassifier<Float>.initialized(config: config, seed: 1, threads: nThreads)
            sizes = (a.dModel, a.dFF, a.layers)
            seqs = input.sequences(texts, seed: 3)
            workload = "d_model \(a.dModel), \(a.layers) layers, d_ff \(a.dFF), vocab \(input.vocab)"
        }
        return (model, sizes, seqs, workload)
    }

    /// The gradient step alone (streamed, nothing projected) against the machine's sgemm.
    func printGradientStepAlone(
        _ model: any ClassifierModel<Float>, computer: GradientComputer<Float>, kind: FeatureKind,
        sizes: (width: Int, ff: Int, layers: Int), sequences seqs: [[Int32]]
    ) throws {
        let nThreads = threading.count
        let tokens = input.tokens
        let t0 = Date()
        for s in stride(from: 0, to: texts, by: batchSize) {
            let batch = TokenBatch(sequences: Array(seqs[s..<min(texts, s + batchSize)]), padID: model.shape.padID)
            _ = try computer.streamOutputs(
                batch, output: output(kind, batch.count), sink: { _, _, _, _ in }, rows: { _, _ in })
        }
        let alone = Date().timeIntervalSince(t0)
        let pass = BenchFeaturize.passFlops(width: sizes.width, ff: sizes.ff, layers: sizes.layers, tokens: tokens)
        let flops = Double(texts) * (pass.forward + Double(output(kind, 1).count(classes: 2)) * pass.backward)
        let peak = BenchFeaturize.sgemmRate(threads: nThreads)
        print(
            String(
                format:
                    "gradient step alone: %.2f s, %.1f examples/s, %.1f GFLOP/s = %.0f%% of sgemm on %ld threads (%.1f GFLOP/s, 1024^3 per thread)",
                alone, Double(texts) / alone, flops / alone / 1e9, 100 * flops / alone / peak, nThreads, peak / 1e9)
        )
    }

    func output(_ kind: FeatureKind, _ n: Int) -> GradientOutput {
        kind == .pntk ? .pseudoNTK : kind == .trntk ? .everyLogit : .loss(labels: [Int?](repeating: nil, count: n))
    }

    /// Floating-point operations (2 per multiply-add) of one text's forward pass and of one
    /// backward pass (input and weight gradients: two products per forward product),
    /// dense layers and attention; norms, GELU and the head are left out.
    static func passFlops(width: Int, ff: Int, layers: Int, tokens T: Int) -> (forward: Double, backward: Double) {
        let D = Double(width)
        let F = Double(ff)
        let t = Double(T)
        let linear = 2 * t * (3 * D * D + D * D + 2 * D * F)  // qkv, proj, fc1, fc2
        let attention = 2 * 2 * t * t * D  // scores and weighted values
        let forward = Double(layers) * (linear + attention)
        return (forward, 2 * forward)
    }

    /// sgemm throughput with every thread multiplying its own 1024 x 1024 matrices (the
    /// shape of work the toolkit gives BLAS: single-threaded calls, one per core).
    static func sgemmRate(threads: Int) -> Double {
        let n = 1024
        let a = [Float](repeating: 1, count: n * n)
        var cs = [[Float]](repeating: [Float](repeating: 0, count: n * n), count: threads)
        let reps = 4
        let t0 = Date()
        cs.withUnsafeMutableBufferPointer { cp in
            parallelFor(threads) { p in
                for _ in 0..<reps {
                    Float.gemm(
                        transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a, lda: n, b: a, ldb: n, beta: 0,
                        c: &cp[p], ldc: n)
                }
            }
        }
        return Double(threads * reps) * 2 * Double(n * n * n) / Date().timeIntervalSince(t0)
    }

    /// The featurizer's path: dense projections take one output's stored gradients at a
    /// time; the sketch takes streamed gradients (then no separate projection time exists).
    func measure(kind: FeatureKind, computer: GradientComputer<Float>, projector: Projector, sequences seqs: [[Int32]])
        throws
        -> (total: Double, gradients: Double, projection: Double?)
    {
        var gradSeconds = 0.0
        var projSeconds = 0.0
        let codes = projector.distribution == .sketch ? SketchCodes(projector: projector, computer: computer) : nil
        // One untimed block first: buffers grow to their size and are paged in once.
        let warm = TokenBatch(sequences: Array(seqs.prefix(batchSize)), padID: computer.model.shape.padID)
        if let codes {
            let acc = SketchAccumulator(
                codes: codes, outputs: output(kind, 1).count(classes: 2), texts: warm.count, perLayer: false)
            _ = try computer.streamOutputs(
                warm, output: output(kind, warm.count),
                sink: { o, t, b, g in acc.add(output: o, tensor: t, text: b, gradient: g) },
                rows: { o, r in acc.addTokenRows(output: o, rows: r, batch: warm) })
        } else {
            try computer.forEachOutput(warm, output: output(kind, warm.count)) { _, g in
                _ = projector.project(g, computer: computer)
            }
        }
        let t0 = Date()
        for s in stride(from: 0, to: texts, by: batchSize) {
            let batch = TokenBatch(
                sequences: Array(seqs[s..<min(texts, s + batchSize)]), padID: computer.model.shape.padID)
            let o = output(kind, batch.count)
            if let codes {
                let acc = SketchAccumulator(
                    codes: codes, outputs: o.count(classes: 2), texts: batch.count, perLayer: false)
                _ = try computer.streamOutputs(
                    batch, output: o, sink: { o, t, b, g in acc.add(output: o, tensor: t, text: b, gradient: g) },
                    rows: { o, r in acc.addTokenRows(output: o, rows: r, batch: batch) })
                continue
            }
            var mark = Date()
            try computer.forEachOutput(batch, output: o) { _, g in
                let b = Date()
                gradSeconds += b.timeIntervalSince(mark)
                _ = projector.project(g, computer: computer)
                mark = Date()
                projSeconds += mark.timeIntervalSince(b)
            }
        }
        let total = Date().timeIntervalSince(t0)
        return codes == nil ? (total, gradSeconds, projSeconds) : (total, total, nil)
    }
}

/// The random token sequences both benchmarks run on.
struct RandomTokenOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Vocabulary size.") var vocab: Int = 8000
    @Option(parsing: .unconditional, help: "Tokens per text.") var tokens: Int = 64

    init() {}
    init(vocab: Int, tokens: Int) {
        self.vocab = vocab
        self.tokens = tokens
    }

    func validate() throws {
        try Check.atLeast(vocab, 5, "--vocab")
        try Check.atLeast(tokens, 2, "--tokens")
    }

    /// `n` texts of `tokens` ids (BOS first, then ids past the special ones), a pure function of `seed`.
    func sequences(_ n: Int, seed: UInt64) -> [[Int32]] {
        let rng = CounterRNG.derive(seed, seed)
        return (0..<n).map { i in
            [Int32(2)] + (1..<tokens).map { j in Int32(4 + Int(rng.bits(UInt64(i * tokens + j)) % UInt64(vocab - 4))) }
        }
    }
}
