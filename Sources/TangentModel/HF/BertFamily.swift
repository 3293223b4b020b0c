import Foundation
import TangentData
import TangentIO
import TangentSafetensors
import TangentTensor
import TangentTokenizer

/// Hugging Face BERT-family directories (`model_type` `bert`, `roberta`, `xlm-roberta`,
/// `camembert`, `distilbert`, `electra`, `albert`): `config.json`, `model.safetensors` and the tokenizer files.
public enum BertFamilyArchitecture: ModelArchitecture {
    public static let displayName = "Hugging Face BERT family"
    public static var configValues: [String] { HFEncoderConfig.supportedTypes.map { "model_type: \($0)" } }
    public static func claims(_ json: [String: Any]) -> Bool {
        guard json["architecture"] == nil, let type = json["model_type"] as? String else { return false }
        return HFEncoderConfig.supportedTypes.contains(type)
    }

    /// The classifier type of a config's model type (ModernBERT's layers are its own).
    static func classifierType(_ config: HFEncoderConfig) -> any HFClassifier.Type {
        config.family == .modernbert ? ModernBertClassifier<Float>.self : BertClassifier<Float>.self
    }

    public static func load(directory: URL, configJSON: [String: Any], threads: Int) throws -> LoadedModel {
        let config = try HFEncoderConfig(json: configJSON, source: directory.appendingPathComponent("config.json").path)
        let model = try classifierType(config).load(directory: directory, threads: threads, newHead: nil)
        let tokenizer = try HFTokenizer.load(directory: directory, config: model.config)
        let encoder = try HFTextEncoder(tokenizer: tokenizer, directory: directory, config: model.config)
        // tangent's record of the run that trained the model (if it did) lives under one key,
        // out of transformers' way; callers see it as they see a tangent model's config.json.
        let record = configJSON["tangent"] as? [String: Any] ?? [:]
        if let recorded = record[Classifier.tokenizerFingerprintKey] as? String,
            recorded != fingerprint(encoder.identity)
        {
            throw ModelError(
                "\(encoder.source): not the tokenizer this model was trained with (its fingerprint differs from the one config.json's 'tangent' record holds)"
            )
        }
        return LoadedModel(
            model: model.asClassifier, encoder: encoder, labels: try LabelSet(names: model.labels), configJSON: record)
    }

    public static func loadForFineTuning(
        directory: URL, configJSON: [String: Any], labels: [String], maxLength: Int, seed: UInt64,
        threads: Int
    ) throws -> (LoadedModel, head: String) {
        let config = try HFEncoderConfig(json: configJSON, source: directory.appendingPathComponent("config.json").path)
        // The checkpoint's head when it classifies into exactly these labels; otherwise
        // (a bare encoder, or another task's head) a new one.
        let type = classifierType(config)
        var model: any HFClassifier
        var head = "its own classification head"
        // Whether the checkpoint has a head (with or without the encoder's prefix); errors
        // loading a head that is there are reported, not replaced by a new head.
        let output = type.headNames(config: config).output + ".weight"
        let hasHead = try SafetensorsCheckpoint(directory: directory).tensors[output] != nil
        if config.labels == labels, hasHead {
            model = try type.load(directory: directory, threads: threads, newHead: nil)
        } else {
            model = try type.load(directory: directory, threads: threads, newHead: (labels, seed))
            head =
                config.labels.isEmpty
                ? "a new classification head"
                : "a new classification head (its own classifies into \(config.labels.joined(separator: ", ")))"
            if !model.droppedTensors.isEmpty {
                let groups = Set(model.droppedTensors.map { $0.split(separator: ".").prefix(2).joined(separator: ".") })
                    .sorted()
                head +=
                    "; dropped \(model.droppedTensors.count) tensors of the checkpoint's other heads (\(groups.map { $0 + ".*" }.joined(separator: ", ")))"
            }
        }
        let tokenizer = try HFTokenizer.load(directory: directory, config: model.config)
        let encoder = try HFTextEncoder(
            tokenizer: tokenizer, directory: directory, config: model.config, maxLength: maxLength)
        return (
            LoadedModel(
                model: model.asClassifier, encoder: encoder, labels: try LabelSet(names: labels), configJSON: [:]), head
        )
    }
}

