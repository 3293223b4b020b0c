import Foundation
import TangentData
import TangentModel
import TangentTensor

/// What a feature file stores per text.
public enum FeatureKind: String, Sendable, CaseIterable {
    /// R G(x), G = (1/sqrt(C)) sum_c g_c(x): features of proj-pntk.
    case pntk
    /// R g_c(x) for every class, the same R for all: features of proj-trntk.
    case trntk
    /// The pooled embedding e(x) (no projection): features of the `embedding` and `ck` kernels.
    case embedding
    /// R grad L(x) with the text's label (the predicted one when it has none): grad-cos, TracIn.
    case grad
    /// R f(x), f = grad L(x) over the linear layers whitened by EK-FAC curvature
    /// (`EKFAC.rotate` and `scale`, the factors of `FeaturizeOptions.curvature`), one vector
    /// per damping of the curvature: products are EK-FAC influence.
    case ekfac

    /// Parses a kernel name, accepting the projected kernels' names too.
    public init?(kernelName: String) {
        switch kernelName {
        case "pntk", "proj-pntk": self = .pntk
        case "trntk", "proj-trntk": self = .trntk
        case "embedding", "ck": self = .embedding
        case "grad", "grad-cos", "tracin": self = .grad
        default: return nil
        }
    }

    public var projected: Bool { self != .embedding }
}

/// Settings of a featurization run.
public struct FeaturizeOptions: Sendable {
    public var kind: FeatureKind
    /// Parameter prefixes (`all`, `head`, `blocks.1`, ...).
    public var params: [String] = ["all"]
    /// K; ignored for `embedding`.
    public var projDim: Int = 4096
    public var seed: UInt64 = 0
    public var projector: ProjectorChoice = .default
    /// Texts per stored block: the feature file's unit of resume and of sharding. The
    /// command line keeps it at `ShardSpec.blockTexts`, so that a file's bytes never depend
    /// on the batch size or thread count it was computed with.
    public var blockSize: Int = ShardSpec.blockTexts
    /// Texts per computation (memory grows with it); a file's bytes do not depend on it.
    public var batchSize: Int = 128
    /// Also store one projected feature vector per layer group (NFT-K decomposition).
    public var perLayer = false
    /// Bytes of per-example gradients one computation may hold; larger blocks are
    /// computed in sub-batches (features do not depend on the split, see `Projector`).
    public var gradientBudget = 256 * 1_048_576
    /// For `grad`: differentiate the loss at the network's predicted label even when a
    /// text has a label (test texts: their true label would leak into the surrogate).
    public var predictedLossLabels = false
    public var threads: Int = Threads.cores
    /// For `ekfac`: the curvature the gradients are whitened by.
    public var curvature: Curvature?

    public init(kind: FeatureKind) { self.kind = kind }
}

/// EK-FAC curvature for `ekfac` features: the model's linear tensors (known at once) and
/// the factors, fitted on first use by `fit` (featurizing training texts needs them; a
/// run whose features are all cached never fits them), with the damping.
public final class Curvature: @unchecked Sendable {
    /// Names what the factors are fitted on and the dampings (stored in the features' metadata).
    public let identity: String
    /// One feature vector per text for each damping, in this order.
    public let dampings: [EKFAC.Damping]
    /// The linear layers' tensor names, the parameters `ekfac` features cover.
    public let tensorNames: [String]
    private let fit: () throws -> EKFAC
    private let lock = NSLock()
    private var fitted: EKFAC?

    public init(identity: String, dampings: [EKFAC.Damping], tensorNames: [String], fit: @escaping () throws -> EKFAC) {
        precondition(!dampings.isEmpty, "at least one damping")
        self.identity = identity
        self.dampings = dampings
        self.tensorNames = tensorNames
        self.fit = fit
    }

    /// The factors, fitted once.
    public func factors() throws -> EKFAC {
        lock.lock()
        defer { lock.unlock() }
        if let fitted { return fitted }
        let f = try fit()
        fitted = f
        return f
    }
}

