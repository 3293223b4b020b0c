import Foundation
import TangentIO
import TangentSafetensors
import TangentTensor

/// A Hugging Face encoder's `config.json`, the fields the BERT family's forward pass uses
/// (see `BertClassifier`), read and bounded before anything is allocated.
public struct HFEncoderConfig: Sendable, Equatable {
    public let modelType: String
    public let hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int
    public let vocabSize: Int, maxPositions: Int, typeVocabSize: Int
    public let layerNormEps: Double
    public let hiddenAct: String
    /// Class names by index (`id2label`), when the checkpoint has a classification head.
    public let labels: [String]
    /// `pad_token_id`: RoBERTa-family positions start after it.
    public let padTokenID: Int

    /// The model types whose encoder and heads are implemented.
    public static let supportedTypes = ["bert", "roberta", "xlm-roberta", "camembert"]
    /// `gelu` is x Phi(x) (erf); `gelu_new` its tanh approximation.
    public static let supportedActivations = ["gelu", "gelu_new"]

    /// BERT's own layout, or the RoBERTa family's (`roberta.` names, positions offset by
    /// `pad_token_id + 1`, a dense + tanh head on `<s>`).
    public var isRoberta: Bool { modelType != "bert" }
    /// The tensor-name prefix of the encoder.
    public var prefix: String { isRoberta ? "roberta." : "bert." }
    /// The first position id of a text.
    public var firstPosition: Int { isRoberta ? padTokenID + 1 : 0 }

    public init(json: [String: Any], source: String) throws {
        func fail(_ field: String, _ why: String) -> ModelError { ModelError("\(source): '\(field)' \(why)") }
        func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int {
            guard let v = json[key] as? Int else { throw fail(key, "is missing or not an integer") }
            guard range.contains(v) else { throw fail(key, "is \(v), outside \(range.lowerBound)...\(range.upperBound)") }
            return v
        }
        guard let type = json["model_type"] as? String else { throw fail("model_type", "is missing") }
        guard HFEncoderConfig.supportedTypes.contains(type) else {
            throw fail("model_type", "is '\(type)'; supported: \(HFEncoderConfig.supportedTypes.joined(separator: ", "))")
        }
        modelType = type
        let limit = ModelConfig.maximumDimension
        hiddenSize = try int("hidden_size", 1...limit)
        layers = try int("num_hidden_layers", 0...1024)
        heads = try int("num_attention_heads", 1...limit)
        guard hiddenSize % heads == 0 else { throw fail("hidden_size", "(\(hiddenSize)) is not a multiple of num_attention_heads (\(heads))") }
        intermediateSize = try int("intermediate_size", 1...limit)
        vocabSize = try int("vocab_size", 1...limit)
        maxPositions = try int("max_position_embeddings", 1...limit)
        typeVocabSize = try int("type_vocab_size", 1...limit)
        guard let eps = (json["layer_norm_eps"] as? NSNumber)?.doubleValue, eps > 0, eps < 1 else {
            throw fail("layer_norm_eps", "is missing or not in (0, 1)")
        }
        layerNormEps = eps
        let act = json["hidden_act"] as? String ?? "gelu"
        guard HFEncoderConfig.supportedActivations.contains(act) else {
            throw fail("hidden_act", "is '\(act)'; supported: \(HFEncoderConfig.supportedActivations.joined(separator: ", "))")
        }
        hiddenAct = act
        padTokenID = json["pad_token_id"] as? Int ?? 0
        if let id2label = json["id2label"] as? [String: String] {
            let n = id2label.count
            labels = try (0..<n).map { i in
                guard let name = id2label[String(i)] else { throw fail("id2label", "lacks index \(i) of \(n)") }
                return name
            }
        } else {
            labels = []
        }
    }
}

/// A Hugging Face BERT-family sequence classifier, loaded from
/// its directory's `config.json` and `model.safetensors` (float32, or float16 and
/// bfloat16 widened to float32) under the checkpoint's
/// own tensor names: the post-LayerNorm encoder (learned absolute positions, token types)
/// with `BertForSequenceClassification`'s head (pooler dense + tanh on `[CLS]`, then
/// `classifier`) or the RoBERTa family's (`classifier.dense` + tanh on `<s>`, then
/// `classifier.out_proj`). The forward pass reuses the in-house layers on packed texts (each
/// attends only to its own tokens, as the padding mask does), so logits do not depend on
/// the batch.
public final class BertClassifier {
    public let config: HFEncoderConfig
    let weights: [String: [Float]]
    /// Per layer: q, k and v stacked into one [3H, H] weight and [3H] bias, as the packed
    /// attention takes them.
    let qkvWeight: [[Float]], qkvBias: [[Float]]

