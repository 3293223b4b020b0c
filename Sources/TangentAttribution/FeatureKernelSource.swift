import Foundation
import TangentData
import TangentFeatures
import TangentModel
import TangentSafetensors
import TangentSurrogate
import TangentTensor

/// A kernel of stored feature vectors: one source (the model), TracIn's checkpoints
/// (scaled by sqrt(eta_k)) or TRAK's ensemble (scaled by 1/sqrt(N)), each featurized into
/// the cache, optionally mapped through influence transforms, concatenated.
public final class FeatureKernelSource: KernelSource {
    public let kernel: SurrogateKernel
    public let stem: String
    public var selfParts: [(group: String, values: [Float])]? { nil }
    public let note: String?
    public var storedFeatures: (file: FeatureFile, featurizer: Featurizer)? { (features, featurizer) }
    public var layerWeighting: (weights: [Double], fit: LayerWeighting.Result?)? { nil }
    public var trainCount: Int { trainNorms.count }
    /// EK-FAC: which of the features' vectors per text (one per damping) make the kernel.
    let dampingOutput: (index: Int, count: Int)?
    /// The model under study's training features and featurizer.
    public let features: FeatureFile
    public let featurizer: Featurizer
    /// One influence transform per source (influence baselines and TRAK).
    public private(set) var transforms: [InfluenceTransform] = []
    let classifier: Classifier
    let cache: SurrogateCache
    private let sources: [(featurizer: Featurizer, stem: String, scale: Float)]
    private let trainFeatures: [Float]
    private let trainNorms: [Float]
    /// TRAK: training features with each model's block scaled by 1 - p_{y_i}(x_i) [n, W].
    private var weightedTrainFeatures: [Float]?

    /// Connects the stages, as TRAK's top-level object does: the models whose features are
    /// summed (`models`), their training features read or featurized into the cache
    /// (`trainingFeatures`), influence transforms (`transformed`), the concatenation.
    init(
        setup: AttributionSetup, kernel: SurrogateKernel, labels: [Int], log: (String) -> Void,
        progress: (Int, Int) -> Void
    ) throws {
        self.kernel = kernel
        let classifier = setup.classifier
        self.classifier = classifier
        cache = setup.cache
        let n = setup.train.count
        let (models, note) = try FeatureKernelSource.models(for: kernel, setup: setup, log: log)
        self.note = note
        let (files, sources) = try FeatureKernelSource.trainingFeatures(
            kernel: kernel, models: models, setup: setup, log: log, progress: progress)
        self.sources = sources
        // The model under study is the last source for TracIn (the final checkpoint) and
        // the first for an ensemble.
        let primary = kernel.ensembled ? 0 : sources.count - 1
        featurizer = sources[primary].featurizer
        features = files[primary]
        // Another damping is another kernel: its surrogate must not be served for this one.
        stem =
            SurrogateCache.combinedStem(sources.map(\.stem), ensemble: kernel.ensembled)
            + (kernel.defaultDamping != nil ? setup.damping.map { String(format: "-damping%g", $0) } ?? "" : "")
        var blocks = try files.map { try $0.features(0..<n) }
        dampingOutput = try FeatureKernelSource.dampingOutput(kernel: kernel, setup: setup)
        if let d = dampingOutput {
            blocks = blocks.map { FeatureKernelSource.output(d.index, of: d.count, $0, rows: n) }
        }
        var weights: [[Double]] = []
        if let kind = kernel.influence {
            (blocks, transforms, weights) = try FeatureKernelSource.transformed(
                blocks, files: files, kind: kind, labels: labels,
                classes: classifier.labels.count,
                damping: setup.damping ?? InfluenceTransform.defaultDamping, log: log)
        }
        if !weights.isEmpty {
            weightedTrainFeatures = FeatureKernelSource.concatenate(
                blocks, scales: sources.map(\.scale), rows: n, rowScales: weights)
        }
        trainFeatures = FeatureKernelSource.concatenate(blocks, scales: sources.map(\.scale), rows: n)
        trainNorms = Gram.squaredNorms(trainFeatures, rows: n)
    }