/// Streams features of many texts into a feature file, block by block, resuming an
/// interrupted run. Memory: one block of per-example gradients (O x B x P_dense) plus
/// the projector's buffers; nothing of size K x P or n x P.
public final class Featurizer {
    public let classifier: Classifier
    public let options: FeaturizeOptions
    /// `Featurizer.modelFingerprint(classifier)`, hashed once (the weights of a large
    /// model are hundreds of MB): the model must not change while this featurizer is used.
    public let modelFingerprint: String
    /// How the features are computed (chosen once per run).
    let engine: Engine

    /// Pooled embeddings need no gradients. Projected kinds run the gradient computer into
    /// the projector: with the sketch, each text's gradient of a tensor is sketched as the
    /// backward pass streams it (with the hashed buckets, once per run); other projectors
    /// and EK-FAC's whitening take dense blocks of gradients (a sketch's buckets again
    /// hashed once per run, not once per block and damping).
    enum Engine {
        case embedding
        case streamedSketch(GradientComputer<Float>, SketchCodes)
        case dense(GradientComputer<Float>, Projector, SketchCodes?)

        /// The gradient computer of a projected kind.
        var computer: GradientComputer<Float>? {
            switch self {
            case .embedding: return nil
            case .streamedSketch(let c, _), .dense(let c, _, _): return c
            }
        }
    }

    /// `fingerprint`: the classifier's `modelFingerprint` when the caller has it already
    /// (another featurizer of the same model), else computed here.
    public init(classifier: Classifier, options: FeaturizeOptions, fingerprint known: String? = nil) throws {
        self.classifier = classifier
        self.options = options
        modelFingerprint = known ?? Featurizer.modelFingerprint(classifier)
        guard options.blockSize >= 1 else { throw FeatureStoreError("block size must be at least 1") }
        guard options.batchSize >= 1 else { throw FeatureStoreError("batch size must be at least 1") }
        if options.kind.projected {
            guard options.projDim > 0 else {
                throw FeatureStoreError("--proj-dim must be positive, got \(options.projDim)")
            }
            // Whether `memoryEstimate` is too much for the machine is the caller's decision
            // (the CLI refuses before any work), not this type's.
            if options.kind == .ekfac && options.curvature == nil {
                throw FeatureStoreError("ekfac features need the curvature they are whitened by")
            }
            // EK-FAC whitens each text's whole gradient of a layer: the linear layers'
            // tensors only, in dense blocks (not streamed).
            let c = try GradientComputer(
                model: classifier.model,
                prefixes: options.kind == .ekfac ? options.curvature!.tensorNames : options.params)
            let p = Projector(
                dimension: options.projDim, seed: options.seed, choice: options.projector, threads: options.threads)
            let codes = p.distribution == .sketch ? SketchCodes(projector: p, computer: c) : nil
            if options.kind == .ekfac {
                engine = .dense(c, p, codes)
            } else if let codes {
                engine = .streamedSketch(c, codes)
            } else {
                engine = .dense(c, p, nil)
            }
        } else {
            engine = .embedding
        }
    }

    /// Bytes a projected run holds at its peak, roughly: gradients of one block, the
    /// projector's column chunk and accumulators, and the block's features.
    public static func memoryEstimate(options: FeaturizeOptions, classifier: Classifier) throws -> UInt64 {
        guard options.kind.projected else { return 0 }
        return memoryEstimate(
            options: options, computer: try GradientComputer(model: classifier.model, prefixes: options.params))
    }

