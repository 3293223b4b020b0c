import Foundation
import TangentData
import TangentFeatures
import TangentModel
import TangentSurrogate
import TangentTensor

/// Attribution against a training set given as a finished feature file (for example the
/// merge of a sharded featurization), with memory bounded by a budget instead of n.
///
/// The kGLM is fitted in its factored form K = F F^T with F streamed from the file in row
/// blocks (`StreamedFeatures`): each evaluation reads F twice (2 n D numbers), and nothing
/// of size n x n or a copy of F is held. lambda is either given or chosen by the usual
/// k-fold rule on a seeded sample of at most `selectionTexts` training texts (their kernel
/// is small enough to hold); the surrogate is then fitted on all n texts at that lambda.
/// Query texts are scored block by block against the training rows, keeping the running
/// top-k proponents and opponents per text, so scoring holds m x k items, not m x n scores.
public final class StreamedAttribution {
    public let classifier: Classifier
    public let kernel: SurrogateKernel
    public let train: [LabeledText]
    public let features: StreamedFeatures
    public let glm: KernelGLM
    /// The sample the selector saw and its out-of-fold figures (empty when lambda was given).
    public let selectionTexts: Int
    public let grid: [LambdaSelector.Point]
    /// With `fitGrid`: the surrogate fitted on all training texts at every lambda of `grid`
    /// (same order), as the comparison reports them.
    public private(set) var gridFits: [KernelGLM] = []
    let featurizer: Featurizer

    /// Kernels whose training side is the stored features themselves.
    public static func supports(_ k: SurrogateKernel) -> Bool {
        switch k {
        case .projTrntk, .projPntk, .embedding, .ck, .gradCos: return true
        default: return false
        }
    }

    /// `budget` bounds the training feature blocks held at once (bytes).
    public init(
        classifier: Classifier, train: [LabeledText], trainFeatures file: FeatureFile, kernel: SurrogateKernel,
        budget: Int, lambda: Double?, selector: LambdaSelector = LambdaSelector(),
        selectionTexts maxSelection: Int = 4096,
        fitGrid: Bool = false, threads: Int = Threads.cores, log: (String) -> Void = { _ in }
    ) throws {
        guard StreamedAttribution.supports(kernel) else {
            throw AttributionError(
                "kernel \(kernel.name) cannot be scored from a feature file alone (it needs the exact kernel, checkpoints, an ensemble or an influence transform); use proj-pntk, proj-trntk, embedding, ck or grad-cos"
            )
        }
        self.classifier = classifier
        self.kernel = kernel
        self.train = train
        let n = train.count
        let C = classifier.labels.count
        let labels = try classifier.labels.indices(of: train, source: "training data")
        guard Set(labels).count >= 2 else {
            throw DataError(
                "training data: all \(n) texts have one label; a surrogate needs training texts of at least two classes"
            )
        }
        featurizer = try StreamedAttribution.featurizer(
            for: file, classifier: classifier, train: train, kernel: kernel, threads: threads)
        features = try StreamedFeatures(file: file, normalized: kernel.normalized, budget: budget, threads: threads)
        if let note = features.budgetNote { log("warning: " + note) }
        let whole = TrainingKernel.streamed(features)
        let scale = KernelGLM.kernelScale(features.diagonal)
        let chosen: Double
        (chosen, selectionTexts, grid) = try StreamedAttribution.chooseLambda(
            lambda, kernel: whole, file: file, labels: labels, classes: C, selector: selector,
            maxSelection: maxSelection, threads: threads, log: log)
        let t0 = Date()
        let spectrum = KernelSpectrum(kernel: whole, threads: threads)
        var fitted: KernelGLM?
        if fitGrid && !grid.isEmpty {
            let fits = StreamedAttribution.fitGrid(
                grid.map(\.lambda), kernel: whole, labels: labels, classes: C, kernelScale: scale, spectrum: spectrum,
                threads: threads, log: log)
            gridFits = grid.map { fits[$0.lambda]! }
            fitted = fits[chosen]
        }
        glm =
            fitted
            ?? KernelGLM.fit(
                kernel: whole, labels: labels, classes: C, lambda: chosen, kernelScale: scale, spectrum: spectrum,
                threads: threads)
        log(
            String(
                format:
                    "surrogate fitted on all %ld training texts, streamed in blocks of %ld: %ld iterations, %ld evaluations%@; %@%.1f s",
                n, features.blockRows, glm.iterations, glm.evaluations, glm.converged ? "" : " (not converged)",
                gridFits.isEmpty ? "" : "all \(gridFits.count) lambdas of the grid in ", Date().timeIntervalSince(t0)))
    }

