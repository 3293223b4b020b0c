import Foundation
import TangentData
import TangentKernels
import TangentModel
import TangentSafetensors
import TangentTensor

/// Kernel rows of query texts against the training texts, with the network's logits.
public struct QueryKernel: Sendable {
    /// K(x, X_train) [m, n], as the surrogate uses it (normalized when the kernel is).
    public let rows: [Float]
    /// The network's logits [m, C].
    public let logits: [Float]
    /// Exact kernels: the per-layer parts of `rows` (they add up to it).
    public let parts: [(group: String, values: [Float])]?
    /// TRAK: the scores [m, n], the rows with each model's 1 - p_{y_i}(x_i) applied.
    public var scores: [Float]? = nil
}

/// The training side of a kernel: what the surrogate is fitted on and queried with.
///
/// Two implementations: `ExactTrainKernel` (the exact NTK from unprojected gradients, with
/// its per-layer parts) and `FeatureTrainKernel` (products of stored feature vectors:
/// projected gradients, embeddings, loss gradients, influence-transformed features).
public protocol TrainKernel: AnyObject {
    var kernel: SurrogateKernel { get }
    var trainCount: Int { get }
    /// Names the kernel's files in the cache (`SurrogateCache`).
    var stem: String { get }
    /// The train x train kernel the surrogate is fitted on.
    func gram() throws -> TrainingKernel
    /// The network's logits on the training texts [n, C].
    func trainLogits() throws -> [Float]
    /// Kernel rows of `texts`. Loss gradients (grad-cos, influence) and TRAK's margin
    /// gradients use the class indices `lossLabels` when given, else the network's
    /// predicted label (kernels spec). With `cached`, the query's features (or exact rows)
    /// are kept in the cache and reused.
    func query(_ texts: [LabeledText], source: String, cached: Bool, lossLabels: [Int]?,
               log: (String) -> Void, progress: (Int, Int) -> Void) throws -> QueryKernel
    /// Exact kernels: per-layer parts of the training texts' self-kernels K(x_i, x_i).
    var selfParts: [(group: String, values: [Float])]? { get }
    /// What a reader must know to interpret the kernel's results (TracIn's checkpoints).
    var note: String? { get }
}

/// The settings every kernel of a run shares.
public struct AttributionSetup {
    public var classifier: Classifier
    public var train: [LabeledText]
    public var projDim: Int
    public var seed: UInt64
    public var projector: ProjectorChoice
    public var cache: SurrogateCache
    public var selector: LambdaSelector
    public var threads: Int
    /// TracIn's checkpoints (nil: MODEL/checkpoints).
    public var checkpoints: URL?
    /// TRAK's other models.
    public var ensemble: [Classifier]
    /// false: refit the surrogate even if a cached one exists (the comparison does, to
    /// report the whole grid).
    public var useSurrogateCache: Bool
    /// Fit the surrogate on all training texts at every lambda of the grid, not only at the
    /// chosen one (a comparison report's per-lambda figures); by default, when the cache
    /// is bypassed.
    public var fitGrid: Bool

    public init(classifier: Classifier, train: [LabeledText], projDim: Int, seed: UInt64, projector: ProjectorChoice = .default,
                cache: URL, selector: LambdaSelector = LambdaSelector(), threads: Int = Threads.cores, checkpoints: URL? = nil,
                ensemble: [Classifier] = [], useSurrogateCache: Bool = true) {
        self.classifier = classifier
        self.train = train
        self.projDim = projDim
        self.seed = seed
        self.projector = projector
        self.cache = SurrogateCache(directory: cache)
        self.selector = selector
        self.threads = threads
        self.checkpoints = checkpoints
        self.ensemble = ensemble
        self.useSurrogateCache = useSurrogateCache
        fitGrid = !useSurrogateCache
    }

    /// The training side of `kernel` under these settings (features or the exact kernel
    /// computed or read from the cache).
    public func trainKernel(_ kernel: SurrogateKernel, labels: [Int], log: (String) -> Void,
                            progress: (Int, Int) -> Void) throws -> TrainKernel {
        if let kind = kernel.exact {
            return try ExactTrainKernel(setup: self, kernel: kernel, kind: kind, labels: labels, log: log, progress: progress)
        }
        return try FeatureTrainKernel(setup: self, kernel: kernel, labels: labels, log: log, progress: progress)
    }
}