    static func memoryEstimate(options: FeaturizeOptions, computer: GradientComputer<Float>) -> UInt64 {
        let C = computer.model.shape.classes
        let D = computer.model.shape.tokenWidth
        let O = options.kind == .trntk ? C : 1
        let B = UInt64(options.batchSize)
        let K = UInt64(options.projDim)
        if options.kind == .ekfac {
            // Dense blocks (the gradients, their rotation and one whitened copy), the factors
            // (eigenvectors about 2 P, corrected eigenvalues P) and one vector per damping.
            let P = UInt64(computer.dense.count) * 4
            let dampings = UInt64(options.curvature?.dampings.count ?? 1)
            let grads = 3 * min(B * P, max(P, UInt64(options.gradientBudget)))
            let codes = options.projector.distribution == .sketch ? P * UInt64(options.projector.nonzeros) : 0
            return grads + 3 * P + codes + dampings * B * K * 4 + 300 * 1_048_576
        }
        if options.projector.distribution == .sketch {
            // Streamed gradients: hashed buckets, one tensor's gradient per thread, the
            // block's token rows and features (per layer too), never B x P_dense.
            let codes = UInt64(computer.dense.count * options.projector.nonzeros) * 4
            let rows = B * UInt64(computer.model.shape.maxTokens * D) * 4
            let groups = UInt64(options.perLayer ? computer.groups.count + 1 : 2)
            return codes + rows + groups * UInt64(O) * B * K * 4 + 300 * 1_048_576
        }
        let grads = min(B * UInt64(computer.dense.count) * 4, UInt64(options.gradientBudget))
        let rows = UInt64(O) * B * UInt64(computer.model.shape.maxTokens * D) * 4
        let proj = (128 + 16 * UInt64(D)) * K * 4 + 3 * UInt64(O) * (B + 32) * K * 4
        return grads + rows + proj + 300 * 1_048_576
    }

    /// Vectors per text and their length.
    public var shape: (outputs: Int, width: Int) {
        switch options.kind {
        case .embedding: return (1, classifier.model.shape.width)
        case .trntk: return (classifier.model.shape.classes, options.projDim)
        case .pntk, .grad: return (1, options.projDim)
        case .ekfac: return (options.curvature!.dampings.count, options.projDim)
        }
    }

    /// The fingerprint of everything that changes what the classifier computes: its
    /// configuration, weights, tokenizer (the serialized model's bytes) and label names.
    /// Cache entries are named by it, so a swapped tokenizer is never served old features.
    public static func modelFingerprint(_ classifier: Classifier) -> String {
        let model = classifier.model
        var d = model.configurationData
        d.append(Data(buffer: UnsafeBufferPointer(model.parameters)))
        d.append(classifier.encoder.identity)
        d.append(Data(classifier.labels.names.joined(separator: "\u{1F}").utf8))
        return fingerprint(d)
    }

    /// Texts per computation: the batch size, lowered so that O x B x P_dense gradients
    /// stay within the budget.
    var subBatch: Int {
        guard case .dense(let c, _, _) = engine else { return options.batchSize }
        // One output's gradients are held at a time.
        return max(1, min(options.batchSize, options.gradientBudget / max(1, c.dense.count * 4)))
    }

    /// Features, logits and labels of `texts` for one block: features [B, O, W].
    public func block(_ texts: [LabeledText]) throws -> (
        features: [Float], logits: [Float], layerFeatures: [Float]?, gradientSeconds: Double, projectionSeconds: Double
    ) {
        let step = subBatch
        if texts.count <= step { return try computeBlock(texts) }
        var features: [Float] = []
        var logits: [Float] = []
        var layers: [Float]? = options.perLayer ? [] : nil
        var gs = 0.0
        var ps = 0.0
        for s in stride(from: 0, to: texts.count, by: step) {
            let r = try computeBlock(Array(texts[s..<min(texts.count, s + step)]))
            features += r.features
            logits += r.logits
            if let l = r.layerFeatures { layers! += l }
            gs += r.gradientSeconds
            ps += r.projectionSeconds
        }
        return (features, logits, layers, gs, ps)
    }

