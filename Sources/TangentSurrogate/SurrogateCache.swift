import Foundation
import TangentData
import TangentFeatures
import TangentModel
import TangentSafetensors
import TangentTensor

/// The cache directory of training features, exact kernels, query rows and fitted
/// surrogates, and the names of its files.
///
/// A file's name says everything its contents depend on: the kernel and its projection
/// (K, seed, projector), the model (`Featurizer.modelFingerprint`) and the texts
/// (`key(_:)`, the one fingerprint of a text list, labels included). Every writer goes
/// through here, so two stages cannot name the same content differently.
public struct SurrogateCache: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    /// The fingerprint of a list of texts with their labels, in order.
    public static func key(_ texts: [LabeledText]) -> String { fingerprint(labelled: texts) }

    /// Training features of `kind` from the model with fingerprint `model`
    /// (`Featurizer.modelFingerprint`) for the texts with key `texts`.
    public static func featureStem(
        _ kind: FeatureKind, projDim: Int, seed: UInt64, projector: ProjectorChoice,
        model: String, texts: String
    ) -> String {
        let projected = kind.projected
        return "\(kind.rawValue)-K\(projected ? projDim : 0)-s\(projected ? seed : 0)"
            + (projected ? "-\(projector.tag)" : "") + "-\(model)-\(texts)"
    }

    /// The exact `kind` kernel of `model` on the texts with key `texts`.
    public static func exactStem(_ kind: NTKKind, model: Classifier, texts: String) -> String {
        "exact-\(kind.rawValue)-\(Featurizer.modelFingerprint(model))-\(texts)"
    }

    /// Several feature sources combined: TracIn's checkpoints (the last one is the model)
    /// or an ensemble's models.
    public static func combinedStem(_ stems: [String], ensemble: Bool) -> String {
        if stems.count == 1 { return stems[0] }
        return ensemble
            ? "ens\(stems.count)-" + fingerprint(Data(stems.joined(separator: "\n").utf8))
            : "tracin\(stems.count)-" + stems.last!
    }

    public func url(_ name: String) -> URL { directory.appendingPathComponent(name + ".safetensors") }

    /// The exact kernel's full per-layer parts (layer weights only).
    public func parts(_ stem: String) -> URL { url(stem + "-parts") }

    /// A surrogate fitted on the kernel `stem` under the name `kernel`, and its layer weights.
    public func surrogate(_ stem: String, kernel: String) -> URL { url("\(stem)-\(kernel)-kglm") }
    public func layerWeights(_ stem: String, kernel: String) -> URL { url("\(stem)-\(kernel)-weights") }

    /// Query texts' features or exact rows; loss-gradient features also name the class
    /// indices their loss used.
    public func query(_ stem: String, texts: [LabeledText], lossLabels: [Int]? = nil) -> URL {
        let labels =
            lossLabels.map { "-labels-" + fingerprint(Data($0.map(String.init).joined(separator: ",").utf8)) } ?? ""
        return url("\(stem)\(labels)-test-\(SurrogateCache.key(texts))")
    }

    /// Creates the directory if needed.
    public func prepare() throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }
}

extension SurrogateCache {
    /// Writes a fitted surrogate with the selector's grid and rule.
    public func saveSurrogate(_ g: KernelGLM, grid: [LambdaSelector.Point], selector: LambdaSelector, to url: URL)
        throws
    {
        var w = SafetensorsWriter()
        w.metadata = [
            "format": "tangent-kglm-3", "lambda": String(g.lambda), "kernel_scale": String(g.kernelScale),
            "iterations": String(g.iterations),
            "converged": String(g.converged), "gradient_norm": String(g.gradientNorm), "selection": selector.tag,
        ]
        w.add("weights", shape: [g.classes, g.trainCount], float64: g.weights)
        w.add("bias", shape: [g.classes], float64: g.bias)
        w.add("grid_lambda", shape: [grid.count], float64: grid.map(\.lambda))
        w.add("grid_network_tau", shape: [grid.count], float64: grid.map(\.networkTau))
        w.add("grid_network_ce", shape: [grid.count], float64: grid.map(\.networkCrossEntropy))
        w.add("grid_label_ce", shape: [grid.count], float64: grid.map(\.labelCrossEntropy))
        try w.write(to: url)
    }