/// The exact NTK of the training texts (cached), and exact rows for query texts.
public final class ExactTrainKernel: TrainKernel {
    public let kernel: SurrogateKernel
    public let stem: String
    public private(set) var selfParts: [(group: String, values: [Float])]?
    public var note: String? { nil }
    public var trainCount: Int { tokens.count }
    /// NFT-K layer weights (`trntk-layers`), one per group, and their fit when it ran here.
    public private(set) var layerWeights: [Double]?
    public private(set) var layerWeightFit: LayerWeighting.Result?
    /// The largest per-layer parts written along with an exact kernel that does not need
    /// them (256 MiB: all groups for about 3,600 texts).
    static let keptPartsBytes = 256 << 20
    let kind: NTKKind
    let classifier: Classifier
    let computer: GradientComputer<Float>
    let tokens: [[Int32]]
    let texts: [String]
    let cache: SurrogateCache
    private let matrix: [Float]
    private let parts: [[Float]]?

    init(setup: AttributionSetup, kernel: SurrogateKernel, kind: NTKKind, labels: [Int], log: (String) -> Void,
         progress: (Int, Int) -> Void) throws {
        self.kernel = kernel
        self.kind = kind
        classifier = setup.classifier
        cache = setup.cache
        let n = setup.train.count
        computer = try GradientComputer<Float>(model: classifier.model, prefixes: ["all"])
        tokens = try setup.train.map { try setup.classifier.encode($0.text) }
        texts = setup.train.map(\.text)
        stem = SurrogateCache.exactStem(kind, model: classifier, texts: SurrogateCache.key(setup.train))
        let url = cache.url(stem), partsURL = cache.parts(stem)
        // The full per-layer parts [n, n] (groups times the kernel's size) are kept in a
        // file of their own whenever they are small, so that `trntk-layers` after `trntk`
        // does not compute the exact kernel again, and always for layer weights.
        var parts: [[Float]]?
        if kernel.layerWeighted, let p = try? SafetensorsFile(url: partsURL), p.metadata["format"] == "tangent-exact-parts-1" {
            parts = try? computer.groups.map { try p.float32("part.\($0.name)", shape: [n, n]) }
        }
        if let f = try? SafetensorsFile(url: url), f.metadata["format"] == "tangent-exact-kernel-1",
           let k = try? f.float32("kernel", shape: [n, n]), !kernel.layerWeighted || parts != nil {
            matrix = k
            selfParts = try computer.groups.map { ($0.name, try f.float32("self.\($0.name)", shape: [n])) }
            log("using cached exact \(kind.rawValue) kernel \(url.path)")
        } else {
            if FileManager.default.fileExists(atPath: url.path) {
                log("cached \(url.path) is unusable (damaged, of another shape, or without the per-layer parts); rebuilding it")
            }
            log("computing the exact \(kind.rawValue) kernel of \(n) training texts (\(computer.subset.count) parameters) into \(url.path)")
            let r = try ExactKernel.compute(computer, a: tokens, b: nil, kind: kind, progress: progress)
            matrix = r.total
            selfParts = r.parts.map { p in (p.group, (0..<n).map { p.values[$0 * n + $0] }) }
            try cache.prepare()
            if kernel.layerWeighted || r.parts.count * n * n * 4 <= ExactTrainKernel.keptPartsBytes {
                if kernel.layerWeighted { parts = r.parts.map(\.values) }
                var w = SafetensorsWriter()
                w.metadata = ["format": "tangent-exact-parts-1", "kernel": kind.rawValue, "texts": String(n)]
                for p in r.parts { w.add("part.\(p.group)", shape: [n, n], float32: p.values) }
                try w.write(to: partsURL)
            }
            var w = SafetensorsWriter()
            w.metadata = ["format": "tangent-exact-kernel-1", "kernel": kind.rawValue, "texts": String(n)]
            w.add("kernel", shape: [n, n], float32: r.total)
            for p in selfParts! { w.add("self.\(p.group)", shape: [n], float32: p.values) }
            try w.write(to: url)
        }
        self.parts = parts
        guard let parts else { return }
        let weightsURL = cache.layerWeights(stem, kernel: kernel.name)
        let tag = setup.selector.tag
        if setup.useSurrogateCache, let f = try? SafetensorsFile(url: weightsURL), f.metadata["selection"] == tag,
           let w = try? f.float64("weights", shape: [parts.count]) {
            layerWeights = w
            log("using cached layer weights \(weightsURL.path)")
        } else {
            // lambda for the weights' fit: the selector's choice on the unweighted kernel.
            let logits = try trainLogits()
            let C = classifier.labels.count
            let plain = setup.selector.select(kernel: .matrix(matrix, n: n), labels: labels, networkLogits: logits, classes: C, fitsOnAll: .none,
                                              threads: setup.threads)
            let r = LayerWeighting.fit(parts: parts, labels: labels, networkLogits: logits, classes: C, lambda: plain.lambda,
                                       selector: setup.selector, threads: setup.threads, log: log)
            layerWeights = r.weights
            layerWeightFit = r
            var w = SafetensorsWriter()
            w.metadata = ["format": "tangent-layer-weights-1", "selection": tag, "groups": computer.groups.map(\.name).joined(separator: ","),
                          "cross_entropy": String(r.crossEntropy), "unweighted_cross_entropy": String(r.unweightedCrossEntropy)]
            w.add("weights", shape: [parts.count], float64: r.weights)
            try w.write(to: weightsURL)
        }
        log("layer weights: " + zip(computer.groups, layerWeights!).map { String(format: "%@ %.3g", $0.name, $1) }.joined(separator: ", "))
        selfParts = zip(selfParts!, layerWeights!).map { p, wl in (group: p.group, values: p.values.map { Float(wl) * $0 }) }
    }