    /// `compute(texts)`, refused when its logits or features are not finite (see `FiniteCheck`).
    private func computeBlock(_ texts: [LabeledText]) throws -> (
        features: [Float], logits: [Float], layerFeatures: [Float]?, gradientSeconds: Double, projectionSeconds: Double
    ) {
        let r = try compute(texts)
        let model = classifier.model
        let dir = classifier.directory
        try FiniteCheck.rows(r.logits, width: model.shape.classes, stage: "logits", model: dir) {
            FiniteCheck.describe(texts[$0])
        }
        let what = options.kind == .embedding ? "embeddings" : "\(options.kind.rawValue) features"
        try FiniteCheck.rows(r.features, width: r.features.count / max(1, texts.count), stage: what, model: dir) {
            FiniteCheck.describe(texts[$0])
        }
        return r
    }

    /// What the backward passes differentiate: the pseudo-NTK's summed logits, every logit
    /// (trNTK), or the loss at each text's label (or the predicted one).
    private func gradientOutput(_ texts: [LabeledText]) -> GradientOutput {
        switch options.kind {
        case .pntk: return .pseudoNTK
        case .trntk: return .everyLogit
        default:
            return .loss(
                labels: options.predictedLossLabels
                    ? [Int?](repeating: nil, count: texts.count)
                    : texts.map { $0.label.flatMap(classifier.labels.index(of:)) })
        }
    }

    /// Adds projected features f [L, n, B, K] of outputs o0 ..< o0 + n into `out` [B, O, K]
    /// (summed over the layer groups in order) and, when kept, into `layers` [B, L, O, K].
    static func place(
        _ f: [Float], outputs o0: Int, count n: Int, shape: (L: Int, O: Int, B: Int, K: Int), into out: inout [Float],
        layers: inout [Float]?
    ) {
        let (L, O, B, K) = shape
        for l in 0..<L {
            for o in 0..<n {
                for b in 0..<B {
                    let src = ((l * n + o) * B + b) * K
                    let dst = (b * O + o0 + o) * K
                    for k in 0..<K { out[dst + k] += f[src + k] }
                    if layers != nil {
                        for k in 0..<K { layers![((b * L + l) * O + o0 + o) * K + k] = f[src + k] }
                    }
                }
            }
        }
    }

    private func compute(_ texts: [LabeledText]) throws -> (
        features: [Float], logits: [Float], layerFeatures: [Float]?, gradientSeconds: Double, projectionSeconds: Double
    ) {
        let model = classifier.model
        let batch = TokenBatch(sequences: try texts.map { try classifier.encode($0.text) }, padID: model.shape.padID)
        let t0 = Date()
        switch engine {
        case .embedding:
            let logits = try model.forward(batch, rowInvariant: true)
            return (model.lastEmbeddings(), logits, nil, Date().timeIntervalSince(t0), 0)
        case .streamedSketch(let computer, let codes):
            // Each text's gradient of each tensor is sketched as the backward pass produces
            // it, while in cache; no B x P_dense array exists.
            let output = gradientOutput(texts)
            var placed = placement(computer, output: output, texts: batch.count)
            let acc = SketchAccumulator(codes: codes, outputs: placed.O, texts: batch.count, perLayer: options.perLayer)
            let r = try computer.streamOutputs(
                batch, output: output,
                sink: { o, t, b, g in
                    acc.add(output: o, tensor: t, text: b, gradient: g)
                }, rows: { o, rows in acc.addTokenRows(output: o, rows: rows, batch: batch) })
            let fused = Date().timeIntervalSince(t0)
            placed.place(acc.features, outputs: 0, count: placed.O)
            return (placed.out, r.logits, placed.layers, fused, 0)
        case .dense(let computer, let projector, let codes):
            return try denseFeatures(batch, texts, computer: computer, projector: projector, codes: codes, started: t0)
        }
    }

    /// Features [B, O, K] (and per layer [B, L, O, K]) filled from projected blocks.
    struct Placement {
        let L: Int, O: Int, B: Int, K: Int
        var out: [Float]
        var layers: [Float]?

