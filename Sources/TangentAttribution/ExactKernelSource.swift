import Foundation
import TangentData
import TangentFeatures
import TangentModel
import TangentSafetensors
import TangentSurrogate
import TangentTensor

/// The exact NTK of the training texts (cached), and exact rows for query texts.
public final class ExactKernelSource: KernelSource {
    public let kernel: SurrogateKernel
    public let stem: String
    public private(set) var selfParts: [(group: String, values: [Float])]?
    public var note: String? { nil }
    public var storedFeatures: (file: FeatureFile, featurizer: Featurizer)? { nil }
    public var transforms: [InfluenceTransform] { [] }
    public var layerWeighting: (weights: [Double], fit: LayerWeighting.Result?)? {
        layerWeights.map { ($0, layerWeightFit) }
    }
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

    init(
        setup: AttributionSetup, kernel: SurrogateKernel, kind: NTKKind, labels: [Int], log: (String) -> Void,
        progress: (Int, Int) -> Void
    ) throws {
        self.kernel = kernel
        self.kind = kind
        classifier = setup.classifier
        cache = setup.cache
        computer = try GradientComputer<Float>(model: classifier.model, prefixes: ["all"])
        tokens = try setup.train.map { try setup.classifier.encode($0.text) }
        texts = setup.train.map(\.text)
        stem = SurrogateCache.exactStem(kind, model: classifier, texts: SurrogateCache.key(setup.train))
        let (file, parts) = try ExactKernelSource.trainKernel(
            kernel: kernel, kind: kind, stem: stem, cache: cache, computer: computer,
            tokens: tokens, log: log, progress: progress)
        matrix = file.matrix
        selfParts = file.selfParts
        self.parts = parts
        guard let parts else { return }
        let weights = try fitLayerWeights(parts: parts, setup: setup, labels: labels, log: log)
        log(
            "layer weights: "
                + zip(computer.groups, weights).map { String(format: "%@ %.3g", $0.name, $1) }.joined(separator: ", "))
        layerWeights = weights
        selfParts = zip(file.selfParts, weights).map { p, wl in
            (group: p.group, values: p.values.map { Float(wl) * $0 })
        }
    }

    /// The train x train kernel with its self-parts, read from the cache or computed and
    /// written there, and the full per-layer parts when the kernel is layer-weighted. The
    /// parts are kept in a file of their own whenever they are small, so that
    /// `trntk-layers` after `trntk` does not compute the exact kernel again.
    static func trainKernel(
        kernel: SurrogateKernel, kind: NTKKind, stem: String, cache: SurrogateCache, computer: GradientComputer<Float>,
        tokens: [[Int32]], log: (String) -> Void, progress: (Int, Int) -> Void
    ) throws
        -> (SurrogateCache.ExactKernelFile, [[Float]]?)
    {
        let n = tokens.count
        let groups = computer.groups.map(\.name)
        let url = cache.url(stem)
        let cachedParts = kernel.layerWeighted ? cache.loadExactParts(stem, n: n, groups: groups) : nil
        if let file = cache.loadExactKernel(stem, n: n, groups: groups), !kernel.layerWeighted || cachedParts != nil {
            log("using cached exact \(kind.rawValue) kernel \(url.path)")
            return (file, cachedParts)
        }
        if FileManager.default.fileExists(atPath: url.path) {
            log(
                "cached \(url.path) is unusable (damaged, of another shape, or without the per-layer parts); rebuilding it"
            )
        }
        log(
            "computing the exact \(kind.rawValue) kernel of \(n) training texts (\(computer.subset.count) parameters) into \(url.path)"
        )
        let r = try ExactKernel.compute(computer, a: tokens, b: nil, kind: kind, progress: progress)
        let selfParts = r.parts.map { p in (group: p.group, values: (0..<n).map { p.values[$0 * n + $0] }) }
        if kernel.layerWeighted || r.parts.count * n * n * 4 <= ExactKernelSource.keptPartsBytes {
            try cache.saveExactParts(stem, kind: kind, n: n, parts: r.parts)
        }
        try cache.saveExactKernel(stem, kind: kind, matrix: r.total, n: n, selfParts: selfParts)
        return (
            SurrogateCache.ExactKernelFile(matrix: r.total, selfParts: selfParts),
            kernel.layerWeighted ? r.parts.map(\.values) : nil
        )
    }

    /// NFT-K layer weights, read from the cache or fitted (with lambda chosen by the
    /// selector on the unweighted kernel) and written there.
    private func fitLayerWeights(parts: [[Float]], setup: AttributionSetup, labels: [Int], log: (String) -> Void) throws
        -> [Double]
    {
        let groups = computer.groups.map(\.name)
        let tag = setup.selector.tag
        let n = trainCount
        if setup.useSurrogateCache,
            let w = cache.loadLayerWeights(stem, kernel: kernel.name, groups: parts.count, tag: tag)
        {
            log("using cached layer weights \(cache.layerWeights(stem, kernel: kernel.name).path)")
            return w
        }
        let logits = try trainLogits()
        let C = classifier.labels.count
        let plain = setup.selector.select(
            kernel: .matrix(matrix, n: n), labels: labels, networkLogits: logits, classes: C, fitsOnAll: .none,
            threads: setup.threads)
        let r = LayerWeighting.fit(
            parts: parts, labels: labels, networkLogits: logits, classes: C, lambda: plain.lambda,
            selector: setup.selector, threads: setup.threads, log: log)
        layerWeightFit = r
        try cache.saveLayerWeights(stem, kernel: kernel.name, fit: r, groups: groups, tag: tag)
        return r.weights
    }

    public func gram() throws -> TrainingKernel {
        if let parts, let w = layerWeights { return .matrix(LayerWeighting.combine(parts, weights: w), n: trainCount) }
        return .matrix(matrix, n: trainCount)
    }

    public func trainLogits() throws -> [Float] { try classifier.logits(texts) }

    public func query(
        _ texts: [LabeledText], source: String, cached: Bool, lossLabels: [Int]?,
        log: (String) -> Void, progress: (Int, Int) -> Void
    ) throws -> QueryKernel {
        let m = texts.count
        let n = trainCount
        let C = classifier.labels.count
        let url = cache.query(stem, texts: texts)
        if cached, let q = cache.loadExactRows(url, m: m, n: n, classes: C, groups: computer.groups.map(\.name)) {
            return weighted(q)
        }
        let r = try ExactKernel.compute(
            computer, a: try texts.map { try classifier.encode($0.text) }, b: tokens, kind: kind, progress: progress)
        let q = QueryKernel(rows: r.total, logits: try classifier.logits(texts.map(\.text)), parts: r.parts)
        if cached { try cache.saveExactRows(q, kind: kind, m: m, n: n, classes: C, to: url) }
        return weighted(q)
    }

    /// With layer weights: each part scaled by its weight and the rows their sum.
    private func weighted(_ q: QueryKernel) -> QueryKernel {
        guard let w = layerWeights, let parts = q.parts else { return q }
        let scaled = zip(parts, w).map { p, wl in (group: p.group, values: p.values.map { Float(wl) * $0 }) }
        return QueryKernel(
            rows: LayerWeighting.combine(parts.map(\.values), weights: w), logits: q.logits, parts: scaled)
    }
}