    public func gram() throws -> TrainingKernel {
        if let parts, let w = layerWeights { return .matrix(LayerWeighting.combine(parts, weights: w), n: trainCount) }
        return .matrix(matrix, n: trainCount)
    }

    public func trainLogits() throws -> [Float] { try classifier.logits(texts) }

    public func query(_ texts: [LabeledText], source: String, cached: Bool, lossLabels: [Int]?,
                      log: (String) -> Void, progress: (Int, Int) -> Void) throws -> QueryKernel {
        let m = texts.count, n = trainCount, C = classifier.labels.count
        let url = cache.query(stem, texts: texts)
        if cached, let f = try? SafetensorsFile(url: url), f.metadata["format"] == "tangent-exact-rows-1" {
            return weighted(QueryKernel(rows: try f.float32("kernel", shape: [m, n]), logits: try f.float32("logits", shape: [m, C]),
                                        parts: try computer.groups.map { ($0.name, try f.float32("part.\($0.name)", shape: [m, n])) }))
        }
        let r = try ExactKernel.compute(computer, a: try texts.map { try classifier.encode($0.text) }, b: tokens, kind: kind, progress: progress)
        let logits = try classifier.logits(texts.map(\.text))
        if cached {
            var w = SafetensorsWriter()
            w.metadata = ["format": "tangent-exact-rows-1", "kernel": kind.rawValue]
            w.add("kernel", shape: [m, n], float32: r.total)
            w.add("logits", shape: [m, C], float32: logits)
            for p in r.parts { w.add("part.\(p.group)", shape: [m, n], float32: p.values) }
            try cache.prepare()
            try w.write(to: url)
        }
        return weighted(QueryKernel(rows: r.total, logits: logits, parts: r.parts))
    }

    /// With layer weights: each part scaled by its weight and the rows their sum.
    private func weighted(_ q: QueryKernel) -> QueryKernel {
        guard let w = layerWeights, let parts = q.parts else { return q }
        let scaled = zip(parts, w).map { p, wl in (group: p.group, values: p.values.map { Float(wl) * $0 }) }
        return QueryKernel(rows: LayerWeighting.combine(parts.map(\.values), weights: w), logits: q.logits, parts: scaled)
    }
}

