import Foundation
import TangentData
import TangentKernels
import TangentModel
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
    let featurizer: Featurizer

    /// Kernels whose training side is the stored features themselves.
    public static func supports(_ k: SurrogateKernel) -> Bool {
        switch k {
        case .projected, .embedding, .lossGradient(checkpoints: false): return true
        default: return false
        }
    }

    /// `budget` bounds the training feature blocks held at once (bytes).
    public init(classifier: Classifier, train: [LabeledText], trainFeatures file: FeatureFile, kernel: SurrogateKernel,
                budget: Int, lambda: Double?, selector: LambdaSelector = LambdaSelector(), selectionTexts maxSelection: Int = 4096,
                threads: Int = Threads.defaultCount, log: (String) -> Void = { _ in }) throws {
        guard StreamedAttribution.supports(kernel) else {
            throw AttributionError("kernel \(kernel.name) cannot be scored from a feature file alone (it needs the exact kernel, checkpoints, an ensemble or an influence transform); use proj-pntk, proj-trntk, embedding, ck or grad-cos")
        }
        try file.requireWhole()
        let m = file.metadata, path = file.url.path
        guard m.kernel == kernel.features.rawValue else {
            throw AttributionError("\(path) holds \(m.kernel) features; kernel \(kernel.name) needs \(kernel.features.rawValue) features")
        }
        guard m.modelFingerprint == Featurizer.modelFingerprint(classifier.model) else {
            throw AttributionError("\(path) was featurized with another model (\(m.modelPath)) than \(classifier.directory?.path ?? "the model given")")
        }
        guard m.texts == train.count, m.textsFingerprint == FeatureMetadata.fingerprint(texts: train) else {
            throw AttributionError("\(path) holds features of other texts (\(m.texts) texts of \(m.source)) than the \(train.count) training texts given")
        }
        self.classifier = classifier
        self.kernel = kernel
        self.train = train
        let n = train.count, C = classifier.labels.count
        let labels = try classifier.labels.indices(of: train, source: "training data")
        guard Set(labels).count >= 2 else {
            throw DataError("training data: all \(n) texts have one label; a surrogate needs training texts of at least two classes")
        }
        var options = FeaturizeOptions(kind: kernel.features)
        if kernel.features.projected {
            guard let choice = ProjectorChoice(tag: m.projector) else { throw AttributionError("\(path): unknown projector '\(m.projector)'") }
            options.projector = choice
            options.projDim = m.projDim
            options.seed = m.seed
            options.params = m.params.split(separator: ",").map(String.init)
        }
        options.predictedLossLabels = true
        options.threads = threads
        featurizer = try Featurizer(classifier: classifier, options: options)
        features = try StreamedFeatures(file: file, normalized: kernel.normalized, budget: budget, threads: threads)
        let whole = TrainingKernel.streamed(features)
        let scale = KernelGLM.kernelScale(features.diagonal)
        let chosen: Double
        if let lambda {
            chosen = lambda
            selectionTexts = 0
            grid = []
            log("surrogate: lambda \(lambda) as given")
        } else {
            // The selector on a seeded sample: its kernel is held in memory.
            let sample = n <= maxSelection ? Array(0..<n)
                : Array(LambdaSelector.sample(n: n, count: maxSelection, seed: selector.seed).sorted())
            guard sample.count >= 2 * selector.folds else {
                throw DataError("training data: \(n) texts are too few for \(selector.folds)-fold selection of lambda")
            }
            let logits = try file.logits()
            let sampleLogits = sample.flatMap { i in logits[(i * C)..<((i + 1) * C)] }
            let selection = selector.select(kernel: whole.restricted(to: sample), labels: sample.map { labels[$0] }, networkLogits: sampleLogits,
                                            classes: C, threads: threads, log: log)
            chosen = selection.lambda
            selectionTexts = sample.count
            grid = selection.points
            log("surrogate: lambda \(chosen) by \(selector.folds)-fold \(selector.criterion.rawValue) on \(sample.count) of \(n) training texts")
        }
        let t0 = Date()
        let spectrum = KernelSpectrum(kernel: whole, threads: threads)
        glm = KernelGLM.fit(kernel: whole, labels: labels, classes: C, lambda: chosen, kernelScale: scale, spectrum: spectrum, threads: threads)
        log(String(format: "surrogate fitted on all %ld training texts, streamed in blocks of %ld: %ld iterations, %ld evaluations, %.1f s%@",
                   n, features.blockRows, glm.iterations, glm.evaluations, Date().timeIntervalSince(t0), glm.converged ? "" : " (not converged)"))
    }

    /// Explains `texts` as `AttributionEngine.explain` does (without per-layer shares):
    /// the network's prediction, the surrogate's probability of it, and the `top` most
    /// positive and most negative attributions W[c, i] K(x, x_i), found block by block.
    public func explain(_ texts: [String], top: Int) throws -> [Explanation] {
        let m = texts.count, C = classifier.labels.count, n = train.count, w = features.width
        let q = try featurizer.block(texts.enumerated().map { LabeledText(text: $0.element, label: nil, line: $0.offset + 1) })
        var f = q.features
        let norms = Gram.squaredNorms(f, rows: m)
        if kernel.normalized {
            for t in 0..<m where norms[t] > 0 {
                let s = 1 / norms[t].squareRoot()
                for j in 0..<w { f[t * w + j] *= s }
            }
        }
        let netLogits = (0..<m).map { t in (0..<C).map { Double(q.logits[t * C + $0]) } }
        let predicted = netLogits.map { Softmax.argmax($0) }
        var z = (0..<m).map { _ in glm.bias }
        var best = (0..<m).map { _ in TopK(k: top) }, worst = (0..<m).map { _ in TopK(k: top) }
        // Kernel values as fixed-order dots (Double query, Float training rows): BLAS may
        // round an entry differently with the block's shape, and the budget sets the shape.
        let fd = f.map(Double.init)
        var tile = [Double](repeating: 0, count: m * features.blockRows)
        try features.forEachBlock { r, block in
            TrainingKernel.dots(fd, rows: m, depth: w, matrix: block, matrixRows: r.count, into: &tile, threads: features.threads)
            for t in 0..<m {
                let c = predicted[t]
                for (a, i) in r.enumerated() {
                    let k = tile[t * r.count + a]
                    for cc in 0..<C { z[t][cc] += glm.weights[cc * n + i] * k }
                    let s = glm.weights[c * n + i] * k
                    if s > 0, best[t].admits(s) { best[t].insert(s, i, kernel: k) }
                    if s < 0, worst[t].admits(-s) { worst[t].insert(-s, i, kernel: k) }
                }
            }
        }
        return (0..<m).map { t in
            let c = predicted[t]
            func item(_ e: TopK.Item, sign: Double) -> AttributedText {
                let i = e.index
                return AttributedText(index: i, line: train[i].line, text: train[i].text, label: train[i].label ?? "",
                                      score: sign * e.score, kernel: e.kernel, layerShares: nil)
            }
            return Explanation(text: texts[t], label: classifier.labels.names[c],
                               probability: Faithfulness.probability(logits: netLogits[t], classIndex: c),
                               surrogateProbability: Faithfulness.probability(logits: z[t], classIndex: c),
                               proponents: best[t].sorted.map { item($0, sign: 1) },
                               opponents: worst[t].sorted.map { item($0, sign: -1) })
        }
    }
}

/// The k largest scores seen so far with their indices and kernel values; of equal
/// scores the earlier index ranks first, as a stable sort of all scores would have it.
struct TopK {
    struct Item {
        let score: Double
        let index: Int
        let kernel: Double
    }

    let k: Int
    /// Weakest first: ascending by score, then descending by index.
    private(set) var items: [Item] = []

    init(k: Int) { self.k = k }

    func admits(_ s: Double) -> Bool { items.count < k || s > items[0].score }

    mutating func insert(_ s: Double, _ i: Int, kernel: Double) {
        if items.count == k { items.removeFirst() }
        let at = items.firstIndex { $0.score > s || ($0.score == s && $0.index < i) } ?? items.count
        items.insert(Item(score: s, index: i, kernel: kernel), at: at)
    }

    /// Strongest first.
    var sorted: [Item] { items.reversed() }
}
