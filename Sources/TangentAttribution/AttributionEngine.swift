import Foundation
import TangentData
import TangentKernels
import TangentModel
import TangentSafetensors
import TangentTensor

/// A kernel the surrogate can be fitted on, as named in the kernels spec.
public struct SurrogateKernel: Sendable, Equatable {
    public let name: String
    /// Features stored for projected and embedding kernels (unused by exact kernels).
    public let features: FeatureKind
    public let normalized: Bool
    /// Influence baselines: the stored features are mapped through an influence transform.
    public var influence: InfluenceTransform.Kind?
    /// Exact NTKs: the kernel computed from unprojected gradients (`ExactKernel`).
    public var exact: NTKKind?
    /// TracIn: features of every saved training checkpoint, scaled by sqrt(eta_k) and
    /// concatenated, so that kernel products sum eta_k <.,.> over checkpoints.
    public var checkpointSummed: Bool
    /// TRAK: features of every model of an ensemble, scaled by 1/sqrt(N) and concatenated,
    /// so that kernel products average over the models.
    public var ensembled: Bool
    /// NFT-K weights: the exact kernel's per-layer parts, weighted by w_l >= 0 fitted on
    /// the training texts (`LayerWeighting`).
    public var layerWeighted: Bool

    public init(name: String, features: FeatureKind, normalized: Bool, influence: InfluenceTransform.Kind? = nil,
                exact: NTKKind? = nil, checkpointSummed: Bool = false, ensembled: Bool = false, layerWeighted: Bool = false) {
        self.name = name
        self.features = features
        self.normalized = normalized
        self.influence = influence
        self.exact = exact
        self.checkpointSummed = checkpointSummed
        self.ensembled = ensembled
        self.layerWeighted = layerWeighted
    }

    /// Whether the method's own attribution is its kernel value (loss-gradient kernels,
    /// influence functions, TRAK) rather than the surrogate's W[c, i] K(x, x_i).
    public var attributesByKernelValue: Bool { influence != nil || features == .grad }

    /// `trntk`, `pntk-norm` (exact), `proj-trntk`, `proj-pntk`, `embedding`, `ck`, `grad-cos`,
    /// `tracin`, `if-head`, `if-proj`, `trak`, `trntk-layers`.
    public static let all: [SurrogateKernel] = [
        .init(name: "trntk", features: .trntk, normalized: true, exact: .trntk),
        .init(name: "pntk-norm", features: .pntk, normalized: true, exact: .pntkNorm),
        .init(name: "proj-trntk", features: .trntk, normalized: true),
        .init(name: "proj-pntk", features: .pntk, normalized: true),
        .init(name: "embedding", features: .embedding, normalized: true),
        .init(name: "ck", features: .embedding, normalized: false),
        .init(name: "grad-cos", features: .grad, normalized: true),
        .init(name: "tracin", features: .grad, normalized: false, checkpointSummed: true),
        .init(name: "if-head", features: .embedding, normalized: false, influence: .head),
        .init(name: "if-proj", features: .trntk, normalized: false, influence: .projected),
        .init(name: "trak", features: .trntk, normalized: false, influence: .trak, ensembled: true),
        .init(name: "trntk-layers", features: .trntk, normalized: true, exact: .trntk, layerWeighted: true),
    ]

    public static func named(_ name: String) -> SurrogateKernel? {
        all.first { $0.name == name }
    }

    /// The exact NTK whose per-layer parts explain this kernel, if any.
    public var layerKind: NTKKind? {
        if let exact { return exact }
        if influence != nil { return nil }
        switch features {
        case .trntk: return .trntk
        case .pntk: return .pntkNorm
        default: return nil
        }
    }
}

/// One training text's attribution to a prediction.
public struct AttributedText: Sendable, Codable {
    /// Index in the training file's order, and its line.
    public let index: Int
    public let line: Int
    public let text: String
    public let label: String
    /// W[c, i] * K(x, x_i) for the predicted class c.
    public let score: Double
    /// K(x, x_i).
    public let kernel: Double
    /// Share of K(x, x_i) held by each layer group (exact per-layer NTK, normalized like
    /// the kernel), when the kernel is an NTK.
    public let layerShares: [String: Double]?
}