/// A kernel of stored feature vectors: one source (the model), TracIn's checkpoints
/// (scaled by sqrt(eta_k)) or TRAK's ensemble (scaled by 1/sqrt(N)), each featurized into
/// the cache, optionally mapped through influence transforms, concatenated.
public final class FeatureTrainKernel: TrainKernel {
    public let kernel: SurrogateKernel
    public let stem: String
    public var selfParts: [(group: String, values: [Float])]? { nil }
    public private(set) var note: String?
    public var trainCount: Int { trainNorms.count }
    /// The model under study's training features and featurizer.
    public let features: FeatureFile
    public let featurizer: Featurizer
    /// One influence transform per source (influence baselines and TRAK).
    public private(set) var transforms: [InfluenceTransform] = []
    let classifier: Classifier
    let cache: SurrogateCache
    private var sources: [(featurizer: Featurizer, stem: String, scale: Float)] = []
    private let trainFeatures: [Float]
    private let trainNorms: [Float]
    /// TRAK: training features with each model's block scaled by 1 - p_{y_i}(x_i) [n, W].
    private var weightedTrainFeatures: [Float]?

    init(setup: AttributionSetup, kernel: SurrogateKernel, labels: [Int], log: (String) -> Void, progress: (Int, Int) -> Void) throws {
        self.kernel = kernel
        let classifier = setup.classifier
        self.classifier = classifier
        cache = setup.cache
        let train = setup.train, n = train.count
        var options = FeaturizeOptions(kind: kernel.features)
        options.projDim = setup.projDim
        options.seed = setup.seed
        options.projector = setup.projector
        options.threads = setup.threads
        var models: [(Classifier, Float)] = [(classifier, 1)]
        if kernel.checkpointSummed {
            let run = try TracIn.checkpoints(of: classifier, directory: setup.checkpoints)
            if let dir = setup.checkpoints, run.checkpoints.isEmpty {
                throw DataError("\(dir.path): no checkpoints (epoch-K.safetensors from `tangent train --keep-checkpoints`)")
            }
            if run.checkpoints.isEmpty {
                log("tracin: no checkpoints in \(classifier.directory.map { $0.appendingPathComponent(ModelDirectory.checkpointsDirectory).path } ?? "the model"); "
                    + "using the final model alone (grad-dot with eta = 1)")
                note = "no checkpoints: the final model alone (grad-dot with eta = 1)"
            } else {
                log("tracin: " + run.summary)
                note = run.summary
                models = try run.checkpoints.map { (try TracIn.load($0, like: classifier, threads: setup.threads), Float($0.learningRate.squareRoot())) }
            }
        }
        if kernel.ensembled {
            let all = [classifier] + setup.ensemble
            for other in setup.ensemble where other.labels != classifier.labels || other.model.config != classifier.model.config {
                throw AttributionError("\(other.directory?.path ?? "an ensemble model"): its architecture or labels differ from the model under study's; an ensemble must be retrainings of one recipe")
            }
            models = all.map { ($0, Float(1 / Double(all.count).squareRoot())) }
            if all.count > 1 { log("\(kernel.name): ensemble of \(all.count) models") }
        }
        let textsKey = SurrogateCache.key(train)
        var files: [FeatureFile] = []
        for (model, scale) in models {
            let featurizer = try Featurizer(classifier: model, options: options)
            let stem = SurrogateCache.featureStem(kernel.features, projDim: setup.projDim, seed: setup.seed, projector: setup.projector,
                                                  model: model, texts: textsKey)
            let url = cache.url(stem)
            if let f = FeatureFile.cached(url, expected: featurizer.metadata(texts: train, source: "training data"), log: log) {
                files.append(f)
                log("using cached training features \(url.path)")
            } else {
                log("featurizing \(n) training texts (\(kernel.features.rawValue)\(kernel.features.projected ? ", K = \(setup.projDim), \(setup.projector)" : "")) into \(url.path)")
                try cache.prepare()
                files.append(try featurizer.run(texts: train, source: "training data", to: url, replace: .anyFile, progress: progress))
            }
            sources.append((featurizer, stem, scale))
        }
        // The model under study is the last source for TracIn (the final checkpoint) and
        // the first for an ensemble.
        let primary = kernel.ensembled ? 0 : sources.count - 1
        featurizer = sources[primary].featurizer
        features = files[primary]
        stem = SurrogateCache.combinedStem(sources.map(\.stem), ensemble: kernel.ensembled)
        var blocks = try files.map { try $0.features(0..<n) }
        var weights: [[Double]] = []
        if let kind = kernel.influence {
            for (s, file) in files.enumerated() {
                let logits = try file.logits()
                let t = try InfluenceTransform(kind: kind, base: blocks[s], logits: logits, classes: classifier.labels.count, lambda: nil, labels: labels)
                log("\(kind.rawValue): \(t.dimension) x \(t.dimension) curvature matrix factored (damping \(String(format: "%.3g", t.lambda)))")
                blocks[s] = t.features(base: blocks[s], logits: logits, labels: labels)
                transforms.append(t)
                if kind == .trak { weights.append(InfluenceTransform.trainingWeights(logits: logits, labels: labels, classes: classifier.labels.count)) }
            }
        }
        if !weights.isEmpty {
            weightedTrainFeatures = FeatureTrainKernel.concatenate(blocks, scales: sources.map(\.scale), rows: n, rowScales: weights)
        }
        trainFeatures = FeatureTrainKernel.concatenate(blocks, scales: sources.map(\.scale), rows: n)
        trainNorms = Gram.squaredNorms(trainFeatures, rows: n)
    }