/// A Hugging Face tokenizer as the model's text encoder: framed (`[CLS] … [SEP]` or
/// `<s> … </s>`) and truncated to the tokenizer's `model_max_length`, at most what the
/// model's positions allow.
public struct HFTextEncoder: TextEncoder {
    public let tokenizer: HFTokenizer
    public let maxLength: Int
    /// The directory the tokenizer's files were read from.
    public let directory: URL
    /// The tokenizer files a directory may hold, copied as they are when saving.
    static let files = [
        "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model", "spm.model",
        "tokenizer.json", "special_tokens_map.json",
    ]

    /// The tokenizer of `directory`, truncating to `maxLength` when given, else to
    /// `tokenizer_config.json`'s `model_max_length`; at most what the positions allow.
    public init(tokenizer: HFTokenizer, directory: URL, config: HFEncoderConfig, maxLength: Int? = nil) throws {
        self.tokenizer = tokenizer
        self.directory = directory
        var limit = config.maxTokens
        if let maxLength {
            guard maxLength >= 2 else {
                throw ModelError(
                    "a maximum length of \(maxLength) tokens leaves no room for the text between its framing tokens")
            }
            self.maxLength = min(limit, maxLength)
            return
        }
        let url = directory.appendingPathComponent("tokenizer_config.json")
        if let data = try? WholeFile.read(url),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let raw = json["model_max_length"], !(raw is NSNull)
        {
            // transformers fails on a length that is not a whole number; below 2 it would
            // leave no room for the text.
            guard let m = JSONField.number(raw), m == m.rounded(), m >= 2 else {
                throw ModelError(
                    "\(url.path): 'model_max_length' is \(JSONField.typeName(raw)) (\(raw)), not a whole number of at least 2 tokens"
                )
            }
            limit = Int(min(Double(limit), m))
        }
        self.maxLength = limit
    }

    public func encode(_ text: String) throws -> [Int32] { try tokenizer.encode(text, maxLength: maxLength) }
    public var identity: Data { tokenizer.identity + Data("max_length \(maxLength)".utf8) }
    public var source: String { tokenizer.source }

    /// Copies the tokenizer files and writes `tokenizer_config.json` with
    /// `model_max_length` set to the length texts are cut to, so transformers' tokenizer
    /// (with truncation) and tangent's loader cut where this encoder does.
    public func save(into out: URL) throws {
        if out.standardizedFileURL != directory.standardizedFileURL {
            for name in HFTextEncoder.files
            where FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path) {
                try AtomicFile.write(
                    try WholeFile.read(directory.appendingPathComponent(name)), to: out.appendingPathComponent(name))
            }
        }
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        var json =
            ((try? WholeFile.read(configURL)).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] })
            ?? [:]
        json["model_max_length"] = maxLength
        if json["tokenizer_class"] == nil, case .wordPiece(let t) = tokenizer.base {
            json["tokenizer_class"] = "BertTokenizer"
            json["do_lower_case"] = t.lowercase
        }
        try AtomicFile.write(
            try JSONText.data(json),
            to: out.appendingPathComponent("tokenizer_config.json"))
    }
}

extension ClassifierModel {
    /// Weights as transformers initializes them (N(0, `range`) for matrices and tables,
    /// norm weights 1, biases 0): a pure function of `seed`, for benchmarks and tests.
    func drawInitialWeights(range: Double, seed: UInt64) {
        for (ti, t) in layout.tensors.enumerated() where !t.name.hasSuffix(".bias") {
            if t.shape.count == 1 {
                for k in t.range { parameters[k] = 1 }
                continue
            }
            let rng = CounterRNG.derive(seed, 0xbe28, UInt64(ti))
            for k in 0..<t.count { parameters[t.offset + k] = Scalar(range * rng.normal(UInt64(k))) }
        }
    }
}

extension BertClassifier {
    /// A model with random weights as transformers initializes them (`drawInitialWeights`).
    public static func initialized(
        config: HFEncoderConfig, labels: [String], seed: UInt64, threads: Int = Threads.cores
    ) throws -> BertClassifier {
        let m = try BertClassifier(config: config, labels: labels, threads: threads)
        m.drawInitialWeights(range: config.initializerRange, seed: seed)
        if config.sinusoidalPositions, let pos = m.pos {
            let t = m.layout.tensors[pos]
            Embedding.sinusoidalTable(into: m.parameters.baseAddress! + t.offset, positions: t.shape[0], d: t.shape[1])
        }
        return m
    }
}