/// Why the model predicted what it did, in terms of training texts.
public struct Explanation: Sendable, Codable {
    public let text: String
    public let label: String
    public let probability: Double
    /// The surrogate's probability of the same class.
    public let surrogateProbability: Double
    public let proponents: [AttributedText]
    public let opponents: [AttributedText]
}

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

/// Fits the kernel surrogate on a training set and explains predictions by training texts.
///
/// Pipeline: training features (cached in a feature file, resumable) or, for exact
/// kernels, the exact train x train kernel (cached) -> regularization chosen by k-fold
/// cross-validation on the training texts (`LambdaSelector`) -> the kGLM fitted on all
/// training texts at that lambda (cached) -> for a text: its kernel row, W[c, i] K(x, x_i).
public final class AttributionEngine {
    public let classifier: Classifier
    public let kernel: SurrogateKernel
    public let train: [LabeledText]
    public let trainLabels: [Int]
    /// Stored training features and their featurizer (nil for exact kernels).
    public let features: FeatureFile?
    public let featurizer: Featurizer?
    public let glm: KernelGLM
    /// The selector's out-of-fold figures for each lambda of the grid (ascending).
    public let grid: [LambdaSelector.Point]
    /// The surrogate fitted on all training texts at each lambda of `grid`, when it was
    /// fitted in this run rather than loaded from the cache.
    public private(set) var gridFits: [KernelGLM] = []
    /// How lambda was chosen.
    public let selector: LambdaSelector
    /// TracIn: which checkpoints were summed and how they relate to the model.
    public private(set) var checkpointSummary: String?
    /// Exact kernels: per-layer parts of the training texts' self-kernels K(x_i, x_i).
    public private(set) var trainSelfParts: [(group: String, values: [Float])]?
    /// NFT-K layer weights, one per group of the exact kernel (`trntk-layers`), and their
    /// fit when it ran in this process.
    public private(set) var layerWeights: [Double]?
    public private(set) var layerWeightFit: LayerWeighting.Result?
    private let trainNorms: [Float]
    private let trainFeatures: [Float]
    private let exactComputer: GradientComputer<Float>?
    /// Feature sources: the model itself, or (TracIn) each checkpoint with sqrt(eta_k).
    private var sources: [(featurizer: Featurizer, stem: String, scale: Float)] = []
    private let trainTokens: [[Int32]]
    private let cache: URL
    private let projDim: Int
    private let seed: UInt64
    private let projector: ProjectorChoice
    private let threads: Int
    /// Names cached files: kernel, K, seed, model and training texts.
    public let cacheStem: String
    /// The influence transform fitted on the training texts (influence baselines only;
    /// TRAK: of the first model).
    public var influence: InfluenceTransform? { transforms.first }
    /// One influence transform per feature source (the models of a TRAK ensemble).
    public private(set) var transforms: [InfluenceTransform] = []
    /// TRAK: training features with each model's block scaled by 1 - p_{y_i}(x_i) [n, W].
    private var weightedTrainFeatures: [Float]?