    public func gram() throws -> TrainingKernel {
        let n = trainCount
        return .gram(features: kernel.normalized ? Gram.unitRows(trainFeatures, rows: n, squaredNorms: trainNorms) : trainFeatures,
                     n: n, width: trainFeatures.count / n)
    }

    public func trainLogits() throws -> [Float] { try features.logits() }

    /// Kernel-space features of query texts from their stored features [m, W] and logits:
    /// the features themselves, or (influence baselines) the transform of `source` applied
    /// with `labels` (nil: the network's predicted labels).
    public func queryFeatures(_ f: [Float], logits: [Float], labels: [Int?]? = nil, source: Int = 0) -> [Float] {
        guard !transforms.isEmpty else { return f }
        return transforms[source].features(base: f, logits: logits,
                                           labels: labels ?? [Int?](repeating: nil, count: logits.count / classifier.labels.count))
    }

    /// Kernel rows K(x, X_train) [m, n] for texts with kernel-space features [m, W] (see
    /// `queryFeatures`); with `weighted`, TRAK's scores instead (each model's block of the
    /// training features scaled by its 1 - p_{y_i}(x_i)).
    public func kernelRows(features f: [Float], weighted: Bool = false) -> [Float] {
        precondition(!weighted || weightedTrainFeatures != nil, "only TRAK has weighted rows")
        let n = trainCount, W = trainFeatures.count / n
        let m = f.count / W
        var rows = Gram.product(f, weighted ? weightedTrainFeatures! : trainFeatures, m: m, n: n, width: W)
        if kernel.normalized { Gram.normalize(&rows, rowSelf: Gram.squaredNorms(f, rows: m), columnSelf: trainNorms) }
        return rows
    }

