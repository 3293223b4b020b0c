import Foundation
import TangentData
import TangentKernels
import TangentModel

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
            + "-\(Featurizer.modelFingerprint(model.model))-\(texts)"
    }

    /// The exact `kind` kernel of `model` on the texts with key `texts`.
    public static func exactStem(_ kind: NTKKind, model: Classifier, texts: String) -> String {
        "exact-\(kind.rawValue)-\(Featurizer.modelFingerprint(model.model))-\(texts)"
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