    public init(classifier: Classifier, train: [LabeledText], kernel: SurrogateKernel, projDim: Int, seed: UInt64,
                projector: ProjectorChoice = .default,
                cache: URL, threads: Int = Threads.defaultCount, selector: LambdaSelector = LambdaSelector(), useSurrogateCache: Bool = true,
                checkpoints checkpointDirectory: URL? = nil, ensemble: [Classifier] = [], log: (String) -> Void = { _ in },
                progress: (Int, Int) -> Void = { _, _ in }) throws {
        self.classifier = classifier
        self.selector = selector
        self.kernel = kernel
        self.train = train
        self.cache = cache
        self.projDim = projDim
        self.seed = seed
        self.projector = projector
        self.threads = threads
        let labelIndices = try classifier.labels.indices(of: train, source: "training data")
        guard Set(labelIndices).count >= 2 else {
            throw DataError("training data: all \(train.count) texts have one label; a surrogate needs training texts of at least two classes")
        }
        trainLabels = labelIndices
        guard train.count >= 2 * selector.folds else {
            throw DataError("training data: \(train.count) texts are too few for \(selector.folds)-fold selection of lambda (need at least \(2 * selector.folds))")
        }
        let n = train.count
        let modelID = Featurizer.modelFingerprint(classifier.model)
        let textsID = fingerprint(labelled: train)
        // The train x train kernel, produced only when the surrogate is not cached.
        let trainKernel: () throws -> TrainingKernel
        // The network's logits on the training texts, for the selector.
        let trainLogits: () throws -> [Float]
        if let kind = kernel.exact {
            features = nil
            featurizer = nil
            trainFeatures = []
            trainNorms = []
            let computer = try GradientComputer<Float>(model: classifier.model, prefixes: ["all"])
            exactComputer = computer
            trainTokens = try train.map { try classifier.encode($0.text) }
            cacheStem = "exact-\(kind.rawValue)-\(modelID)-\(textsID)"
            let url = cache.appendingPathComponent("\(cacheStem).safetensors")
            // The full per-layer parts [n, n] are kept (in a file of their own) only for
            // layer weights: they are groups times the kernel's size.
            let partsURL = cache.appendingPathComponent("\(cacheStem)-parts.safetensors")
            var kernelMatrix: [Float]?
            var trainParts: [[Float]]?
            if kernel.layerWeighted, let p = try? SafetensorsFile(url: partsURL), p.metadata["format"] == "tangent-exact-parts-1" {
                trainParts = try? computer.groups.map { try p.float32("part.\($0.name)", shape: [n, n]) }
            }
            if let f = try? SafetensorsFile(url: url), f.metadata["format"] == "tangent-exact-kernel-1",
               let k = try? f.float32("kernel", shape: [n, n]), !kernel.layerWeighted || trainParts != nil {
                kernelMatrix = k
                trainSelfParts = try computer.groups.map { ($0.name, try f.float32("self.\($0.name)", shape: [n])) }
                log("using cached exact \(kind.rawValue) kernel \(url.path)")
            } else {
                if FileManager.default.fileExists(atPath: url.path) {
                    log("cached \(url.path) is unusable (damaged, of another shape, or without the per-layer parts); rebuilding it")
                }
                log("computing the exact \(kind.rawValue) kernel of \(n) training texts (\(computer.subset.count) parameters) into \(url.path)")
                let r = try ExactKernel.compute(computer, a: trainTokens, b: nil, kind: kind, progress: progress)
                kernelMatrix = r.total
                trainSelfParts = r.parts.map { p in (p.group, (0..<n).map { p.values[$0 * n + $0] }) }
                try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
                if kernel.layerWeighted {
                    trainParts = r.parts.map(\.values)
                    var w = SafetensorsWriter()
                    w.metadata = ["format": "tangent-exact-parts-1", "kernel": kind.rawValue, "texts": String(n)]
                    for p in r.parts { w.add("part.\(p.group)", shape: [n, n], float32: p.values) }
                    try w.write(to: partsURL)
                }
                var w = SafetensorsWriter()
                w.metadata = ["format": "tangent-exact-kernel-1", "kernel": kind.rawValue, "texts": String(n)]
                w.add("kernel", shape: [n, n], float32: r.total)
                for p in trainSelfParts! { w.add("self.\(p.group)", shape: [n], float32: p.values) }
                try w.write(to: url)
            }
            trainLogits = { try classifier.logits(train.map(\.text)) }
            if let parts = trainParts {
                let weightsURL = cache.appendingPathComponent("\(cacheStem)-\(kernel.name)-weights.safetensors")
                let tag = AttributionEngine.selectionTag(selector)
                if useSurrogateCache, let f = try? SafetensorsFile(url: weightsURL), f.metadata["selection"] == tag,
                   let w = try? f.float64("weights", shape: [parts.count]) {
                    layerWeights = w
                    log("using cached layer weights \(weightsURL.path)")
                } else {
                    // lambda for the weights' fit: the selector's choice on the unweighted kernel.
                    let logits = try trainLogits()
                    let plain = selector.select(kernel: .matrix(kernelMatrix!, n: n), labels: labelIndices, networkLogits: logits,
                                                classes: classifier.labels.count, threads: threads)
                    let r = LayerWeighting.fit(parts: parts, labels: labelIndices, networkLogits: logits, classes: classifier.labels.count,
                                               lambda: plain.lambda, selector: selector, threads: threads, log: log)
                    layerWeights = r.weights
                    layerWeightFit = r
                    var w = SafetensorsWriter()
                    w.metadata = ["format": "tangent-layer-weights-1", "selection": tag, "groups": computer.groups.map(\.name).joined(separator: ","),
                                  "cross_entropy": String(r.crossEntropy), "unweighted_cross_entropy": String(r.unweightedCrossEntropy)]
                    w.add("weights", shape: [parts.count], float64: r.weights)
                    try w.write(to: weightsURL)
                }
                log("layer weights: " + zip(computer.groups, layerWeights!).map { String(format: "%@ %.3g", $0.name, $1) }.joined(separator: ", "))
                let weights = layerWeights!
                trainSelfParts = zip(trainSelfParts!, weights).map { p, wl in (group: p.group, values: p.values.map { Float(wl) * $0 }) }
                trainKernel = { .matrix(LayerWeighting.combine(parts, weights: weights), n: n) }
            } else {
                trainKernel = { .matrix(kernelMatrix!, n: n) }
            }
        } else {
            exactComputer = nil
            trainTokens = []
            var options = FeaturizeOptions(kind: kernel.features)
            options.projDim = projDim
            options.seed = seed
            options.projector = projector
            options.threads = threads
            let run = kernel.checkpointSummed ? try TracIn.checkpoints(of: classifier, directory: checkpointDirectory) : nil
            let checkpoints = run?.checkpoints ?? []
            if kernel.checkpointSummed, let dir = checkpointDirectory, checkpoints.isEmpty {
                throw DataError("\(dir.path): no checkpoints (epoch-K.safetensors from `tangent train --keep-checkpoints`)")
            }
            if let run, !checkpoints.isEmpty {
                log("tracin: " + run.summary)
                checkpointSummary = run.summary
            } else if kernel.checkpointSummed {
                log("tracin: no checkpoints in \(classifier.directory.map { $0.appendingPathComponent(ModelDirectory.checkpointsDirectory).path } ?? "the model"); "
                    + "using the final model alone (grad-dot with eta = 1)")
                checkpointSummary = "no checkpoints: the final model alone (grad-dot with eta = 1)"
            }
            var models = try checkpoints.isEmpty ? [(classifier, Float(1))]
                : checkpoints.map { (try TracIn.load($0, like: classifier, threads: threads), Float($0.learningRate.squareRoot())) }
            if kernel.ensembled {
                let all = [classifier] + ensemble
                for other in ensemble where other.labels != classifier.labels || other.model.config != classifier.model.config {
                    throw AttributionError("\(other.directory?.path ?? "an ensemble model"): its architecture or labels differ from the model under study's; an ensemble must be retrainings of one recipe")
                }
                models = all.map { ($0, Float(1 / Double(all.count).squareRoot())) }
                if all.count > 1 { log("\(kernel.name): ensemble of \(all.count) models") }
            }
            var files: [FeatureFile] = []
            for (model, scale) in models {
                let featurizer = try Featurizer(classifier: model, options: options)
                let stem = "\(kernel.features.rawValue)-K\(kernel.features.projected ? projDim : 0)-s\(kernel.features.projected ? seed : 0)"
                    + (kernel.features.projected ? "-\(projector.tag)" : "") + "-\(Featurizer.modelFingerprint(model.model))-\(textsID)"
                let featureURL = cache.appendingPathComponent("\(stem).safetensors")
                if let f = FeatureFile.cached(featureURL, log: log) {
                    files.append(f)
                    log("using cached training features \(featureURL.path)")
                } else {
                    log("featurizing \(train.count) training texts (\(kernel.features.rawValue)\(kernel.features.projected ? ", K = \(projDim), \(projector)" : "")) into \(featureURL.path)")
                    files.append(try featurizer.run(texts: train, source: "training data", to: featureURL, replace: .anyFile, progress: progress))
                }
                sources.append((featurizer, stem, scale))
            }
            // The model under study is the last source for TracIn (the final checkpoint) and
            // the first for an ensemble.
            let primary = kernel.ensembled ? 0 : sources.count - 1
            featurizer = sources[primary].featurizer
            cacheStem = kernel.ensembled && sources.count > 1
                ? "ens\(sources.count)-" + fingerprint(Data(sources.map(\.stem).joined(separator: "\n").utf8))
                : (checkpoints.isEmpty ? "" : "tracin\(checkpoints.count)-") + sources.last!.stem
            let features = files[primary]
            self.features = features
            var blocks = try files.map { try $0.features(0..<n) }
            if let kind = kernel.influence {
                var weights: [[Double]] = []
                for (s, file) in files.enumerated() {
                    let logits = try file.logits()
                    let t = try InfluenceTransform(kind: kind, base: blocks[s], logits: logits, classes: classifier.labels.count, lambda: nil,
                                                   labels: labelIndices)
                    log("\(kind.rawValue): \(t.dimension) x \(t.dimension) curvature matrix factored (damping \(String(format: "%.3g", t.lambda)))")
                    blocks[s] = t.features(base: blocks[s], logits: logits, labels: labelIndices)
                    transforms.append(t)
                    if kind == .trak { weights.append(InfluenceTransform.trainingWeights(logits: logits, labels: labelIndices, classes: classifier.labels.count)) }
                }
                if !weights.isEmpty {
                    weightedTrainFeatures = AttributionEngine.concatenate(blocks, scales: sources.map(\.scale), rows: n, rowScales: weights)
                }
            }
            let f = AttributionEngine.concatenate(blocks, scales: sources.map(\.scale), rows: n)
            let width = f.count / n
            let norms = Gram.squaredNorms(f, rows: n)
            trainFeatures = f
            trainNorms = norms
            let normalized = kernel.normalized
            trainLogits = { try features.logits() }
            trainKernel = {
                .gram(features: normalized ? Gram.unitRows(f, rows: n, squaredNorms: norms) : f, n: n, width: width)
            }
        }
        let glmURL = cache.appendingPathComponent("\(cacheStem)-\(kernel.name)-kglm.safetensors")
        let cachedGLM: (glm: KernelGLM, grid: [LambdaSelector.Point])?
        do {
            cachedGLM = useSurrogateCache && FileManager.default.fileExists(atPath: glmURL.path)
                ? try AttributionEngine.loadGLM(glmURL, n: n, classes: classifier.labels.count, selector: selector) : nil
        } catch {
            log("cached \(glmURL.path) is unusable (\(error)); fitting the surrogate again")
            cachedGLM = nil
        }
        if let cached = cachedGLM {
            glm = cached.glm
            grid = cached.grid
            log("using cached surrogate \(glmURL.path) (lambda \(glm.lambda))")
        } else {
            let k = try trainKernel()
            // The selector sees the training texts only: their kernel, labels and the
            // network's logits on them.
            let selection = selector.select(kernel: k, labels: labelIndices, networkLogits: try trainLogits(), classes: classifier.labels.count,
                                            threads: threads, log: log)
            glm = selection.glm
            grid = selection.points
            gridFits = selection.fits
            try AttributionEngine.saveGLM(glm, grid: grid, selector: selector, to: glmURL)
            log("surrogate: lambda \(glm.lambda) by 5-fold \(selector.criterion.rawValue) (\(glm.iterations) iterations, \(glm.evaluations) evaluations on all \(n) training texts)")
        }
    }

