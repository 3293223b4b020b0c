import Foundation
import TangentData
import TangentIO
import TangentSafetensors
import TangentTensor
import TangentTokenizer

/// A saved model as the spec lays it out: `config.json`, `model.safetensors`,
/// `tokenizer.model` and `labels.json` in one directory.
public struct ModelDirectory {
    public static let configFile = "config.json"
    public static let weightsFile = "model.safetensors"
    public static let tokenizerFile = "tokenizer.model"
    public static let labelsFile = "labels.json"
    /// The index of a checkpoint saved in shards (`model-0000i-of-0000n.safetensors`).
    public static let shardIndexFile = "model.safetensors.index.json"
    /// Files whose presence marks a directory as a saved model.
    public static let markerFiles = [configFile, weightsFile, tokenizerFile, labelsFile, shardIndexFile]
    /// Subdirectory of per-epoch checkpoints (`epoch-K.safetensors`).
    public static let checkpointsDirectory = "checkpoints"

    /// Writes the parameters of `model` as float32 safetensors with the spec's names and
    /// shapes (PyTorch `state_dict` layout), atomically.
    public static func saveWeights<M: ClassifierModel>(
        _ model: M, to url: URL,
        metadata: [String: String] = [:]
    ) throws {
        var w = SafetensorsWriter()
        w.metadata = metadata.merging(["format": "pt"]) { a, _ in a }
        for t in model.layout.tensors {
            w.add(t.name, shape: t.shape, float32: model.parameters[t.range].map { Float($0) })
        }
        try w.write(to: url)
    }