    /// The models whose features make the kernel, each with its scale: the model alone,
    /// TracIn's checkpoints (sqrt(eta_k)) or TRAK's ensemble (1/sqrt(N)); and what a reader
    /// must know about them.
    static func models(for kernel: SurrogateKernel, setup: AttributionSetup, log: (String) -> Void) throws
        -> (models: [(Classifier, Float)], note: String?)
    {
        let classifier = setup.classifier
        if kernel.checkpointSummed {
            let run = try TracIn.checkpoints(of: classifier, directory: setup.checkpoints)
            if let dir = setup.checkpoints, run.checkpoints.isEmpty {
                throw DataError(
                    "\(dir.path): no checkpoints (epoch-K.safetensors from `tangent train --keep-checkpoints`)")
            }
            if run.checkpoints.isEmpty {
                log(
                    "tracin: no checkpoints in \(classifier.directory.map { $0.appendingPathComponent(ModelDirectory.checkpointsDirectory).path } ?? "the model"); "
                        + "using the final model alone (grad-dot with eta = 1)")
                return ([(classifier, 1)], "no checkpoints: the final model alone (grad-dot with eta = 1)")
            }
            log("tracin: " + run.summary)
            return (
                try run.checkpoints.map {
                    (try TracIn.load($0, like: classifier, threads: setup.threads), Float($0.learningRate.squareRoot()))
                },
                run.summary
            )
        }
        if kernel.ensembled {
            let all = [classifier] + setup.ensemble
            for other in setup.ensemble
            where other.labels != classifier.labels
                || other.model.configurationData != classifier.model.configurationData
            {
                throw AttributionError(
                    "\(other.directory?.path ?? "an ensemble model"): its architecture or labels differ from the model under study's; an ensemble must be retrainings of one recipe"
                )
            }
            if all.count > 1 { log("\(kernel.name): ensemble of \(all.count) models") }
            return (all.map { ($0, Float(1 / Double(all.count).squareRoot())) }, nil)
        }
        return ([(classifier, 1)], nil)
    }

    /// Each model's training features, read from the cache or featurized into it, with
    /// the model's featurizer, cache stem and scale.
    static func trainingFeatures(
        kernel: SurrogateKernel, models: [(Classifier, Float)], setup: AttributionSetup,
        log: (String) -> Void, progress: (Int, Int) -> Void
    ) throws
        -> (files: [FeatureFile], sources: [(featurizer: Featurizer, stem: String, scale: Float)])
    {
        let train = setup.train
        let textsKey = SurrogateCache.key(train)
        var options = FeaturizeOptions(kind: kernel.features)
        options.projDim = setup.projDim
        options.seed = setup.seed
        options.projector = setup.projector
        options.threads = setup.threads
        if kernel.features == .ekfac {
            let c = try curvature(setup: setup, textsKey: textsKey)
            log(
                "ekfac: \(c.tensorNames.count) linear tensors; Kronecker factors and corrected eigenvalues fitted on the training texts when features are computed (true Fisher, labels drawn with seed \(setup.seed)); damping \(String(format: "%g", setup.damping ?? kernel.defaultDamping!)) of each layer's mean corrected eigenvalue"
            )
            options.curvature = c
        }
        var files: [FeatureFile] = []
        var sources: [(featurizer: Featurizer, stem: String, scale: Float)] = []
        for (model, scale) in models {
            let featurizer = try Featurizer(classifier: model, options: options)
            // EK-FAC's features also depend on the curvature's settings (its dampings).
            let stem =
                SurrogateCache.featureStem(
                    kernel.features, projDim: setup.projDim, seed: setup.seed, projector: setup.projector,
                    model: featurizer.modelFingerprint, texts: textsKey)
                + (options.curvature.map { "-" + fingerprint(Data($0.identity.utf8)).prefix(12) } ?? "")
            let url = setup.cache.url(stem)
            if let f = FeatureFile.cached(
                url, expected: featurizer.metadata(texts: train, source: "training data"), log: log)
            {
                files.append(f)
                log("using cached training features \(url.path)")
            } else {
                log(
                    "featurizing \(train.count) training texts (\(kernel.features.rawValue)\(kernel.features.projected ? ", K = \(setup.projDim), \(setup.projector)" : "")) into \(url.path)"
                )
                try setup.cache.prepare()
                files.append(
                    try featurizer.run(
                        texts: train, source: "training data", to: url, replace: .anyFile, progress: progress))
            }
            sources.append((featurizer, stem, scale))
        }
        return (files, sources)
    }