        mutating func place(_ f: [Float], outputs o0: Int, count n: Int) {
            Featurizer.place(f, outputs: o0, count: n, shape: (L, O, B, K), into: &out, layers: &layers)
        }
    }

    /// The empty features of `texts` texts for `output` (EK-FAC: one output per damping).
    private func placement(_ computer: GradientComputer<Float>, output: GradientOutput, texts B: Int) -> Placement {
        let K = options.projDim
        let O =
            options.kind == .ekfac
            ? options.curvature?.dampings.count ?? 1 : output.count(classes: classifier.model.shape.classes)
        let L = options.perLayer ? computer.groups.count : 1
        return Placement(
            L: L, O: O, B: B, K: K, out: [Float](repeating: 0, count: B * O * K),
            layers: options.perLayer ? [Float](repeating: 0, count: B * L * O * K) : nil)
    }

    /// Dense blocks: one output at a time, gradients of one class, then their projection
    /// (EK-FAC: rotated once, then whitened and projected for each damping).
    private func denseFeatures(
        _ batch: TokenBatch, _ texts: [LabeledText], computer: GradientComputer<Float>, projector: Projector,
        codes: SketchCodes?, started t0: Date
    ) throws -> (
        features: [Float], logits: [Float], layerFeatures: [Float]?, gradientSeconds: Double, projectionSeconds: Double
    ) {
        let output = gradientOutput(texts)
        let B = batch.count
        var placed = placement(computer, output: output, texts: B)
        var logits: [Float] = []
        var gradSeconds = 0.0
        var projSeconds = 0.0
        var mark = t0
        let curvature = try options.curvature.map { c in (c, try c.factors()) }
        let perLayer = options.perLayer
        func project(_ g: GradientBlock<Float>) -> [Float] {
            guard let codes else { return projector.project(g, computer: computer, perLayer: perLayer) }
            return projector.sketch(g, computer: computer, perLayer: perLayer, codes: codes)
        }
        guard let (c, factors) = curvature else {
            try computer.forEachOutput(batch, output: output) { o, g in
                logits = g.logits
                let t1 = Date()
                gradSeconds += t1.timeIntervalSince(mark)
                placed.place(project(g), outputs: o, count: 1)
                mark = Date()
                projSeconds += mark.timeIntervalSince(t1)
            }
            return (placed.out, logits, placed.layers, gradSeconds, projSeconds)
        }
        // EK-FAC: the gradients arrive rotated into the factors' eigenbases.
        let dense = computer.dense
        let model = computer.model
        func rotated(_ seed: [Float], _ into: UnsafeMutableBufferPointer<Float>) {
            factors.rotatedGradients(model: model, seed: seed, subset: dense, into: into)
        }
        try computer.forEachOutput(batch, output: output, backward: rotated) { o, g in
            logits = g.logits
            let t1 = Date()
            gradSeconds += t1.timeIntervalSince(mark)
            for (d, damping) in c.dampings.enumerated() {
                var h = g
                h.dense.withUnsafeMutableBufferPointer {
                    factors.scale($0.baseAddress!, texts: B, subset: dense, dampings: factors.dampings(damping))
                }
                placed.place(project(h), outputs: d, count: 1)
            }
            mark = Date()
            projSeconds += mark.timeIntervalSince(t1)
        }
        return (placed.out, logits, placed.layers, gradSeconds, projSeconds)
    }