    /// The lambda given, or else the one `selector` chooses on a seeded sample of at most
    /// `maxSelection` training texts (whose kernel is held in memory), with the number of
    /// texts it used and its out-of-fold figures per lambda.
    static func chooseLambda(
        _ lambda: Double?, kernel whole: TrainingKernel, file: FeatureFile, labels: [Int], classes C: Int,
        selector: LambdaSelector, maxSelection: Int, threads: Int, log: (String) -> Void
    ) throws -> (lambda: Double, selectionTexts: Int, grid: [LambdaSelector.Point]) {
        let n = labels.count
        if let lambda {
            log("surrogate: lambda \(lambda) as given")
            return (lambda, 0, [])
        }
        let sample =
            n <= maxSelection
            ? Array(0..<n)
            : Array(LambdaSelector.sample(n: n, count: maxSelection, seed: selector.seed).sorted())
        guard sample.count >= 2 * selector.folds else {
            throw DataError(
                "a selection sample of \(sample.count) of the \(n) training texts is too few for \(selector.folds)-fold selection of lambda (--selection-texts; need at least \(2 * selector.folds))"
            )
        }
        let logits = try file.logits()
        let sampleLogits = sample.flatMap { i in logits[(i * C)..<((i + 1) * C)] }
        let selection = selector.select(
            kernel: whole.restricted(to: sample), labels: sample.map { labels[$0] }, networkLogits: sampleLogits,
            classes: C, fitsOnAll: .none, threads: threads, log: log)
        log(
            "surrogate: lambda \(selection.lambda) by \(selector.folds)-fold \(selector.criterion.rawValue) on \(sample.count) of \(n) training texts"
        )
        return (selection.lambda, sample.count, selection.points)
    }

    /// The surrogate at every lambda of `lambdas` on all training texts, strongest lambda
    /// first, each fit warm-started from the previous one, as the in-memory selector fits
    /// its grid.
    static func fitGrid(
        _ lambdas: [Double], kernel whole: TrainingKernel, labels: [Int], classes C: Int, kernelScale scale: Double,
        spectrum: KernelSpectrum?, threads: Int, log: (String) -> Void
    ) -> [Double: KernelGLM] {
        var previous: KernelGLM?
        var fits: [Double: KernelGLM] = [:]
        for lambda in lambdas.sorted(by: >) {
            let g = KernelGLM.fit(
                kernel: whole, labels: labels, classes: C, lambda: lambda, kernelScale: scale, start: previous,
                spectrum: spectrum, threads: threads)
            log(
                String(
                    format: "lambda %.0e on all %ld training texts: %ld iterations%@", lambda, labels.count,
                    g.iterations,
                    g.converged ? "" : ", not converged"))
            fits[lambda] = g
            previous = g
        }
        return fits
    }

    /// The featurizer that wrote `file` for this model and these training texts (the
    /// projection is the file's own), or an error naming how the file differs from that.
    static func featurizer(
        for file: FeatureFile, classifier: Classifier, train: [LabeledText], kernel: SurrogateKernel,
        threads: Int
    ) throws -> Featurizer {
        try file.requireWhole()
        let m = file.metadata
        let path = file.url.path
        guard m.kernel == kernel.features.rawValue else {
            throw AttributionError(
                "\(path) holds \(m.kernel) features; kernel \(kernel.name) needs \(kernel.features.rawValue) features")
        }
        let modelFingerprint = Featurizer.modelFingerprint(classifier)
        guard m.modelFingerprint == modelFingerprint else {
            throw AttributionError(
                "\(path) was featurized with another model (\(m.modelPath)) than \(classifier.directory?.path ?? "the model given")"
            )
        }
        guard m.texts == train.count, m.textsFingerprint == FeatureMetadata.fingerprint(texts: train) else {
            throw AttributionError(
                "\(path) holds features of other texts (\(m.texts) texts of \(m.source)) than the \(train.count) training texts given"
            )
        }
        var options = FeaturizeOptions(kind: kernel.features)
        if kernel.features.projected {
            guard let choice = ProjectorChoice(tag: m.projector) else {
                throw AttributionError("\(path): unknown projector '\(m.projector)'")
            }
            options.projector = choice
            options.projDim = m.projDim
            options.seed = m.seed
            options.params = m.params.split(separator: ",").map(String.init)
        }
        options.predictedLossLabels = true
        options.threads = threads
        let featurizer = try Featurizer(classifier: classifier, options: options, fingerprint: modelFingerprint)
        // Everything else the file claims (classes, vector shape, block size) must be what
        // this model and these settings write: metadata is input, and a forged count
        // would index past the model's classes.
        var expected = featurizer.metadata(texts: train, source: m.source)
        expected.blockSize = m.blockSize
        // Per-layer features are extra tensors; the whole-model features are the same.
        expected.layerGroups = m.layerGroups
        if let why = FeatureWriter.mismatch(m, expected: expected) {
            throw AttributionError(
                "\(path) does not hold \(kernel.name) features of this model and these texts: it differs in \(why)")
        }
        return featurizer
    }

