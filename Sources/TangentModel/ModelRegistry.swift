import Foundation
import TangentData
import TangentIO
import TangentTensor

/// What loading a model directory gives: the model, how its texts become ids, its
/// labels and its raw `config.json`.
public struct LoadedModel {
    public let model: any ClassifierModel<Float>
    public let encoder: any TextEncoder
    public let labels: LabelSet
    public let configJSON: [String: Any]

    public init(
        model: any ClassifierModel<Float>, encoder: any TextEncoder, labels: LabelSet, configJSON: [String: Any]
    ) {
        self.model = model
        self.encoder = encoder
        self.labels = labels
        self.configJSON = configJSON
    }
}

/// One architecture the registry can load: it recognizes its directories by their
/// `config.json` and loads them. Adding an architecture means one such type (in its
/// own file or folder) and one line in `ModelRegistry.architectures`.
public protocol ModelArchitecture {
    /// What a user calls it in messages (`tangent TransformerClassifier`, `Hugging Face bert`).
    static var displayName: String { get }
    /// The `config.json` values it reads (`architecture` or `model_type` values).
    static var configValues: [String] { get }
    /// Whether `config.json` (already parsed) describes a model of this architecture.
    static func claims(_ json: [String: Any]) -> Bool
    /// Loads `directory`; errors name the file and field at fault.
    static func load(directory: URL, configJSON: [String: Any], threads: Int) throws -> LoadedModel
    /// Loads `directory` as the start of fine-tuning on data with `labels`: its head when
    /// its labels are these, else a new head drawn from `seed`; texts cut to `maxLength`
    /// tokens. The second value says which head it is, for the log.
    static func loadForFineTuning(
        directory: URL, configJSON: [String: Any], labels: [String], maxLength: Int, seed: UInt64,
        threads: Int
    ) throws -> (LoadedModel, head: String)
}

/// tangent's own pre-LayerNorm classifier (`architecture` `TransformerClassifier`).
public enum TangentArchitecture: ModelArchitecture {
    public static let displayName = "tangent's TransformerClassifier"
    public static let configValues = ["architecture: TransformerClassifier"]
    public static func claims(_ json: [String: Any]) -> Bool { json["architecture"] != nil }
    public static func load(directory: URL, configJSON: [String: Any], threads: Int) throws -> LoadedModel {
        try Classifier.loadTangent(directory: directory, configJSON: configJSON, threads: threads)
    }
    public static func loadForFineTuning(
        directory: URL, configJSON: [String: Any], labels: [String], maxLength: Int, seed: UInt64,
        threads: Int
    ) throws -> (LoadedModel, head: String) {
        throw ModelError(
            "\(directory.path): a tangent TransformerClassifier; --init takes a Hugging Face encoder directory (tangent's own models train from scratch with --tokenizer)"
        )
    }
}

/// Picks a directory's architecture from its `config.json`: `architecture` for
/// tangent's own models, `model_type` for Hugging Face ones.
public enum ModelRegistry {
    /// Every architecture, asked in this order.
    public static var architectures: [any ModelArchitecture.Type] {
        [TangentArchitecture.self, BertFamilyArchitecture.self]
    }

    /// Loads `directory` with the architecture its `config.json` names.
    public static func load(directory: URL, threads: Int) throws -> LoadedModel {
        let (architecture, json) = try pick(directory)
        return try architecture.load(directory: directory, configJSON: json, threads: threads)
    }

    /// Loads `directory` to fine-tune it (see `ModelArchitecture.loadForFineTuning`).
    public static func loadForFineTuning(
        directory: URL, labels: [String], maxLength: Int, seed: UInt64,
        threads: Int
    ) throws -> (LoadedModel, head: String) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw ModelError("\(directory.path): no such model directory")
        }
        let (architecture, json) = try pick(directory)
        return try architecture.loadForFineTuning(
            directory: directory, configJSON: json, labels: labels, maxLength: maxLength,
            seed: seed, threads: threads)
    }

    /// The architecture `directory`'s config.json names, and the parsed config.
    static func pick(_ directory: URL) throws -> (any ModelArchitecture.Type, [String: Any]) {
        let configURL = directory.appendingPathComponent(ModelDirectory.configFile)
        let architectureField = "'architecture' (tangent's own models: TransformerClassifier)"
        let typeField = "'model_type' (Hugging Face models: \(HFEncoderConfig.supportedTypes.joined(separator: ", ")))"
        let fields = "\(architectureField) or \(typeField)"
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw ModelError("\(directory.path): no config.json; a model directory holds one, naming \(fields)")
        }
        let data: Data
        do { data = try WholeFile.read(configURL) } catch {
            throw ModelError("\(configURL.path): cannot read: \(error)")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError("\(configURL.path): not a JSON object\(data.isEmpty ? " (the file is empty)" : "")")
        }
        guard let architecture = architectures.first(where: { $0.claims(json) }) else {
            let known = architectures.map { $0.configValues.joined(separator: ", ") }.joined(separator: "; ")
            if let type = json["model_type"] {
                throw ModelError("\(configURL.path): 'model_type' is '\(type)'; supported: \(known)")
            }
            throw ModelError("\(configURL.path): names neither \(architectureField) nor \(typeField)")
        }
        return (architecture, json)
    }
}