    /// Kernel-space features of query texts from their stored features [m, W] and
    /// logits: the features themselves, or (influence baselines) the transform applied
    /// with `labels` (nil: the network's predicted labels).
    public func queryFeatures(_ f: [Float], logits: [Float], labels: [Int?]? = nil, source: Int = 0) -> [Float] {
        guard !transforms.isEmpty else { return f }
        return transforms[source].features(base: f, logits: logits,
                                           labels: labels ?? [Int?](repeating: nil, count: logits.count / classifier.labels.count))
    }

    /// Kernel rows K(x, X_train) [m, n] for texts with kernel-space features [m, W]
    /// (see `queryFeatures`); with `weighted`, TRAK's scores instead (each model's block
    /// of the training features scaled by its 1 - p_{y_i}(x_i)).
    public func kernelRows(features f: [Float], weighted: Bool = false) -> [Float] {
        precondition(kernel.exact == nil, "exact kernels have no features; use query(_:)")
        precondition(!weighted || weightedTrainFeatures != nil, "only TRAK has weighted rows")
        let n = train.count, W = trainFeatures.count / n
        let m = f.count / W
        var rows = Gram.product(f, weighted ? weightedTrainFeatures! : trainFeatures, m: m, n: n, width: W)
        if kernel.normalized { Gram.normalize(&rows, rowSelf: Gram.squaredNorms(f, rows: m), columnSelf: trainNorms) }
        return rows
    }