    /// The result of one pass over the training features for a few query texts.
    /// Featurizes `texts` and streams the training features once through one
    /// `SurrogateScorer`: the surrogates' logits (default: the chosen one) and the running
    /// top-k of the first one's attributions.
    func scan(_ texts: [LabeledText], surrogates: [KernelGLM]? = nil, top: Int = 0) throws -> SurrogateScorer {
        let m = texts.count
        let C = classifier.labels.count
        let w = features.width
        let q = try featurizer.block(
            texts.enumerated().map { LabeledText(text: $0.element.text, label: nil, line: $0.offset + 1) })
        let f =
            kernel.normalized
            ? Gram.unitRows(
                q.features.map(Double.init), rows: m,
                squaredNorms: Gram.squaredNorms(q.features, rows: m).map(Double.init))
            : q.features.map(Double.init)
        var scorer = SurrogateScorer(
            glms: surrogates ?? [glm], networkLogits: (0..<m).map { t in (0..<C).map { Double(q.logits[t * C + $0]) } },
            top: top)
        // Kernel values as fixed-order dots (Double query, Float training rows): BLAS may
        // round an entry differently with the block's shape, and the budget sets the shape.
        // A block is taken `tileRows` rows at a time, so the tile stays small for many texts.
        let tileRows = 2048
        var tile = [Double](repeating: 0, count: m * min(tileRows, features.blockRows))
        features.forEachBlock { r, block in
            for s in stride(from: 0, to: r.count, by: tileRows) {
                let rows = min(tileRows, r.count - s)
                let part = Array(block[(s * w)..<((s + rows) * w)])
                TrainingKernel.dots(
                    f, rows: m, depth: w, matrix: part, matrixRows: rows, into: &tile, threads: features.threads)
                scorer.add(first: r.lowerBound + s, rows: rows, kernel: tile)
            }
        }
        return scorer
    }

    /// Network and surrogate logits of `texts` ([m][C] and [surrogate][m][C]), one pass
    /// over the training features for all `surrogates`.
    public func logits(_ texts: [LabeledText], surrogates: [KernelGLM]) throws -> (
        network: [[Double]], surrogates: [[[Double]]]
    ) {
        let r = try scan(texts, surrogates: surrogates)
        return (r.networkLogits, r.logits)
    }

    /// Explains `texts` as `AttributionEngine.explain` does (without per-layer shares):
    /// the network's prediction, the surrogate's probability of it, and the `top` most
    /// positive and most negative attributions W[c, i] K(x, x_i), found block by block.
    public func explain(_ texts: [String], top: Int) throws -> [Explanation] {
        try scan(texts.map { LabeledText(text: $0, label: nil, line: 0) }, top: top)
            .explanations(texts, train: train, labels: classifier.labels)
    }

    /// The training features of `kernel` for `train` in `cache`, featurized there when
    /// missing or unusable (the same cache entries the in-memory engine uses).
    public static func cachedTrainingFeatures(
        classifier: Classifier, train: [LabeledText], kernel: SurrogateKernel, projDim: Int,
        seed: UInt64, projector: ProjectorChoice, cache: URL, threads: Int,
        log: (String) -> Void, progress: (Int, Int) -> Void
    ) throws -> FeatureFile {
        let store = SurrogateCache(directory: cache)
        var options = FeaturizeOptions(kind: kernel.features)
        options.projDim = projDim
        options.seed = seed
        options.projector = projector
        options.threads = threads
        let featurizer = try Featurizer(classifier: classifier, options: options)
        let stem = SurrogateCache.featureStem(
            kernel.features, projDim: projDim, seed: seed, projector: projector, model: featurizer.modelFingerprint,
            texts: SurrogateCache.key(train))
        let url = store.url(stem)
        // Values are checked by `StreamedFeatures` in its first pass over the file.
        if let f = FeatureFile.cached(
            url, expected: featurizer.metadata(texts: train, source: "training data"), checkValues: false, log: log)
        {
            log("using cached training features \(url.path)")
            return f
        }
        try store.prepare()
        log("featurizing \(train.count) training texts (\(kernel.features.rawValue)) into \(url.path)")
        return try featurizer.run(texts: train, source: "training data", to: url, replace: .anyFile, progress: progress)
    }
}