extension ModernBertClassifier {
    /// A model with random weights as transformers initializes them (`drawInitialWeights`).
    public static func initialized(
        config: HFEncoderConfig, labels: [String], seed: UInt64, threads: Int = Threads.cores
    ) throws -> ModernBertClassifier {
        let m = try ModernBertClassifier(config: config, labels: labels, threads: threads)
        m.drawInitialWeights(range: config.initializerRange, seed: seed)
        return m
    }
}

/// A Hugging Face sequence classifier tangent computes (the BERT family's
/// `BertClassifier`, `ModernBertClassifier`): what the directory loader needs to know of it.
public protocol HFClassifier: ClassifierModel where Scalar == Float {
    /// The checkpoint's tensors, names and shapes, for `config` and `classes` outputs.
    static func layout(config: HFEncoderConfig, classes: Int) -> ParameterLayout
    /// The head's dense layer and output layer (names without `.weight`).
    static func headNames(config: HFEncoderConfig) -> (dense: String, output: String)
    /// The head's modules below the output layer, made new with it when the checkpoint lacks any.
    static func headModules(config: HFEncoderConfig) -> [String]
    /// The token table's name.
    static func tokenTableName(config: HFEncoderConfig) -> String
    init(config: HFEncoderConfig, labels: [String], threads: Int) throws
    var config: HFEncoderConfig { get }
    /// Class names, `id2label` order.
    var labels: [String] { get }
    var sourceJSON: [String: Any] { get set }
    var droppedTensors: [String] { get set }
}

extension BertClassifier: HFClassifier where T == Float {
    public static func headModules(config: HFEncoderConfig) -> [String] { [headNames(config: config).dense] }
    public static func tokenTableName(config: HFEncoderConfig) -> String {
        config.prefix + "embeddings.word_embeddings.weight"
    }
}

extension ModernBertClassifier: HFClassifier where T == Float {
    public static func headModules(config: HFEncoderConfig) -> [String] { ["head.dense", "head.norm"] }
    public static func tokenTableName(config: HFEncoderConfig) -> String { "model.embeddings.tok_embeddings.weight" }
}

extension BertClassifier where T == Float {
    /// Loads a Hugging Face directory of this classifier's model types (see `HFClassifier.load`).
    public static func load(
        directory: URL, threads: Int = Threads.cores,
        newHead: (labels: [String], seed: UInt64)? = nil
    ) throws -> BertClassifier<Float> {
        try loadDirectory(directory: directory, threads: threads, newHead: newHead)
    }

    /// Refuses, with what the names say, a checkpoint whose encoder tensors are not named
    /// as `config.json`'s model type names them: another family's prefix (`roberta.` for
    /// `bert`), or names with and without the prefix mixed.
    static func checkEncoderNames(
        _ tensors: [String: SafetensorsTensorInfo], config: HFEncoderConfig, prefix: String, source: String
    ) throws {
        let names = Array(tensors.keys)
        let families = [
            "bert.": "bert", "roberta.": "roberta (or xlm-roberta, camembert)", "distilbert.": "distilbert",
            "electra.": "electra",
            "deberta.": "deberta-v2", "albert.": "albert", "model.": "modernbert",
        ]
        func word(_ prefix: String) -> String {
            prefix + (prefix == "model." ? "embeddings.tok_embeddings.weight" : "embeddings.word_embeddings.weight")
        }
        let own =
            config.family == .modernbert ? "embeddings.tok_embeddings.weight" : "embeddings.word_embeddings.weight"
        if tensors[prefix + own] == nil, let other = families.keys.sorted().first(where: { tensors[word($0)] != nil }) {
            throw ModelError(
                "\(source): the tensors are named for model type \(families[other]!) ('\(other)…'), but config.json's 'model_type' is '\(config.modelType)' (tensors '\(config.prefix)…'); the config is not this checkpoint's"
            )
        }
        let encoderParts = [
            "embeddings.", "encoder.", "pooler.", "transformer.", "embeddings_project.", "layers.", "final_norm.",
        ]
        // DeBERTa's head pools with a bare `pooler.dense`, beside its prefixed encoder.
        let head = (config.family == .modernbert ? "head" : headNames(config: config).dense) + "."
        let bare = names.filter { n in !n.hasPrefix(head) && encoderParts.contains { n.hasPrefix($0) } }
        let prefixed = names.filter { n in encoderParts.contains { n.hasPrefix(config.prefix + $0) } }
        if let a = bare.sorted().first, let b = prefixed.sorted().first {
            throw ModelError(
                "\(source): encoder tensors are named both with and without the '\(config.prefix)' prefix (e.g. '\(a)' and '\(b)'); a checkpoint names them one way"
            )
        }
    }