    /// EK-FAC: the index of `setup.damping` (default: the method's) among the dampings
    /// the features are computed for; nil for the other kernels.
    static func dampingOutput(kernel: SurrogateKernel, setup: AttributionSetup) throws -> (index: Int, count: Int)? {
        guard kernel.features == .ekfac else { return nil }
        let d = setup.damping ?? kernel.defaultDamping!
        guard let i = setup.ekfacDampings.firstIndex(of: d) else {
            throw AttributionError(
                "ekfac: damping \(d) is not among the dampings its features are computed for (\(setup.ekfacDampings.map { String(format: "%g", $0) }.joined(separator: ", ")))"
            )
        }
        return (i, setup.ekfacDampings.count)
    }

    /// Vector `index` of `count` per row of features [rows, count, W].
    static func output(_ index: Int, of count: Int, _ f: [Float], rows: Int) -> [Float] {
        if count == 1 { return f }
        let W = f.count / (rows * count)
        var out = [Float](repeating: 0, count: rows * W)
        for r in 0..<rows {
            let from = (r * count + index) * W
            for k in 0..<W { out[r * W + k] = f[from + k] }
        }
        return out
    }

    /// EK-FAC's curvature of the model under study, fitted (when first needed) on the
    /// training texts with their labels and labels drawn from the model (the true Fisher,
    /// kronfluence's default; drawn by `setup.seed`), with features for each of `setup.ekfacDampings`.
    static func curvature(setup: AttributionSetup, textsKey: String) throws -> Curvature {
        let classifier = setup.classifier
        let model = classifier.model
        let train = setup.train
        guard let first = train.first else { throw AttributionError("ekfac needs training texts") }
        let names = try EKFAC.linearTensors(model: model, probe: try classifier.encode(first.text)).map {
            model.layout.tensors[$0].name
        }
        let labels = try train.map { t -> Int in
            guard let y = t.label.flatMap(classifier.labels.index(of:)) else {
                throw AttributionError(
                    "line \(t.line): ekfac fits its curvature on labelled training texts; this one has no known label")
            }
            return y
        }
        let identity =
            "ekfac-v1 fisher=sampled:\(setup.seed) dampings="
            + setup.ekfacDampings.map { String(format: "%g", $0) }.joined(separator: ",")
            + " texts=\(textsKey)"
        return Curvature(identity: identity, dampings: setup.ekfacDampings.map { .relative($0) }, tensorNames: names) {
            let texts = try train.map { try classifier.encode($0.text) }
            return try EKFAC(model: model, texts: texts, labels: labels, fisher: .sampled(seed: setup.seed))
        }
    }

    /// Each source's features through its influence transform (fitted on them), and TRAK's
    /// per-text training weights 1 - p_{y_i}(x_i).
    static func transformed(
        _ blocks: [[Float]], files: [FeatureFile], kind: InfluenceTransform.Kind, labels: [Int], classes: Int,
        damping: Double, log: (String) -> Void
    ) throws -> (blocks: [[Float]], transforms: [InfluenceTransform], weights: [[Double]]) {
        var out = blocks
        var transforms: [InfluenceTransform] = []
        var weights: [[Double]] = []
        for (s, file) in files.enumerated() {
            let logits = try file.logits()
            let t = try InfluenceTransform(
                kind: kind, base: blocks[s], logits: logits, classes: classes, lambda: nil, relativeDamping: damping,
                labels: labels)
            log(
                "\(kind.rawValue): \(t.dimension) x \(t.dimension) curvature matrix factored (damping \(String(format: "%.3g", t.lambda)), \(String(format: "%g", damping)) of its mean diagonal)"
            )
            out[s] = t.features(base: blocks[s], logits: logits, labels: labels)
            transforms.append(t)
            if kind == .trak {
                weights.append(InfluenceTransform.trainingWeights(logits: logits, labels: labels, classes: classes))
            }
        }
        return (out, transforms, weights)
    }

    public func gram() throws -> TrainingKernel {
        let n = trainCount
        return .gram(
            features: kernel.normalized
                ? Gram.unitRows(trainFeatures, rows: n, squaredNorms: trainNorms) : trainFeatures,
            n: n, width: trainFeatures.count / n)
    }

    public func trainLogits() throws -> [Float] { try features.logits() }

    /// Kernel-space features of query texts from their stored features [m, W] and logits:
    /// the features themselves, or (influence baselines) the transform of `source` applied
    /// with `labels` (nil: the network's predicted labels).
    public func queryFeatures(_ f: [Float], logits: [Float], labels: [Int?]? = nil, source: Int = 0) -> [Float] {
        guard !transforms.isEmpty else { return f }
        return transforms[source].features(
            base: f, logits: logits,
            labels: labels ?? [Int?](repeating: nil, count: logits.count / classifier.labels.count))
    }

