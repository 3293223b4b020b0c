import Foundation
import TangentData
import TangentFeatures
import TangentModel
import TangentSafetensors
import TangentSurrogate
import TangentTensor

/// Fits the kernel surrogate on a training set and explains predictions by training texts.
///
/// Pipeline (TRAK's model output -> gradients -> projector -> feature store -> scorer):
/// the kernel's training side (`KernelSource`: stored features, or the exact train x train
/// kernel, cached) -> lambda chosen by k-fold cross-validation on the training texts
/// (`LambdaSelector`) -> the kGLM at that lambda on all training texts (cached) -> for a
/// text: its kernel row and W[c, i] K(x, x_i), or the method's own score.
public final class AttributionEngine {
    public let classifier: Classifier
    public let kernel: SurrogateKernel
    public let train: [LabeledText]
    public let trainLabels: [Int]
    /// The kernel's training side.
    public let source: KernelSource
    public let glm: KernelGLM
    /// The selector's out-of-fold figures for each lambda of the grid (ascending).
    public let grid: [LambdaSelector.Point]
    /// The surrogate fitted on all training texts at each lambda of `grid`, when it was
    /// fitted in this run rather than loaded from the cache.
    public private(set) var gridFits: [KernelGLM] = []
    /// How lambda was chosen.
    public let selector: LambdaSelector

    /// Stored features and featurizer of the model under study (nil for exact kernels).
    public var features: FeatureFile? { source.storedFeatures?.file }
    public var featurizer: Featurizer? { source.storedFeatures?.featurizer }
    /// One influence transform per feature source (influence baselines; the models of a TRAK ensemble).
    public var transforms: [InfluenceTransform] { source.transforms }
    public var influence: InfluenceTransform? { transforms.first }
    /// TracIn: which checkpoints were summed and how they relate to the model.
    public var checkpointSummary: String? { source.note }
    /// Exact kernels: per-layer parts of the training texts' self-kernels.
    public var trainSelfParts: [(group: String, values: [Float])]? { source.selfParts }
    /// `trntk-layers`: the fitted layer weights.
    public var layerWeights: [Double]? { source.layerWeighting?.weights }
    public var layerWeightFit: LayerWeighting.Result? { source.layerWeighting?.fit }

