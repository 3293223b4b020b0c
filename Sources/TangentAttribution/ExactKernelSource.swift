import Foundation
import TangentData
import TangentKernels
import TangentModel
import TangentSafetensors
import TangentTensor

/// The exact NTK of the training texts (cached), and exact rows for query texts.
public final class ExactKernelSource: KernelSource {
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
            if kernel.layerWeighted || r.parts.count * n * n * 4 <= ExactKernelSource.keptPartsBytes {
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