    /// Kernel rows K(x, X_train) [m, n] for texts with kernel-space features [m, W] (see
    /// `queryFeatures`); with `weighted`, TRAK's scores instead (each model's block of the
    /// training features scaled by its 1 - p_{y_i}(x_i)).
    public func kernelRows(features f: [Float], weighted: Bool = false) -> [Float] {
        precondition(!weighted || weightedTrainFeatures != nil, "only TRAK has weighted rows")
        let n = trainCount
        let W = trainFeatures.count / n
        let m = f.count / W
        var rows = Gram.product(f, weighted ? weightedTrainFeatures! : trainFeatures, m: m, n: n, width: W)
        if kernel.normalized { Gram.normalize(&rows, rowSelf: Gram.squaredNorms(f, rows: m), columnSelf: trainNorms) }
        return rows
    }

    public func query(
        _ texts: [LabeledText], source: String, cached: Bool, lossLabels: [Int]?,
        log: (String) -> Void, progress: (Int, Int) -> Void
    ) throws -> QueryKernel {
        precondition(lossLabels == nil || lossLabels!.count == texts.count)
        let m = texts.count
        let C = classifier.labels.count
        // Without `lossLabels`: the predicted label of the model under study, also for
        // checkpoints and an ensemble's other models.
        let primaryLogits = sources.count > 1 ? try classifier.logits(texts.map(\.text)) : nil
        let labels: [Int?] =
            lossLabels ?? primaryLogits.map { z in (0..<m).map { t in Softmax.argmax(z[(t * C)..<((t + 1) * C)]) } }
            ?? [Int?](repeating: nil, count: m)
        let queryTexts = texts.enumerated().map { t, x in
            LabeledText(text: x.text, label: labels[t].map { classifier.labels.names[$0] }, line: x.line)
        }
        var parts: [[Float]] = []
        var logits: [Float] = []
        for (s, src) in sources.enumerated() {
            let base: [Float]
            let sourceLogits: [Float]
            if cached {
                var options = src.featurizer.options
                options.predictedLossLabels = labels.allSatisfy { $0 == nil }
                // Only loss-gradient features depend on the label.
                let url = cache.query(src.stem, texts: texts, lossLabels: kernel.features == .grad ? lossLabels : nil)
                try cache.prepare()
                let queryFeaturizer = try Featurizer(
                    classifier: src.featurizer.classifier, options: options,
                    fingerprint: src.featurizer.modelFingerprint)
                let file =
                    try FeatureFile.cached(
                        url, expected: queryFeaturizer.metadata(texts: queryTexts, source: source), log: log)
                    ?? queryFeaturizer.run(
                        texts: queryTexts, source: source, to: url, replace: .anyFile, progress: progress)
                base = try file.features(0..<m)
                sourceLogits = try file.logits()
            } else {
                let block = try src.featurizer.block(queryTexts)
                base = block.features
                sourceLogits = block.logits
            }
            let vectors =
                dampingOutput.map { FeatureKernelSource.output($0.index, of: $0.count, base, rows: m) } ?? base
            parts.append(queryFeatures(vectors, logits: sourceLogits, labels: labels, source: s))
            logits = sourceLogits
        }
        if let primaryLogits { logits = primaryLogits }
        let f = FeatureKernelSource.concatenate(parts, scales: sources.map(\.scale), rows: m)
        var q = QueryKernel(rows: kernelRows(features: f), logits: logits, parts: nil)
        if weightedTrainFeatures != nil { q.scores = kernelRows(features: f, weighted: true) }
        return q
    }

    /// Row-wise concatenation of [rows, W_k] matrices, each scaled, and row i of part k
    /// also by `rowScales[k][i]` when given.
    static func concatenate(_ parts: [[Float]], scales: [Float], rows: Int, rowScales: [[Double]]? = nil) -> [Float] {
        if parts.count == 1 && scales[0] == 1 && rowScales == nil { return parts[0] }
        let widths = parts.map { $0.count / rows }
        let W = widths.reduce(0, +)
        var out = [Float](repeating: 0, count: rows * W)
        for i in 0..<rows {
            var o = i * W
            for (k, p) in parts.enumerated() {
                let scale = scales[k] * Float(rowScales?[k][i] ?? 1)
                for j in 0..<widths[k] { out[o + j] = scale * p[i * widths[k] + j] }
                o += widths[k]
            }
        }
        return out
    }
}