    /// Kernel rows of `texts` against the training texts and the network's logits. Loss
    /// gradients (grad-cos, influence) and TRAK's margin gradients use the class indices
    /// `lossLabels` when given, else the network's predicted label (kernels spec).
    /// With `cached`, the query's features (or exact rows) are kept in the cache
    /// directory under a name fingerprinting the texts, and reused.
    public func query(_ texts: [LabeledText], source: String, cached: Bool = false, lossLabels: [Int]? = nil,
                      log: (String) -> Void = { _ in }, progress: (Int, Int) -> Void = { _, _ in }) throws -> QueryKernel {
        precondition(lossLabels == nil || lossLabels!.count == texts.count)
        let m = texts.count, n = train.count, C = classifier.labels.count
        // Cached query files are named by the feature stem and a fingerprint of the texts.
        let textsKey = fingerprint(Data(texts.map(\.text).joined(separator: "\u{1E}").utf8))
        func cacheURL(_ stem: String) -> URL { cache.appendingPathComponent("\(stem)-test-\(textsKey).safetensors") }
        if let kind = kernel.exact, let computer = exactComputer {
            let url = cacheURL(cacheStem)
            if cached, let f = try? SafetensorsFile(url: url), f.metadata["format"] == "tangent-exact-rows-1" {
                return weighted(QueryKernel(rows: try f.float32("kernel", shape: [m, n]), logits: try f.float32("logits", shape: [m, C]),
                                            parts: try computer.groups.map { ($0.name, try f.float32("part.\($0.name)", shape: [m, n])) }))
            }
            let tokens = try texts.map { try classifier.encode($0.text) }
            let r = try ExactKernel.compute(computer, a: tokens, b: trainTokens, kind: kind, progress: progress)
            let logits = try classifier.logits(texts.map(\.text))
            if cached {
                var w = SafetensorsWriter()
                w.metadata = ["format": "tangent-exact-rows-1", "kernel": kind.rawValue]
                w.add("kernel", shape: [m, n], float32: r.total)
                w.add("logits", shape: [m, C], float32: logits)
                for p in r.parts { w.add("part.\(p.group)", shape: [m, n], float32: p.values) }
                try w.write(to: url)
            }
            return weighted(QueryKernel(rows: r.total, logits: logits, parts: r.parts))
        }
        // Without `lossLabels`: the predicted label of the model under study, also for
        // checkpoints and an ensemble's other models.
        let primaryLogits = sources.count > 1 ? try classifier.logits(texts.map(\.text)) : nil
        let labels: [Int?] = lossLabels ?? primaryLogits.map { z in (0..<m).map { t in Softmax.argmax(z[(t * C)..<((t + 1) * C)]) } }
            ?? [Int?](repeating: nil, count: m)
        let queryTexts = texts.enumerated().map { t, x in LabeledText(text: x.text, label: labels[t].map { classifier.labels.names[$0] }, line: x.line) }
        // Only loss-gradient features depend on the label.
        let labelsKey = kernel.features == .grad && lossLabels != nil
            ? "-labels-" + fingerprint(Data(lossLabels!.map(String.init).joined(separator: ",").utf8)) : ""
        var parts: [[Float]] = []
        var logits: [Float] = []
        for (s, src) in sources.enumerated() {
            let base: [Float], sourceLogits: [Float]
            if cached {
                var options = src.featurizer.options
                options.predictedLossLabels = labels.allSatisfy { $0 == nil }
                let url = cacheURL(src.stem + labelsKey)
                let file = try FeatureFile.cached(url, log: log) ?? Featurizer(classifier: src.featurizer.classifier, options: options).run(
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
        let f = AttributionEngine.concatenate(parts, scales: sources.map(\.scale), rows: m)
        var q = QueryKernel(rows: kernelRows(features: f), logits: logits, parts: nil)
        if weightedTrainFeatures != nil { q.scores = kernelRows(features: f, weighted: true) }
        return q
    }

    /// With layer weights: each part scaled by its weight and the rows their sum.
    private func weighted(_ q: QueryKernel) -> QueryKernel {
        guard let w = layerWeights, let parts = q.parts else { return q }
        let scaled = zip(parts, w).map { p, wl in (group: p.group, values: p.values.map { Float(wl) * $0 }) }
        return QueryKernel(rows: LayerWeighting.combine(parts.map(\.values), weights: w), logits: q.logits, parts: scaled)
    }

    /// Each method's own attribution scores [m, n] of the training texts to class
    /// `classes[t]` of query text t (kernels spec, LDS): W[c, i] K(x, x_i) for kGLM
    /// surrogates, the kernel value for loss-gradient kernels and influence functions
    /// (query `q` with `lossLabels: classes`, so that the test loss is of that class), and
    /// TRAK's score.
    public func methodScores(_ q: QueryKernel, classes: [Int]) -> [Double] {
        let n = train.count
        if let scores = q.scores { return scores.map(Double.init) }
        if kernel.attributesByKernelValue { return q.rows.map(Double.init) }
        var out: [Double] = []
        out.reserveCapacity(classes.count * n)
        for (t, c) in classes.enumerated() {
            out += glm.attributions(kernelRow: Array(q.rows[(t * n)..<((t + 1) * n)]), classIndex: c)
        }
        return out
    }

    /// Explains `texts`: the network's prediction, the surrogate's probability of it,
    /// and the `top` most positive and most negative training attributions.
    public func explain(_ texts: [String], top: Int, layerShares: Bool = true) throws -> [Explanation] {
        let q = try query(texts.enumerated().map { LabeledText(text: $0.element, label: nil, line: $0.offset + 1) }, source: "query texts")
        let k = q.rows
        let C = classifier.labels.count, n = train.count
        let z = glm.logits(kernelRows: k)
        var out: [Explanation] = []
        for (t, text) in texts.enumerated() {
            let netLogits = (0..<C).map { Double(q.logits[t * C + $0]) }
            let c = Softmax.argmax(netLogits)
            let row = Array(k[(t * n)..<((t + 1) * n)])
            let scores = glm.attributions(kernelRow: row, classIndex: c)
            let order = scores.indices.sorted { scores[$0] > scores[$1] }
            let pro = Array(order.prefix(top)).filter { scores[$0] > 0 }
            let con = Array(order.reversed().prefix(top)).filter { scores[$0] < 0 }
            var shares: [Int: [String: Double]] = [:]
            if layerShares, let parts = q.parts {
                for i in pro + con {
                    let total = Double(row[i])
                    shares[i] = Dictionary(uniqueKeysWithValues: parts.map { ($0.group, total == 0 ? 0 : Double($0.values[t * n + i]) / total) })
                }
            } else if layerShares, let kind = kernel.layerKind {
                shares = try self.layerShares(text: text, items: pro + con, kind: kind)
            }
            func item(_ i: Int) -> AttributedText {
                AttributedText(index: i, line: train[i].line, text: train[i].text, label: train[i].label ?? "",
                               score: scores[i], kernel: Double(row[i]), layerShares: shares[i])
            }
            let zs = Array(z[(t * C)..<((t + 1) * C)])
            out.append(Explanation(text: text, label: classifier.labels.names[c],
                                   probability: Faithfulness.probability(logits: netLogits, classIndex: c),
                                   surrogateProbability: Faithfulness.probability(logits: zs, classIndex: c),
                                   proponents: pro.map(item), opponents: con.map(item)))
        }
        return out
    }

    /// Per-layer shares of the exact NTK between a text and training texts.
    func layerShares(text: String, items: [Int], kind: NTKKind) throws -> [Int: [String: Double]] {
        if items.isEmpty { return [:] }
        let computer = try GradientComputer(model: classifier.model, prefixes: ["all"])
        let r = try ExactKernel.compute(computer, a: [try classifier.encode(text)], b: try items.map { try classifier.encode(train[$0].text) }, kind: kind)
        var out: [Int: [String: Double]] = [:]
        for (j, i) in items.enumerated() {
            let total = Double(r.total[j])
            var s: [String: Double] = [:]
            for p in r.parts { s[p.group] = total == 0 ? 0 : Double(p.values[j]) / total }
            out[i] = s
        }
        return out
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

    static func saveGLM(_ g: KernelGLM, grid: [LambdaSelector.Point], selector: LambdaSelector, to url: URL) throws {
        var w = SafetensorsWriter()
        w.metadata = ["format": "tangent-kglm-3", "lambda": String(g.lambda), "kernel_scale": String(g.kernelScale),
                      "iterations": String(g.iterations),
                      "converged": String(g.converged), "gradient_norm": String(g.gradientNorm), "selection": selectionTag(selector)]
        w.add("weights", shape: [g.classes, g.trainCount], float64: g.weights)
        w.add("bias", shape: [g.classes], float64: g.bias)
        w.add("grid_lambda", shape: [grid.count], float64: grid.map(\.lambda))
        w.add("grid_network_tau", shape: [grid.count], float64: grid.map(\.networkTau))
        w.add("grid_network_ce", shape: [grid.count], float64: grid.map(\.networkCrossEntropy))
        w.add("grid_label_ce", shape: [grid.count], float64: grid.map(\.labelCrossEntropy))
        try w.write(to: url)
    }

    /// What a cached surrogate's lambda was chosen by: another selector means another fit.
    static func selectionTag(_ s: LambdaSelector) -> String {
        "\(s.criterion.rawValue) folds \(s.folds) seed \(s.seed) grid " + s.grid.map { String($0) }.joined(separator: ",")
    }

    static func loadGLM(_ url: URL, n: Int, classes: Int, selector: LambdaSelector) throws -> (glm: KernelGLM, grid: [LambdaSelector.Point]) {
        let f = try SafetensorsFile(url: url)
        if f.metadata["format"] == "tangent-kglm-1" || f.metadata["format"] == "tangent-kglm-2" {
            throw FeatureStoreError("\(url.path): made by an older version, whose lambda was chosen on one held-out split")
        }
        guard f.metadata["format"] == "tangent-kglm-3", let lambda = Double(f.metadata["lambda"] ?? ""),
              let kernelScale = Double(f.metadata["kernel_scale"] ?? ""), kernelScale > 0, kernelScale.isFinite else {
            throw FeatureStoreError("\(url.path): not a surrogate file")
        }
        guard f.metadata["selection"] == selectionTag(selector) else {
            throw FeatureStoreError("\(url.path): its lambda was chosen by another rule (\(f.metadata["selection"] ?? "none"))")
        }
        let glm = KernelGLM(classes: classes, trainCount: n, weights: try f.float64("weights", shape: [classes, n]),
                            bias: try f.float64("bias", shape: [classes]), lambda: lambda, kernelScale: kernelScale,
                            iterations: Int(f.metadata["iterations"] ?? "") ?? 0, converged: f.metadata["converged"] == "true",
                            gradientNorm: Double(f.metadata["gradient_norm"] ?? "") ?? 0)
        let lambdas = try f.float64("grid_lambda"), g = lambdas.count
        let tau = try f.float64("grid_network_tau", shape: [g]), networkCE = try f.float64("grid_network_ce", shape: [g]),
            labelCE = try f.float64("grid_label_ce", shape: [g])
        let grid = (0..<g).map {
            LambdaSelector.Point(lambda: lambdas[$0], networkTau: tau[$0], networkCrossEntropy: networkCE[$0], labelCrossEntropy: labelCE[$0])
        }
        return (glm, grid)
    }
}