    /// Writes the parameters of `model` into `directory` as transformers' `save_pretrained`
    /// does: one `model.safetensors` when they fit in `maxShardBytes`, else shards of at
    /// most that size (a larger tensor alone in its own), in the layout's order, and then
    /// `model.safetensors.index.json` (`weight_map`, `metadata.total_size`). Each file is
    /// written atomically, the index last; the other form's files are removed after.
    public static func saveWeights<M: ClassifierModel>(_ model: M, into directory: URL, maxShardBytes: Int) throws {
        let total = model.layout.tensors.reduce(0) { $0 + 4 * $1.count }
        let fm = FileManager.default
        func removeShards(except keep: Set<String>) throws {
            for name in (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
            where name.hasPrefix("model-") && name.hasSuffix(".safetensors") && !keep.contains(name) {
                guard unlink(directory.appendingPathComponent(name).path) == 0 else {
                    throw OutputError(
                        "\(directory.appendingPathComponent(name).path): cannot remove the old shard: \(systemErrorDescription())"
                    )
                }
            }
        }
        guard total > maxShardBytes else {
            try saveWeights(model, to: directory.appendingPathComponent(weightsFile))
            unlink(directory.appendingPathComponent(shardIndexFile).path)
            try removeShards(except: [])
            return
        }
        var shards: [[ParameterTensor]] = [[]]
        var size = 0
        for t in model.layout.tensors {
            if size > 0 && size + 4 * t.count > maxShardBytes {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(t)
            size += 4 * t.count
        }
        let n = shards.count
        var map: [String: String] = [:]
        for (i, tensors) in shards.enumerated() {
            let name = String(format: "model-%05d-of-%05d.safetensors", i + 1, n)
            var w = SafetensorsWriter()
            w.metadata = ["format": "pt"]
            for t in tensors {
                w.add(t.name, shape: t.shape, float32: model.parameters[t.range].map { Float($0) })
                map[t.name] = name
            }
            try w.write(to: directory.appendingPathComponent(name))
        }
        let index: [String: Any] = [
            "metadata": ["total_size": total, "total_parameters": model.layout.count], "weight_map": map,
        ]
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys]),
            to: directory.appendingPathComponent(shardIndexFile))
        unlink(directory.appendingPathComponent(weightsFile).path)
        try removeShards(except: Set(map.values))
    }

    /// Reads weights into `model`, checking that every tensor is present, float32, of the
    /// spec's shape, finite, and that the file holds no unknown tensors.
    public static func loadWeights<M: ClassifierModel>(_ model: M, from url: URL) throws {
        let file = try SafetensorsFile(url: url)
        let known = Set(model.layout.tensors.map(\.name))
        if let extra = file.tensors.keys.sorted().first(where: { !known.contains($0) }) {
            throw SafetensorsError.badTensor(
                path: url.path, tensor: extra, reason: "not a tensor of this model architecture")
        }
        var values = [M.Scalar](repeating: 0, count: model.layout.count)
        for t in model.layout.tensors {
            let v = try file.float32(t.name, shape: t.shape)
            if let bad = v.firstIndex(where: { !$0.isFinite }) {
                throw SafetensorsError.badTensor(path: url.path, tensor: t.name, reason: "element \(bad) is \(v[bad])")
            }
            for (k, x) in v.enumerated() { values[t.offset + k] = M.Scalar(x) }
        }
        model.setParameters(values)
    }

    /// Reads `config.json`; errors name the file and the missing or malformed field.
    public static func loadConfig(_ url: URL) throws -> ModelConfig {
        let data: Data
        do { data = try WholeFile.read(url) } catch {
            throw ModelError("\(url.path): cannot read model config: \(error)")
        }
        do {
            let c = try JSONDecoder().decode(ModelConfig.self, from: data)
            do { try c.validate() } catch let e as ModelError { throw ModelError("\(url.path): \(e.description)") }
            return c
        } catch let e as ModelError {
            throw e
        } catch let DecodingError.keyNotFound(key, _) {
            throw ModelError("\(url.path): missing field '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
            throw ModelError(
                "\(url.path): field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch let DecodingError.dataCorrupted(ctx) {
            let field = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            throw ModelError("\(url.path): \(field.isEmpty ? "not valid JSON" : "field '\(field)' is invalid")")
        }
    }

    /// Writes `config.json` atomically: the architecture keys plus `extra` keys
    /// (training hyper-parameters, data set, metrics) that loaders ignore.
    public static func saveConfig(_ config: ModelConfig, extra: [String: Any], to url: URL) throws {
        guard let base = try JSONSerialization.jsonObject(with: JSONEncoder().encode(config)) as? [String: Any] else {
            throw ModelError("\(url.path): the model configuration did not encode as a JSON object")
        }
        let merged = base.merging(extra) { a, _ in a }
        let data = try JSONSerialization.data(withJSONObject: merged, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: url)
    }
}

/// How a model's texts become token ids, framing and truncation included.
public protocol TextEncoder {
    /// The ids the model sees for `text`.
    func encode(_ text: String) throws -> [Int32]
    /// Bytes that identify the tokenizer and its settings (feature and cache fingerprints).
    var identity: Data { get }
    /// The file it was read from.
    var source: String { get }
    /// Writes the tokenizer's files (as the architecture's loader reads them) into `directory`.
    func save(into directory: URL) throws
}

/// tangent's own encoding: BOS, then the SentencePiece ids, cut to max_len.
public struct SentencePieceTextEncoder: TextEncoder {
    public let tokenizer: Tokenizer
    public let config: ModelConfig
    public func encode(_ text: String) throws -> [Int32] {
        try TextEncoding.encode(text, tokenizer: tokenizer, config: config)
    }
    public var identity: Data { tokenizer.serializedModel }
    public var source: String { tokenizer.source }
    public func save(into directory: URL) throws {
        try AtomicFile.write(
            tokenizer.serializedModel, to: directory.appendingPathComponent(ModelDirectory.tokenizerFile))
    }
}

/// A loaded model with its tokenizer and labels: what prediction needs.
public final class Classifier {
    public let model: any ClassifierModel<Float>
    public let encoder: any TextEncoder
    public let labels: LabelSet
    public let directory: URL?
    /// The raw `config.json` object (architecture plus training metadata), when loaded from disk.
    public let configJSON: [String: Any]

    /// tangent's own model, when this is one.
    public var tangentModel: TransformerClassifier<Float>? { model as? TransformerClassifier<Float> }
    /// tangent's own SentencePiece tokenizer, when this is one of its models.
    public var tokenizer: Tokenizer? { (encoder as? SentencePieceTextEncoder)?.tokenizer }

    /// One of tangent's own models with its tokenizer.
    public convenience init(
        model: TransformerClassifier<Float>, tokenizer: Tokenizer, labels: LabelSet,
        directory: URL? = nil, configJSON: [String: Any] = [:]
    ) throws {
        try Classifier.check(tokenizer: tokenizer, labels: labels, config: model.config, directory: directory)
        try self.init(
            model: model, encoder: SentencePieceTextEncoder(tokenizer: tokenizer, config: model.config), labels: labels,
            directory: directory, configJSON: configJSON)
    }

    /// Any architecture's model with its text encoder.
    public init(
        model: any ClassifierModel<Float>, encoder: any TextEncoder, labels: LabelSet,
        directory: URL? = nil, configJSON: [String: Any] = [:]
    ) throws {
        guard labels.count == model.shape.classes else {
            throw ModelError(
                "\(directory.map { "\($0.path): " } ?? "")\(labels.count) labels but the model has \(model.shape.classes) classes"
            )
        }
        self.model = model
        self.encoder = encoder
        self.labels = labels
        self.directory = directory
        self.configJSON = configJSON
    }

    /// Loads a model directory of any registered architecture (see `ModelRegistry`),
    /// checking that its parts agree with each other.
    public convenience init(directory: URL, threads: Int = Threads.cores) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw ModelError("\(directory.path): no such model directory")
        }
        let loaded = try ModelRegistry.load(directory: directory, threads: threads)
        try self.init(
            model: loaded.model, encoder: loaded.encoder, labels: loaded.labels, directory: directory,
            configJSON: loaded.configJSON)
    }

    /// Loads tangent's own model directory (`config.json` with `architecture`
    /// `TransformerClassifier`, `model.safetensors`, `tokenizer.model`, `labels.json`).
    static func loadTangent(directory: URL, configJSON json: [String: Any], threads: Int) throws -> LoadedModel {
        let configURL = directory.appendingPathComponent(ModelDirectory.configFile)
        let config = try ModelDirectory.loadConfig(configURL)
        let tokenizer = try Tokenizer(contentsOf: directory.appendingPathComponent(ModelDirectory.tokenizerFile))
        let labels = try LabelSet.load(directory.appendingPathComponent(ModelDirectory.labelsFile))
        try Classifier.check(tokenizer: tokenizer, labels: labels, config: config, directory: directory)
        // A tokenizer of the same vocabulary size but other pieces passes every shape check
        // and silently gives wrong ids; the fingerprint saved beside the weights catches it.
        if let recorded = json[Classifier.tokenizerFingerprintKey] as? String {
            let found = fingerprint(tokenizer.serializedModel)
            guard recorded == found else {
                throw ModelError(
                    "\(directory.appendingPathComponent(ModelDirectory.tokenizerFile).path): not the tokenizer this model was trained with (fingerprint \(found); \(ModelDirectory.configFile) records \(recorded))"
                )
            }
        }
        let model = try TransformerClassifier<Float>(config: config, threads: threads)
        try ModelDirectory.loadWeights(model, from: directory.appendingPathComponent(ModelDirectory.weightsFile))
        return LoadedModel(
            model: model, encoder: SentencePieceTextEncoder(tokenizer: tokenizer, config: config), labels: labels,
            configJSON: json)
    }

    private static func check(tokenizer: Tokenizer, labels: LabelSet, config: ModelConfig, directory: URL?) throws {
        let where_ = directory.map { "\($0.path): " } ?? ""
        guard tokenizer.vocabSize == config.vocabSize else {
            throw ModelError(
                "\(where_)tokenizer \(tokenizer.source) has \(tokenizer.vocabSize) pieces but the model's vocab_size is \(config.vocabSize); the tokenizer does not match the model"
            )
        }
        guard Int(tokenizer.padID) == config.padID, Int(tokenizer.bosID) == config.bosID else {
            throw ModelError(
                "\(where_)tokenizer pad/bos ids (\(tokenizer.padID), \(tokenizer.bosID)) differ from the model's (\(config.padID), \(config.bosID))"
            )
        }
        guard labels.count == config.nClasses else {
            throw ModelError(
                "\(where_)\(ModelDirectory.labelsFile) lists \(labels.count) labels but the model has n_classes \(config.nClasses)"
            )
        }
    }

    /// The `config.json` key holding the fingerprint of the tokenizer's bytes, checked on load.
    public static let tokenizerFingerprintKey = "tokenizer_fingerprint"

    /// Saves the model in its architecture's directory format: tokenizer files, weights
    /// (`model.safetensors`, the layout's names), then `config.json` with `extra` keys and
    /// the tokenizer's fingerprint, which loading checks.
    /// With `maxShardBytes`, weights above that size are saved in shards (see
    /// `ModelDirectory.saveWeights(_:into:maxShardBytes:)`; Hugging Face directories only).
    public func save(to directory: URL, extra: [String: Any] = [:], maxShardBytes: Int? = nil) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try encoder.save(into: directory)
        if let maxShardBytes {
            try ModelDirectory.saveWeights(model, into: directory, maxShardBytes: maxShardBytes)
        } else {
            try ModelDirectory.saveWeights(model, to: directory.appendingPathComponent(ModelDirectory.weightsFile))
        }
        var extra = extra
        extra[Classifier.tokenizerFingerprintKey] = fingerprint(encoder.identity)
        try model.saveConfiguration(labels: labels.names, extra: extra, into: directory)
    }

    /// Token ids of a text as the model sees it.
    public func encode(_ text: String) throws -> [Int32] { try encoder.encode(text) }

    /// Logits [B, C] of `texts`, computed in batches of `batchSize` by the network's one
    /// prediction path (`ClassifierModel.logits(sequences:)`, row-invariant).
    /// `describe(i)` names text i in the error on non-finite logits (default: its index).
    public func logits(_ texts: [String], batchSize: Int = 256, describe: ((Int) -> String)? = nil) throws -> [Float] {
        try model.logits(sequences: texts.map(encode), batchSize: batchSize) { z, start in
            try FiniteCheck.rows(z, width: model.shape.classes, stage: "logits", model: directory) {
                describe?(start + $0) ?? FiniteCheck.describe(texts[start + $0], index: start + $0 + 1)
            }
        }
    }

    /// Predictions for `texts`: label, probabilities and logits.
    public func predict(_ texts: [String], batchSize: Int = 256) throws -> [Prediction] {
        let C = model.shape.classes
        let z = try logits(texts, batchSize: batchSize)
        return texts.indices.map { i in
            let row = Array(z[(i * C)..<((i + 1) * C)])
            let p = Softmax.probabilities(row)
            let best = Softmax.argmax(p)
            return Prediction(
                text: texts[i], labelIndex: best, label: labels.names[best], probabilities: p, logits: row)
        }
    }
}

/// A model's output for one text.
public struct Prediction: Sendable, Codable, Equatable {
    public let text: String
    public let labelIndex: Int
    public let label: String
    public let probabilities: [Float]
    public let logits: [Float]
}

/// How texts become model inputs.
public enum TextEncoding {
    /// `[bos_id] + sentencepiece.encode(text)[: max_len - 1]`, as the spec's forward pass.
    public static func encode(_ text: String, tokenizer: Tokenizer, config: ModelConfig) throws -> [Int32] {
        let ids = try tokenizer.encode(text)
        return [Int32(config.bosID)] + ids.prefix(config.maxLen - 1)
    }
}