    /// Loads a Hugging Face directory: `config.json` (bounded, field by field) and
    /// `model.safetensors` (float32, float16 or bfloat16; every tensor of the encoder
    /// and head by name and shape). A `…ForSequenceClassification` checkpoint brings its
    /// head and labels (`id2label`); a bare encoder (`BertModel`, names with or without
    /// the `bert.` prefix) needs `newHead`, whose weights are drawn N(0,
    /// `initializer_range`) from the seed (biases 0), and keeps its pooler if it has one.
    // One function over 80 lines on purpose: config, checkpoint names, head choice, the
    // missing/unexpected checks and the copy share the name mapping `fileName` and run once
    // in this order; split apart, each piece would need all of them passed in.
}

extension HFClassifier {
    /// The model as the commands take it.
    public var asClassifier: any ClassifierModel<Float> { self }

    /// Loads a Hugging Face directory (see `loadDirectory`).
    public static func load(directory: URL, threads: Int, newHead: (labels: [String], seed: UInt64)?) throws
        -> any HFClassifier
    {
        try loadDirectory(directory: directory, threads: threads, newHead: newHead)
    }

    static func loadDirectory(
        directory: URL, threads: Int = Threads.cores,
        newHead: (labels: [String], seed: UInt64)? = nil
    ) throws -> Self {
        let configURL = directory.appendingPathComponent("config.json")
        guard let data = try? WholeFile.read(configURL),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            throw ModelError("\(configURL.path): missing or not a JSON object")
        }
        let config = try HFEncoderConfig(json: json, source: configURL.path)
        let file = try checkpoint(in: directory)
        // A bare encoder saved on its own has no `bert.` / `roberta.` prefix.
        let e = config.prefix
        let word = tokenTableName(config: config).dropFirst(e.count)
        let filePrefix = file.tensors[e + word] == nil && file.tensors[String(word)] != nil ? "" : e
        func fileName(_ name: String) -> String { name.hasPrefix(e) ? filePrefix + name.dropFirst(e.count) : name }
        try BertClassifier<Float>.checkEncoderNames(
            file.tensors, config: config, prefix: filePrefix, source: file.source)
        let head = headNames(config: config)
        let outputNames = [head.output + ".weight", head.output + ".bias"]
        let layout = Self.layout(config: config, classes: max(2, newHead?.labels.count ?? config.labels.count))
        let headModules = Self.headModules(config: config)
        let headTensors = layout.tensors.map(\.name).filter { n in headModules.contains { n.hasPrefix($0 + ".") } }
        let labels: [String]
        if let newHead {
            labels = newHead.labels
        } else {
            try requireHead(
                file, config: config, output: head.output, names: outputNames.map(fileName), directory: directory)
            labels = config.labels
            guard labels.count >= 2 else {
                throw ModelError(
                    "\(configURL.path): 'id2label' names \(labels.count) classes; a classifier has at least 2")
            }
        }
        let model = try Self(config: config, labels: labels, threads: threads)
        // A new head: the output layer, and the modules below it when the checkpoint lacks any.
        let fresh = Set(
            newHead == nil
                ? [] : outputNames + (headTensors.allSatisfy { file.tensors[fileName($0)] != nil } ? [] : headTensors))
        let wanted = model.layout.tensors.filter { !fresh.contains($0.name) }
        let missing = wanted.map { fileName($0.name) }.filter { file.tensors[$0] == nil }
        guard missing.isEmpty else {
            throw ModelError(
                "\(file.source): \(missing.count) expected tensors missing, e.g. \(missing.prefix(3).joined(separator: ", "))"
            )
        }
        model.droppedTensors = try droppedTensors(
            file, known: Set(model.layout.tensors.map { fileName($0.name) }), config: config, fineTuning: newHead != nil
        )
        for t in wanted {
            let values: [Float]
            do { values = try file.floatsWidened(fileName(t.name), shape: t.shape) } catch {
                throw ModelError("\(error) (from \(configURL.lastPathComponent))")
            }
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw ModelError(
                    "\(file.path(of: fileName(t.name))): tensor '\(fileName(t.name))' element \(bad) is \(values[bad])")
            }
            (model.parameters.baseAddress! + t.offset).update(from: values, count: t.count)
        }
        if let newHead { model.initializeHead(fresh, seed: newHead.seed, range: config.initializerRange) }
        var source = json
        source["tangent"] = nil
        model.sourceJSON = source
        return model
    }

    /// The directory's safetensors weights (one file, or the shards its index names); a
    /// PyTorch pickle is refused with how to convert it.
    static func checkpoint(in directory: URL) throws -> SafetensorsCheckpoint {
        let bin = directory.appendingPathComponent("pytorch_model.bin")
        let hasSafetensors = ["model.safetensors", "model.safetensors.index.json"].contains {
            FileManager.default.fileExists(atPath: directory.appendingPathComponent($0).path)
        }
        guard hasSafetensors else {
            throw ModelError(
                FileManager.default.fileExists(atPath: bin.path)
                    ? "\(bin.path): PyTorch pickle checkpoints are not read; convert with `model.save_pretrained(DIR, safe_serialization=True)` in transformers"
                    : "\(directory.appendingPathComponent("model.safetensors").path): missing (a Hugging Face model directory holds its weights there, or in shards listed by model.safetensors.index.json)"
            )
        }
        return try SafetensorsCheckpoint(directory: directory)
    }

    /// Refuses a checkpoint without the classification head `names` (as stored): a bare
    /// encoder (fine-tune it first), or one whose head belongs to another model type.
    static func requireHead(
        _ file: SafetensorsCheckpoint, config: HFEncoderConfig, output: String, names: [String], directory: URL
    ) throws {
        guard !names.allSatisfy({ file.tensors[$0] != nil }) else { return }
        let other = file.tensors.keys.filter { $0.hasPrefix("classifier.") }.sorted()
        if !other.isEmpty {
            throw ModelError(
                "\(file.source): its classification head (\(other.prefix(2).joined(separator: ", "))) is laid out for another model type than config.json's '\(config.modelType)', whose head is '\(output).weight'; the config is not this checkpoint's"
            )
        }
        throw ModelError(
            "\(file.source): no classification head ('\(output).weight'); this is a bare encoder — fine-tune it with `tangent train --init \(directory.path)`, which adds one"
        )
    }

    /// The checkpoint's tensors beyond the model's (`known`, as stored) that fine-tuning
    /// drops; any other is refused.
    ///
    /// Buffers transformers saves beside the weights are ignored. Fine-tuning (a new head)
    /// drops another task's head and the pretraining heads a checkpoint ships with
    /// (BertForPreTraining's `cls.predictions` and `cls.seq_relationship`, a masked-LM's
    /// `lm_head`, ELECTRA's discriminator and generator heads, ALBERT's `predictions` and
    /// `sop_classifier`, DeBERTa's `lm_predictions` and `mask_predictions`, ModernBERT's
    /// `decoder`), as transformers does, and lists them.
    static func droppedTensors(
        _ file: SafetensorsCheckpoint, known: Set<String>, config: HFEncoderConfig, fineTuning: Bool
    ) throws -> [String] {
        let extra = file.tensors.keys.sorted().filter {
            !known.contains($0) && !$0.hasSuffix("position_ids") && !$0.hasSuffix("token_type_ids")
        }
        let droppable =
            [
                "classifier.", "cls.", "lm_head.", "discriminator_predictions.", "generator_predictions.",
                "generator_lm_head.", "predictions.", "sop_classifier.", "lm_predictions.", "mask_predictions.",
            ]
            + (config.family == .modernbert ? ["decoder."] : [])
        let dropped = fineTuning ? extra.filter { name in droppable.contains { name.hasPrefix($0) } } : []
        let unexpected = extra.filter { !dropped.contains($0) }
        guard unexpected.isEmpty else {
            throw ModelError(
                "\(file.source): \(unexpected.count) tensors this \(config.modelType) classifier does not have, e.g. \(unexpected.prefix(3).joined(separator: ", "))"
            )
        }
        return dropped
    }

    /// Draws the new head's weights (`fresh`) from the seed, N(0, range²) as transformers
    /// initializes them; a new LayerNorm (ModernBERT's head norm) starts at 1, as torch's does.
    func initializeHead(_ fresh: Set<String>, seed: UInt64, range: Double) {
        for (ti, t) in layout.tensors.enumerated() where fresh.contains(t.name) && t.name.hasSuffix(".weight") {
            if t.shape.count == 1 {
                for k in t.range { parameters[k] = 1 }
                continue
            }
            let rng = CounterRNG.derive(seed, 0xbe27, UInt64(ti))
            for k in 0..<t.count { parameters[t.offset + k] = Float(range * rng.normal(UInt64(k))) }
        }
    }
}
