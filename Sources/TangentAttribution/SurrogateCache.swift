import Foundation
import TangentTensor
import TangentData
import TangentKernels
import TangentModel
import TangentSafetensors

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

    /// Training features of `kind` from `model` for the texts with key `texts`.
    public static func featureStem(_ kind: FeatureKind, projDim: Int, seed: UInt64, projector: ProjectorChoice,
                                   model: Classifier, texts: String) -> String {
        let projected = kind.projected
        return "\(kind.rawValue)-K\(projected ? projDim : 0)-s\(projected ? seed : 0)" + (projected ? "-\(projector.tag)" : "")
            + "-\(Featurizer.modelFingerprint(model))-\(texts)"
    }

    /// The exact `kind` kernel of `model` on the texts with key `texts`.
    public static func exactStem(_ kind: NTKKind, model: Classifier, texts: String) -> String {
        "exact-\(kind.rawValue)-\(Featurizer.modelFingerprint(model))-\(texts)"
    }

    /// Several feature sources combined: TracIn's checkpoints (the last one is the model)
    /// or an ensemble's models.
    public static func combinedStem(_ stems: [String], ensemble: Bool) -> String {
        if stems.count == 1 { return stems[0] }
        return ensemble ? "ens\(stems.count)-" + fingerprint(Data(stems.joined(separator: "\n").utf8))
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
        let labels = lossLabels.map { "-labels-" + fingerprint(Data($0.map(String.init).joined(separator: ",").utf8)) } ?? ""
        return url("\(stem)\(labels)-test-\(SurrogateCache.key(texts))")
    }

    /// Creates the directory if needed.
    public func prepare() throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }
}

extension SurrogateCache {
    /// Writes a fitted surrogate with the selector's grid and rule.
    public func saveSurrogate(_ g: KernelGLM, grid: [LambdaSelector.Point], selector: LambdaSelector, to url: URL) throws {
        var w = SafetensorsWriter()
        w.metadata = ["format": "tangent-kglm-3", "lambda": String(g.lambda), "kernel_scale": String(g.kernelScale),
                      "iterations": String(g.iterations),
                      "converged": String(g.converged), "gradient_norm": String(g.gradientNorm), "selection": selector.tag]
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
    public func loadSurrogate(_ url: URL, n: Int, classes: Int, selector: LambdaSelector) throws -> (glm: KernelGLM, grid: [LambdaSelector.Point]) {
        let f = try SafetensorsFile(url: url)
        if f.metadata["format"] == "tangent-kglm-1" || f.metadata["format"] == "tangent-kglm-2" {
            throw FeatureStoreError("\(url.path): made by an older version, whose lambda was chosen on one held-out split")
        }
        guard f.metadata["format"] == "tangent-kglm-3", let lambda = Double(f.metadata["lambda"] ?? ""),
              let kernelScale = Double(f.metadata["kernel_scale"] ?? ""), kernelScale > 0, kernelScale.isFinite else {
            throw FeatureStoreError("\(url.path): not a surrogate file")
        }
        guard f.metadata["selection"] == selector.tag else {
            throw FeatureStoreError("\(url.path): its lambda was chosen by another rule (\(f.metadata["selection"] ?? "none"))")
        }
        let weights = try f.float64("weights", shape: [classes, n]), bias = try f.float64("bias", shape: [classes])
        guard weights.allSatisfy(\.isFinite), bias.allSatisfy(\.isFinite), lambda > 0, lambda.isFinite else {
            throw FeatureStoreError("\(url.path): its weights, bias or lambda hold NaN, Inf or a non-positive value")
        }
        let glm = KernelGLM(classes: classes, trainCount: n, weights: weights,
                            bias: bias, lambda: lambda, kernelScale: kernelScale,
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