    /// Reads a surrogate `saveSurrogate` wrote; throws when it is damaged, of an older
    /// format, or chosen by another selector.
    public func loadSurrogate(_ url: URL, n: Int, classes: Int, selector: LambdaSelector) throws -> (
        glm: KernelGLM, grid: [LambdaSelector.Point]
    ) {
        let f = try SafetensorsFile(url: url)
        if f.metadata["format"] == "tangent-kglm-1" || f.metadata["format"] == "tangent-kglm-2" {
            throw FeatureStoreError(
                "\(url.path): made by an older version, whose lambda was chosen on one held-out split")
        }
        guard f.metadata["format"] == "tangent-kglm-3", let lambda = Double(f.metadata["lambda"] ?? ""),
            let kernelScale = Double(f.metadata["kernel_scale"] ?? ""), kernelScale > 0, kernelScale.isFinite
        else {
            throw FeatureStoreError("\(url.path): not a surrogate file")
        }
        guard f.metadata["selection"] == selector.tag else {
            throw FeatureStoreError(
                "\(url.path): its lambda was chosen by another rule (\(f.metadata["selection"] ?? "none"))")
        }
        let weights = try f.float64("weights", shape: [classes, n])
        let bias = try f.float64("bias", shape: [classes])
        guard weights.allSatisfy(\.isFinite), bias.allSatisfy(\.isFinite), lambda > 0, lambda.isFinite else {
            throw FeatureStoreError("\(url.path): its weights, bias or lambda hold NaN, Inf or a non-positive value")
        }
        let glm = KernelGLM(
            classes: classes, trainCount: n, weights: weights,
            bias: bias, lambda: lambda, kernelScale: kernelScale,
            iterations: Int(f.metadata["iterations"] ?? "") ?? 0, converged: f.metadata["converged"] == "true",
            gradientNorm: Double(f.metadata["gradient_norm"] ?? "") ?? 0)
        let lambdas = try f.float64("grid_lambda")
        let g = lambdas.count
        let tau = try f.float64("grid_network_tau", shape: [g])
        let networkCE = try f.float64("grid_network_ce", shape: [g])
        let labelCE = try f.float64("grid_label_ce", shape: [g])
        let grid = (0..<g).map {
            LambdaSelector.Point(
                lambda: lambdas[$0], networkTau: tau[$0], networkCrossEntropy: networkCE[$0],
                labelCrossEntropy: labelCE[$0])
        }
        return (glm, grid)
    }
}

/// The exact kernels' files: the train x train kernel with each group's self-kernels, its
/// full per-layer parts, NFT-K layer weights, and query texts' exact rows.
extension SurrogateCache {
    /// An exact kernel read back: [n, n] and each group's part of K(x_i, x_i).
    public struct ExactKernelFile {
        public let matrix: [Float]
        public let selfParts: [(group: String, values: [Float])]

        public init(matrix: [Float], selfParts: [(group: String, values: [Float])]) {
            self.matrix = matrix
            self.selfParts = selfParts
        }
    }

    /// The exact kernel `stem` of `n` texts with layer `groups`, or nil when it is missing,
    /// damaged or of another shape.
    public func loadExactKernel(_ stem: String, n: Int, groups: [String]) -> ExactKernelFile? {
        guard let f = try? SafetensorsFile(url: url(stem)), f.metadata["format"] == "tangent-exact-kernel-1",
            let k = try? f.float32("kernel", shape: [n, n]),
            let parts = try? groups.map({ (group: $0, values: try f.float32("self.\($0)", shape: [n])) })
        else { return nil }
        return ExactKernelFile(matrix: k, selfParts: parts)
    }