    /// Loads `directory`: its config and its weights, every expected tensor present with
    /// its shape (a bare `BertModel` lacks the head and is refused here).
    public init(directory: URL) throws {
        let configURL = directory.appendingPathComponent("config.json")
        guard let data = try? WholeFile.read(configURL), let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ModelError("\(configURL.path): missing or not a JSON object")
        }
        config = try HFEncoderConfig(json: json, source: configURL.path)
        let weightsURL = directory.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsURL.path) else {
            let bin = directory.appendingPathComponent("pytorch_model.bin")
            throw ModelError(FileManager.default.fileExists(atPath: bin.path)
                ? "\(bin.path): PyTorch pickle checkpoints are not read; convert with `model.save_pretrained(DIR, safe_serialization=True)` in transformers"
                : "\(weightsURL.path): missing")
        }
        let file = try SafetensorsFile(url: weightsURL)
        let h = config.hiddenSize, f = config.intermediateSize, e = config.prefix
        var expected: [(String, [Int])] = [
            (e + "embeddings.word_embeddings.weight", [config.vocabSize, h]),
            (e + "embeddings.position_embeddings.weight", [config.maxPositions, h]),
            (e + "embeddings.token_type_embeddings.weight", [config.typeVocabSize, h]),
            (e + "embeddings.LayerNorm.weight", [h]), (e + "embeddings.LayerNorm.bias", [h]),
        ]
        for l in 0..<config.layers {
            let p = e + "encoder.layer.\(l)."
            for m in ["query", "key", "value"] { expected += [(p + "attention.self.\(m).weight", [h, h]), (p + "attention.self.\(m).bias", [h])] }
            expected += [(p + "attention.output.dense.weight", [h, h]), (p + "attention.output.dense.bias", [h]),
                         (p + "attention.output.LayerNorm.weight", [h]), (p + "attention.output.LayerNorm.bias", [h]),
                         (p + "intermediate.dense.weight", [f, h]), (p + "intermediate.dense.bias", [f]),
                         (p + "output.dense.weight", [h, f]), (p + "output.dense.bias", [h]),
                         (p + "output.LayerNorm.weight", [h]), (p + "output.LayerNorm.bias", [h])]
        }
        let classes = config.labels.count
        guard classes >= 2 else { throw ModelError("\(configURL.path): 'id2label' names \(classes) classes; a classifier has at least 2") }
        expected += config.isRoberta
            ? [("classifier.dense.weight", [h, h]), ("classifier.dense.bias", [h]),
               ("classifier.out_proj.weight", [classes, h]), ("classifier.out_proj.bias", [classes])]
            : [(e + "pooler.dense.weight", [h, h]), (e + "pooler.dense.bias", [h]),
               ("classifier.weight", [classes, h]), ("classifier.bias", [classes])]
        guard config.maxPositions > config.firstPosition else {
            throw ModelError("\(configURL.path): 'max_position_embeddings' (\(config.maxPositions)) leaves no position after the offset \(config.firstPosition)")
        }
        let missing = expected.map(\.0).filter { file.tensors[$0] == nil }
        guard missing.isEmpty else {
            throw ModelError("\(weightsURL.path): \(missing.count) expected tensors missing, e.g. \(missing.prefix(3).joined(separator: ", "))")
        }
        var weights: [String: [Float]] = [:]
        do {
            for (name, shape) in expected { weights[name] = try file.floatsWidened(name, shape: shape) }
        } catch {
            // A shape or dtype that does not fit the config: the message names file and tensor.
            throw ModelError("\(error) (from \(configURL.lastPathComponent))")
        }
        self.weights = weights
        qkvWeight = (0..<config.layers).map { l in
            ["query", "key", "value"].flatMap { weights[e + "encoder.layer.\(l).attention.self.\($0).weight"]! }
        }
        qkvBias = (0..<config.layers).map { l in
            ["query", "key", "value"].flatMap { weights[e + "encoder.layer.\(l).attention.self.\($0).bias"]! }
        }
    }

    /// Logits [texts, classes] of token-id sequences (each framed `[CLS] ... [SEP]` or
    /// `<s> ... </s>`, at most `max_position_embeddings` minus the position offset long).
    public func logits(_ sequences: [[Int32]]) throws -> [Float] {
        let h = config.hiddenSize, f = config.intermediateSize, C = config.labels.count, e = config.prefix
        let maxTokens = config.maxPositions - config.firstPosition
        var texts: [Range<Int>] = []
        var n = 0
        for (i, s) in sequences.enumerated() {
            guard !s.isEmpty, s.count <= maxTokens else {
                throw ModelError("text \(i): \(s.count) tokens; the model takes 1 to \(maxTokens)")
            }
            if let bad = s.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
                throw ModelError("text \(i): token id \(bad) is outside the vocabulary of \(config.vocabSize)")
            }
            texts.append(n..<(n + s.count))
            n += s.count
        }
        let eps = Float(config.layerNormEps)
        var x = [Float](repeating: 0, count: n * h)
        let word = weights[e + "embeddings.word_embeddings.weight"]!, pos = weights[e + "embeddings.position_embeddings.weight"]!
        let type0 = weights[e + "embeddings.token_type_embeddings.weight"]!
        for (b, r) in texts.enumerated() {
            for (t, row) in r.enumerated() {
                let id = Int(sequences[b][t]), position = config.firstPosition + t
                for j in 0..<h { x[row * h + j] = word[id * h + j] + pos[position * h + j] + type0[j] }
            }
        }
        var mean = [Float](repeating: 0, count: n), rstd = mean
        func layerNorm(_ v: inout [Float], _ prefix: String) {
            let input = v
            LayerNorm.forward(out: &v, mean: &mean, rstd: &rstd, inp: input, weight: weights[prefix + ".weight"]!,
                              bias: weights[prefix + ".bias"]!, n: n, d: h, eps: eps)
        }
        // Products run per text (row-invariant), so a text's logits are the same bits in any batch.
        let perText = (0..<texts.count).map { $0..<($0 + 1) }
        func linear(_ inp: [Float], _ w: [Float], _ bias: [Float], i: Int, o: Int, rows: [Range<Int>]? = nil) -> [Float] {
            var out = [Float](repeating: 0, count: inp.count / i * o)
            Linear.forward(out: &out, inp: inp, weight: w, bias: bias, n: inp.count / i, i: i, o: o, rows: rows ?? texts)
            return out
        }
        layerNorm(&x, e + "embeddings.LayerNorm")
        var attOffsets: [Int] = []
        var attCount = 0
        for r in texts { attOffsets.append(attCount); attCount += config.heads * r.count * r.count }
        var att = [Float](repeating: 0, count: attCount)
        for l in 0..<config.layers {
            let p = e + "encoder.layer.\(l)."
            let qkv = linear(x, qkvWeight[l], qkvBias[l], i: h, o: 3 * h)
            var attended = [Float](repeating: 0, count: n * h)
            Attention.forward(out: &attended, att: &att, qkv: qkv, texts: texts, attOffsets: attOffsets, d: h, heads: config.heads)
            var y = linear(attended, weights[p + "attention.output.dense.weight"]!, weights[p + "attention.output.dense.bias"]!, i: h, o: h)
            for k in 0..<(n * h) { y[k] += x[k] }
            layerNorm(&y, p + "attention.output.LayerNorm")
            let pre = linear(y, weights[p + "intermediate.dense.weight"]!, weights[p + "intermediate.dense.bias"]!, i: h, o: f)
            var act = [Float](repeating: 0, count: n * f), derivative = act
            if config.hiddenAct == "gelu_new" {
                // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as transformers' NewGELU.
                let c = (2 / Float.pi).squareRoot()
                for k in 0..<(n * f) { let v = pre[k]; act[k] = 0.5 * v * (1 + Float.tanh(c * (v + 0.044715 * v * v * v))) }
            } else {
                GELU.forward(out: &act, derivative: &derivative, inp: pre, count: n * f)
            }
            var z = linear(act, weights[p + "output.dense.weight"]!, weights[p + "output.dense.bias"]!, i: f, o: h)
            for k in 0..<(n * h) { z[k] += y[k] }
            layerNorm(&z, p + "output.LayerNorm")
            x = z
        }
        // [CLS] or <s>: the first token of each text.
        let first = texts.flatMap { x[($0.lowerBound * h)..<($0.lowerBound * h + h)] }
        let (dense, out) = config.isRoberta ? ("classifier.dense", "classifier.out_proj") : (e + "pooler.dense", "classifier")
        let pooled = linear(first, weights[dense + ".weight"]!, weights[dense + ".bias"]!, i: h, o: h, rows: perText).map { Float.tanh($0) }
        return linear(pooled, weights[out + ".weight"]!, weights[out + ".bias"]!, i: h, o: C, rows: perText)
    }
}