    /// Builds (or reads from the cache) the kernel's training side and fits the surrogate.
    public init(
        setup: AttributionSetup, kernel: SurrogateKernel, log: (String) -> Void = { _ in },
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws {
        classifier = setup.classifier
        self.kernel = kernel
        train = setup.train
        selector = setup.selector
        let n = train.count
        let C = classifier.labels.count
        trainLabels = try classifier.labels.indices(of: train, source: "training data")
        guard Set(trainLabels).count >= 2 else {
            throw DataError(
                "training data: all \(n) texts have one label; a surrogate needs training texts of at least two classes"
            )
        }
        guard n >= 2 * selector.folds else {
            throw DataError(
                "training data: \(n) texts are too few for \(selector.folds)-fold selection of lambda (need at least \(2 * selector.folds))"
            )
        }
        source = try setup.source(for: kernel, labels: trainLabels, log: log, progress: progress)
        let url = setup.cache.surrogate(source.stem, kernel: kernel.name)
        var cached: (glm: KernelGLM, grid: [LambdaSelector.Point])?
        if setup.useSurrogateCache && FileManager.default.fileExists(atPath: url.path) {
            do { cached = try setup.cache.loadSurrogate(url, n: n, classes: C, selector: selector) } catch {
                log("cached \(url.path) is unusable (\(error)); fitting the surrogate again")
            }
        }
        if let cached {
            glm = cached.glm
            grid = cached.grid
            log("using cached surrogate \(url.path) (lambda \(glm.lambda))")
        } else {
            // The selector sees the training texts only: their kernel, labels and the
            // network's logits on them.
            // Only the chosen lambda needs a fit on all texts, unless the grid is reported.
            let selection = selector.select(
                kernel: try source.gram(), labels: trainLabels, networkLogits: try source.trainLogits(),
                classes: C, fitsOnAll: setup.fitGrid ? .everyLambda : .chosen, threads: setup.threads, log: log)
            // Fitted on all training texts at the chosen lambda (.chosen or .everyLambda).
            guard let fit = selection.chosenFit else {
                throw AttributionError("\(kernel.name): no surrogate was fitted")
            }
            glm = fit
            grid = selection.points
            gridFits = selection.fits
            try setup.cache.prepare()
            try setup.cache.saveSurrogate(glm, grid: grid, selector: selector, to: url)
            log(
                "surrogate: lambda \(glm.lambda) by \(selector.folds)-fold \(selector.criterion.rawValue) (\(glm.iterations) iterations on all \(n) training texts)"
            )
        }
    }

    /// The same from the settings one by one.
    public convenience init(
        classifier: Classifier, train: [LabeledText], kernel: SurrogateKernel, projDim: Int, seed: UInt64,
        projector: ProjectorChoice = .default, cache: URL, threads: Int = Threads.cores,
        selector: LambdaSelector = LambdaSelector(), useSurrogateCache: Bool = true, checkpoints: URL? = nil,
        ensemble: [Classifier] = [], log: (String) -> Void = { _ in }, progress: (Int, Int) -> Void = { _, _ in }
    ) throws {
        try self.init(
            setup: AttributionSetup(
                classifier: classifier, train: train, projDim: projDim, seed: seed, projector: projector, cache: cache,
                selector: selector, threads: threads, checkpoints: checkpoints, ensemble: ensemble,
                useSurrogateCache: useSurrogateCache),
            kernel: kernel, log: log, progress: progress)
    }

    /// Kernel rows of `texts` against the training texts and the network's logits (see
    /// `KernelSource.query`).
    public func query(
        _ texts: [LabeledText], source: String, cached: Bool = false, lossLabels: [Int]? = nil,
        log: (String) -> Void = { _ in }, progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> QueryKernel {
        try self.source.query(
            texts, source: source, cached: cached, lossLabels: lossLabels, log: log, progress: progress)
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
        precondition(q.rows.count == classes.count * n)
        return representerScores(q, classes: classes)
    }

    /// The surrogate's own influence (`SurrogateInfluence`) for `glm` (default: the chosen
    /// fit), from the training kernel: for `methodScores`' counterfactual counterpart.
    public func surrogateInfluence(_ glm: KernelGLM? = nil) throws -> SurrogateInfluence {
        try SurrogateInfluence(glm: glm ?? self.glm, kernel: try trainingKernel(), labels: trainLabels)
    }

    /// The training kernel, built once for the influences of several fits (a feature
    /// source multiplies its features again on every `gram()`); held only once asked for.
    public func trainingKernel() throws -> TrainingKernel {
        if let influenceKernel { return influenceKernel }
        let k = try source.gram()
        influenceKernel = k
        return k
    }
    private var influenceKernel: TrainingKernel?

    /// The representer attributions W[c, i] K(x, x_i) [m, n] of `glm` (default: the chosen
    /// fit) for query kernel rows `q`, class `classes[t]` for text t.
    public func representerScores(_ q: QueryKernel, classes: [Int], glm: KernelGLM? = nil) -> [Double] {
        let n = train.count
        let fit = glm ?? self.glm
        var out: [Double] = []
        out.reserveCapacity(classes.count * n)
        for (t, c) in classes.enumerated() {
            out += fit.attributions(kernelRow: Array(q.rows[(t * n)..<((t + 1) * n)]), classIndex: c)
        }
        return out
    }

    /// Explains `texts`: the network's prediction, the surrogate's probability of it,
    /// and the `top` most positive and most negative training attributions, scored by the
    /// `SurrogateScorer` the streamed path uses too (whole kernel rows as one block).
    public func explain(_ texts: [String], top: Int, layerShares: Bool = true) throws -> [Explanation] {
        let q = try query(
            texts.enumerated().map { LabeledText(text: $0.element, label: nil, line: $0.offset + 1) },
            source: "query texts")
        let C = classifier.labels.count
        let n = train.count
        var scorer = SurrogateScorer(
            glms: [glm], networkLogits: texts.indices.map { t in (0..<C).map { Double(q.logits[t * C + $0]) } },
            top: top)
        scorer.add(first: 0, rows: n, kernel: q.rows.map(Double.init))
        return try scorer.explanations(texts, train: train, labels: classifier.labels) { t, items in
            guard layerShares else { return [:] }
            if let parts = q.parts {
                return Dictionary(
                    uniqueKeysWithValues: items.map { i in
                        (i, AttributedText.shares(parts.map { ($0.group, Double($0.values[t * n + i])) }))
                    })
            }
            guard let kind = kernel.layerKind else { return [:] }
            return try self.layerShares(text: texts[t], items: items, kind: kind)
        }
    }

    /// Per-layer shares of the exact NTK between a text and training texts.
    func layerShares(text: String, items: [Int], kind: NTKKind) throws -> [Int: [String: Double]] {
        if items.isEmpty { return [:] }
        let computer = try GradientComputer(model: classifier.model, prefixes: ["all"])
        let r = try ExactKernel.compute(
            computer, a: [try classifier.encode(text)], b: try items.map { try classifier.encode(train[$0].text) },
            kind: kind)
        var out: [Int: [String: Double]] = [:]
        for (j, i) in items.enumerated() {
            out[i] = AttributedText.shares(r.parts.map { ($0.group, Double($0.values[j])) })
        }
        return out
    }
}