    public func query(_ texts: [LabeledText], source: String, cached: Bool, lossLabels: [Int]?,
                      log: (String) -> Void, progress: (Int, Int) -> Void) throws -> QueryKernel {
        precondition(lossLabels == nil || lossLabels!.count == texts.count)
        let m = texts.count, C = classifier.labels.count
        // Without `lossLabels`: the predicted label of the model under study, also for
        // checkpoints and an ensemble's other models.
        let primaryLogits = sources.count > 1 ? try classifier.logits(texts.map(\.text)) : nil
        let labels: [Int?] = lossLabels ?? primaryLogits.map { z in (0..<m).map { t in Softmax.argmax(z[(t * C)..<((t + 1) * C)]) } }
            ?? [Int?](repeating: nil, count: m)
        let queryTexts = texts.enumerated().map { t, x in LabeledText(text: x.text, label: labels[t].map { classifier.labels.names[$0] }, line: x.line) }
        var parts: [[Float]] = []
        var logits: [Float] = []
        for (s, src) in sources.enumerated() {
            let base: [Float], sourceLogits: [Float]
            if cached {
                var options = src.featurizer.options
                options.predictedLossLabels = labels.allSatisfy { $0 == nil }
                // Only loss-gradient features depend on the label.
                let url = cache.query(src.stem, texts: texts, lossLabels: kernel.features == .grad ? lossLabels : nil)
                try cache.prepare()
                let queryFeaturizer = try Featurizer(classifier: src.featurizer.classifier, options: options)
                let file = try FeatureFile.cached(url, expected: queryFeaturizer.metadata(texts: queryTexts, source: source), log: log) ?? queryFeaturizer.run(
                    texts: queryTexts, source: source, to: url, replace: .anyFile, progress: progress)
                base = try file.features(0..<m)
                sourceLogits = try file.logits()
            } else {
                let block = try src.featurizer.block(queryTexts)
                base = block.features
                sourceLogits = block.logits
            }
            parts.append(queryFeatures(base, logits: sourceLogits, labels: labels, source: s))
            logits = sourceLogits
        }
        if let primaryLogits { logits = primaryLogits }
        let f = FeatureTrainKernel.concatenate(parts, scales: sources.map(\.scale), rows: m)
        var q = QueryKernel(rows: kernelRows(features: f), logits: logits, parts: nil)
        if weightedTrainFeatures != nil { q.scores = kernelRows(features: f, weighted: true) }
        return q
    }

    /// Row-wise concatenation of [rows, W_k] matrices, each scaled, and row i of part k
    /// also by `rowScales[k][i]` when given.
    static func concatenate(_ parts: [[Float]], scales: [Float], rows: Int, rowScales: [[Double]]? = nil) -> [Float] {
        if parts.count == 1 && scales[0] == 1 && rowScales == nil { return parts[0] }
        let widths = parts.map { $0.count / rows }, W = widths.reduce(0, +)
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

/// One kernel's turn in `AttributionSetup.forEachKernel`: its engine, its wall time, and
/// whether any of its features were computed rather than read from the cache.
public final class KernelRun {
    public let kernel: SurrogateKernel
    public let started = Date()
    public fileprivate(set) var engine: AttributionEngine!
    public private(set) var featurized = false
    private let report: (String, Int, Int) -> Void

    init(kernel: SurrogateKernel, report: @escaping (String, Int, Int) -> Void) {
        self.kernel = kernel
        self.report = report
    }

    /// A progress callback for one stage of the kernel ("train", "test", ...), labelled
    /// "KERNEL STAGE"; any progress means features were computed.
    public func progress(_ stage: String) -> (Int, Int) -> Void {
        { [self] done, total in
            featurized = true
            report("\(kernel.name) \(stage)", done, total)
        }
    }

    public var seconds: Double { Date().timeIntervalSince(started) }
}

extension AttributionSetup {
    /// The per-kernel loop of `compare`, `poison` and `lds`: for each kernel, logs its name,
    /// fits its surrogate (TracIn's checkpoints and TRAK's ensemble only where the kernel
    /// uses them) and hands the run to `body`.
    public func forEachKernel<R>(_ kernels: [SurrogateKernel], log: (String) -> Void,
                                 progress: @escaping (String, Int, Int) -> Void,
                                 _ body: (KernelRun) throws -> R) throws -> [R] {
        try kernels.map { k in
            log("== \(k.name)")
            var setup = self
            setup.checkpoints = k.checkpointSummed ? checkpoints : nil
            setup.ensemble = k.ensembled ? ensemble : []
            let run = KernelRun(kernel: k, report: progress)
            run.engine = try AttributionEngine(setup: setup, kernel: k, log: log, progress: run.progress("train"))
            return try body(run)
        }
    }
}