    /// The metadata of a file of `texts` under these settings (the whole set; see
    /// `FeatureMetadata.shard(_:of:)` for one shard of it).
    public func metadata(texts: [LabeledText], source: String) -> FeatureMetadata {
        let (O, W) = shape
        var m = FeatureMetadata(
            kernel: options.kind.rawValue, modelFingerprint: modelFingerprint,
            modelPath: classifier.directory?.path ?? "(in memory)",
            params: options.kind.projected ? options.params.joined(separator: ",") : "",
            projDim: options.kind.projected ? options.projDim : 0, seed: options.kind.projected ? options.seed : 0,
            projector: options.kind.projected ? options.projector.tag : "", outputs: O, width: W,
            texts: texts.count, classes: classifier.model.shape.classes, source: source,
            textsFingerprint: FeatureMetadata.fingerprint(texts: texts), blockSize: options.blockSize)
        if options.perLayer && options.kind.projected {
            m.layerGroups = (engine.computer?.groups ?? []).map(\.name).joined(separator: ",")
        }
        m.curvature = options.kind == .ekfac ? options.curvature?.identity : nil
        return m
    }

    /// Featurizes `texts` into `url`, resuming an interrupted run with the same settings;
    /// `replace` says what may happen to an existing output (see `FeatureWriter`).
    /// With `shard`, only that shard's texts (`ShardSpec.range` on the file's blocks) are
    /// featurized, into a shard file that `FeatureMerger` joins with the others.
    /// `progress(done, total)` reports texts finished (of the shard).
    public func run(
        texts: [LabeledText], source: String, to url: URL, replace: FeatureWriter.Replace, shard: ShardSpec? = nil,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> FeatureFile {
        // The model may be kept long after (an ensemble member, a checkpoint): its passes'
        // activations are freed once the file is written.
        defer { classifier.model.releaseScratch() }
        var metadata = metadata(texts: texts, source: source)
        var part = texts[...]
        if let shard {
            metadata = try metadata.shard(shard, of: texts)
            part = texts[shard.range(texts: texts.count, blockTexts: options.blockSize)]
        }
        let labels = part.map { Int64($0.label.flatMap(classifier.labels.index(of:)) ?? -1) }
        let writer = try FeatureWriter(
            url: url, metadata: metadata, labels: labels, lines: part.map { Int64($0.line) }, replace: replace)
        var finished = writer.done.enumerated().filter(\.element).reduce(0) {
            $0 + writer.range(ofBlock: $1.offset).count
        }
        progress(finished, part.count)
        // Unfinished blocks in runs of consecutive ones, as many per computation as a batch
        // holds; each block is stored (and flagged done) on its own.
        let perBatch = max(1, options.batchSize / options.blockSize)
        do {
            try write(
                part, into: writer, perBatch: perBatch, classes: metadata.classes, groups: metadata.groupList.count
            ) {
                finished += $0
                progress(finished, part.count)
            }
        } catch {
            writer.discardIfEmpty()
            throw error
        }
        try writer.finish()
        return try FeatureFile(url: url)
    }

    /// Computes and stores the unfinished blocks of `writer` (texts `part`), `perBatch`
    /// blocks per computation; `stored(n)` after each block of n texts.
    private func write(
        _ part: ArraySlice<LabeledText>, into writer: FeatureWriter, perBatch: Int, classes C: Int, groups: Int,
        stored: (Int) -> Void
    ) throws {
        let base = part.startIndex
        var b = 0
        while b < writer.blocks {
            guard !writer.done[b] else {
                b += 1
                continue
            }
            var e = b
            while e < writer.blocks && e - b < perBatch && !writer.done[e] { e += 1 }
            let lo = writer.range(ofBlock: b).lowerBound
            let hi = writer.range(ofBlock: e - 1).upperBound
            let out = try block(Array(part[(base + lo)..<(base + hi)]))
            let (O, W) = shape
            let L = max(1, groups)
            for k in b..<e {
                let r = writer.range(ofBlock: k)
                let s = r.lowerBound - lo
                let t = r.upperBound - lo
                try writer.write(
                    block: k, features: Array(out.features[(s * O * W)..<(t * O * W)]),
                    logits: Array(out.logits[(s * C)..<(t * C)]),
                    layerFeatures: out.layerFeatures.map { Array($0[(s * L * O * W)..<(t * L * O * W)]) })
                stored(r.count)
            }
            b = e
        }
    }
}