    public func saveExactKernel(
        _ stem: String, kind: NTKKind, matrix: [Float], n: Int, selfParts: [(group: String, values: [Float])]
    ) throws {
        var w = SafetensorsWriter()
        w.metadata = ["format": "tangent-exact-kernel-1", "kernel": kind.rawValue, "texts": String(n)]
        w.add("kernel", shape: [n, n], float32: matrix)
        for p in selfParts { w.add("self.\(p.group)", shape: [n], float32: p.values) }
        try prepare()
        try w.write(to: url(stem))
    }

    /// The full per-layer parts [n, n] of exact kernel `stem`, one per group, or nil.
    public func loadExactParts(_ stem: String, n: Int, groups: [String]) -> [[Float]]? {
        guard let p = try? SafetensorsFile(url: parts(stem)), p.metadata["format"] == "tangent-exact-parts-1" else {
            return nil
        }
        return try? groups.map { try p.float32("part.\($0)", shape: [n, n]) }
    }

    public func saveExactParts(_ stem: String, kind: NTKKind, n: Int, parts: [(group: String, values: [Float])]) throws
    {
        var w = SafetensorsWriter()
        w.metadata = ["format": "tangent-exact-parts-1", "kernel": kind.rawValue, "texts": String(n)]
        for p in parts { w.add("part.\(p.group)", shape: [n, n], float32: p.values) }
        try prepare()
        try w.write(to: self.parts(stem))
    }

    /// Layer weights of `kernel` on exact kernel `stem`, chosen under selector tag `tag`, or nil.
    public func loadLayerWeights(_ stem: String, kernel: String, groups: Int, tag: String) -> [Double]? {
        guard let f = try? SafetensorsFile(url: layerWeights(stem, kernel: kernel)), f.metadata["selection"] == tag
        else { return nil }
        return try? f.float64("weights", shape: [groups])
    }

    public func saveLayerWeights(
        _ stem: String, kernel: String, fit r: LayerWeighting.Result, groups: [String], tag: String
    ) throws {
        var w = SafetensorsWriter()
        w.metadata = [
            "format": "tangent-layer-weights-1", "selection": tag, "groups": groups.joined(separator: ","),
            "cross_entropy": String(r.crossEntropy), "unweighted_cross_entropy": String(r.unweightedCrossEntropy),
        ]
        w.add("weights", shape: [groups.count], float64: r.weights)
        try prepare()
        try w.write(to: layerWeights(stem, kernel: kernel))
    }

    /// Query texts' exact rows [m, n], logits [m, C] and per-group parts, or nil.
    public func loadExactRows(_ url: URL, m: Int, n: Int, classes: Int, groups: [String]) -> QueryKernel? {
        guard let f = try? SafetensorsFile(url: url), f.metadata["format"] == "tangent-exact-rows-1",
            let rows = try? f.float32("kernel", shape: [m, n]),
            let logits = try? f.float32("logits", shape: [m, classes]),
            let parts = try? groups.map({ (group: $0, values: try f.float32("part.\($0)", shape: [m, n])) })
        else { return nil }
        return QueryKernel(rows: rows, logits: logits, parts: parts)
    }

    public func saveExactRows(_ q: QueryKernel, kind: NTKKind, m: Int, n: Int, classes: Int, to url: URL) throws {
        var w = SafetensorsWriter()
        w.metadata = ["format": "tangent-exact-rows-1", "kernel": kind.rawValue]
        w.add("kernel", shape: [m, n], float32: q.rows)
        w.add("logits", shape: [m, classes], float32: q.logits)
        for p in q.parts ?? [] { w.add("part.\(p.group)", shape: [m, n], float32: p.values) }
        try prepare()
        try w.write(to: url)
    }
}
