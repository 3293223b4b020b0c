import Foundation
import TangentIO
import TangentSafetensors
import TangentTensor

/// A Hugging Face encoder's `config.json`, the fields the BERT family's forward pass uses
/// (see `BertClassifier`), read and bounded before anything is allocated.
public struct HFEncoderConfig: Sendable, Equatable {
    public let modelType: String
    public let hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int
    /// Width of the embedding tables (`embedding_size`): `hiddenSize`, except in ELECTRA
    /// and ALBERT, whose embeddings may be narrower and are projected to the layers
    /// (`embeddings_project`, `encoder.embedding_hidden_mapping_in`).
    public let embeddingSize: Int
    /// ALBERT's layer sharing: `num_hidden_groups` groups of `inner_group_num` layers
    /// each, whose weights every pass through the stack reuses (1 and 1 elsewhere, where
    /// each layer has its own weights).
    public let layerGroups: Int, innerLayers: Int
    public let vocabSize: Int, maxPositions: Int, typeVocabSize: Int
    public let layerNormEps: Double
    public let hiddenAct: String
    /// Class names by index (`id2label`), when the checkpoint has a classification head.
    public let labels: [String]
    /// `pad_token_id`: RoBERTa-family positions start after it.
    public let padTokenID: Int
    /// Whether config.json gives `pad_token_id` (else the model type's default).
    public let padTokenIDGiven: Bool
    /// DeBERTa-v2/v3's disentangled attention (nil in the other types).
    public let relative: RelativeAttention?
    /// Whether the embeddings add a learned absolute position table (all types but
    /// DeBERTa with `position_biased_input` false, as DeBERTa-v3).
    public let hasPositionTable: Bool
    /// The pooler's activation (`pooler_hidden_act`, DeBERTa's `ContextPooler`).
    public let poolerActivation: Activation
    /// ModernBERT's settings (nil in the other types).
    public let modern: ModernSettings?
    /// DistilBERT's `sinusoidal_pos_embds`: the position table starts as fixed sines and
    /// cosines (`Embedding.sinusoidalTable`) instead of random draws. transformers 5 loads
    /// the stored table and trains it like any weight (4.x froze it), and so does tangent.
    public let sinusoidalPositions: Bool

    /// ModernBERT's settings, as `ModernBertConfig` reads them.
    public struct ModernSettings: Sendable, Equatable {
        /// Whether the LayerNorms, attention projections, feed-forward projections and the
        /// head's dense layer have biases (`norm_bias`, `attention_bias`, `mlp_bias`, `classifier_bias`).
        public let normBias: Bool, attentionBias: Bool, mlpBias: Bool, classifierBias: Bool
        /// `classifier_pooling`: the first token's state, or the mean over the text's.
        public let meanPooling: Bool
        /// The head's activation (`classifier_activation`).
        public let headActivation: Activation
        /// Rotary bases of the global and the sliding-window layers (`rope_parameters`, or
        /// `global_rope_theta` / `local_rope_theta`).
        public let globalTheta: Double, localTheta: Double
        /// A sliding-window layer's tokens attend within this distance (`local_attention` / 2).
        public let window: Int
        /// Per layer, whether it attends globally (`layer_types`, or every
        /// `global_attn_every_n_layers`-th layer from the first).
        public let global: [Bool]
    }

    /// DeBERTa-v2/v3's relative attention settings, as `DisentangledSelfAttention` reads them.
    public struct RelativeAttention: Sendable, Equatable {
        /// `relative_attention`: whether the scores have relative terms and the encoder a
        /// relative-position table.
        public let enabled: Bool
        /// The terms `pos_att_type` names (content to position, position to content). The
        /// score scale counts them even when `enabled` is false, as transformers does.
        public let c2p: Bool, p2c: Bool
        /// `position_buckets` (log buckets when positive) and `max_relative_positions`
        /// (`max_position_embeddings` when below 1).
        public let buckets: Int, maxRelative: Int
        /// Rows of the relative table per side (`pos_ebd_size`): the table has 2 span rows.
        public var span: Int { buckets > 0 ? buckets : maxRelative }
        /// `share_att_key`: relative embeddings projected by the layer's own key and query
        /// projections (else by `pos_key_proj` / `pos_query_proj`).
        public let shareKey: Bool
        /// `norm_rel_ebd` has `layer_norm`: the table passes through `encoder.LayerNorm`.
        public let normalized: Bool
    }

    /// The model types whose encoder and heads are implemented.
    public static let supportedTypes = [
        "bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "albert", "deberta-v2", "modernbert",
    ]
    /// `gelu` is x Phi(x) (erf); `gelu_new` its tanh approximation.
    public static let supportedActivations = ["gelu", "gelu_new"]

    /// The tensor layout and head of a model type.
    public enum Family: Sendable {
        /// BERT: token types, a pooler (dense + tanh on `[CLS]`), `classifier`.
        case bert
        /// RoBERTa, XLM-R, CamemBERT: `roberta.` names, positions offset by
        /// `pad_token_id + 1`, a dense + tanh head on `<s>`.
        case roberta
        /// DistilBERT: no token types, `transformer.layer.i` names, `pre_classifier` +
        /// ReLU on `[CLS]`, then `classifier`.
        case distilbert
        /// ELECTRA: BERT's encoder under `electra.` names, embeddings of `embedding_size`
        /// projected to the layers' width when it differs, no pooler: `classifier.dense` +
        /// GELU on `[CLS]`, then `classifier.out_proj`.
        case electra
        /// ALBERT: BERT's layer under `albert.encoder.albert_layer_groups.g.albert_layers.j`
        /// names, shared by the layers of a group; embeddings of `embedding_size` mapped
        /// to the layers (`encoder.embedding_hidden_mapping_in`); BERT's pooler and head;
        /// no dropout on the feed-forward branch.
        case albert
        /// ModernBERT: pre-norm layers (`attn_norm`, none in the first; `mlp_norm`), a
        /// fused `Wqkv`, rotary positions, sliding-window attention in all but every few
        /// layers, a GeGLU feed-forward (`Wi`, `Wo`), `final_norm`, and `head` (dense,
        /// activation, LayerNorm) on the first token or the mean, then `classifier`;
        /// biases as its flags say. `model.` names.
        case modernbert
        /// DeBERTa-v2/v3: disentangled attention over relative positions (`HFEncoderConfig.RelativeAttention`),
        /// `deberta.` names with `query_proj` / `key_proj` / `value_proj`, no position table
        /// when `position_biased_input` is false, `ContextPooler` (`pooler.dense` + GELU
        /// on `[CLS]`), then `classifier`.
        case deberta

        init(modelType: String) {
            switch modelType {
            case "bert": self = .bert
            case "distilbert": self = .distilbert
            case "electra": self = .electra
            case "albert": self = .albert
            case "deberta-v2": self = .deberta
            case "modernbert": self = .modernbert
            default: self = .roberta
            }
        }
    }
    public var family: Family { Family(modelType: modelType) }
    public var isRoberta: Bool { family == .roberta }
    /// Whether the embeddings add a token-type table.
    public var hasTokenTypes: Bool { family != .distilbert && typeVocabSize > 0 }
    /// Whether the embeddings are projected to the layers' width (`embeddings_project`).
    public var projectsEmbeddings: Bool { family == .albert || embeddingSize != hiddenSize }
    /// Whether training dropout acts on the feed-forward branch (not in ALBERT's layer).
    public var feedForwardDropout: Bool { family != .albert }
    /// Layers with weights of their own (ALBERT: `num_hidden_groups` x `inner_group_num`).
    public var parameterSets: Int { family == .albert ? layerGroups * innerLayers : layers }
    /// Layers a text passes through (ALBERT: `num_hidden_layers` x `inner_group_num`).
    public var appliedLayers: Int { layers * innerLayers }
    /// The weights (group, layer within the group) that applied layer `l` uses, as
    /// transformers' AlbertTransformer picks them: group int(i / (layers / groups)); in
    /// the other types, layer l's own (group l).
    public func parameterSet(applied l: Int) -> (group: Int, inner: Int) {
        guard family == .albert else { return (l, 0) }
        let i = l / innerLayers
        return (Int((Double(i) / (Double(layers) / Double(layerGroups))).rounded(.towardZero)), l % innerLayers)
    }
    /// The tensor-name prefix of the encoder.
    public var prefix: String {
        switch family {
        case .bert: return "bert."
        case .roberta: return "roberta."
        case .distilbert: return "distilbert."
        case .electra: return "electra."
        case .albert: return "albert."
        case .deberta: return "deberta."
        case .modernbert: return "model."
        }
    }
    /// The first position id of a text.
    public var firstPosition: Int { isRoberta ? padTokenID + 1 : 0 }
    /// The longest text the position table leaves room for, framing included.
    public var maxTokens: Int { maxPositions - firstPosition }
    /// The id packed batches drop: none. Texts come unpadded from the tokenizer, and a
    /// padding token written in the text itself is attended to, as transformers'
    /// attention mask does (see `BertClassifier.positionIDs` for its position).
    public var packedPadID: Int32 { -1 }
    /// The feed-forward activation.
    public enum Activation: Sendable { case erf, tanh }
    public var activation: Activation { hiddenAct == "gelu_new" ? .tanh : .erf }
    /// The standard deviation of freshly initialized weights (`initializer_range`).
    public let initializerRange: Double

    /// The fields that define what the model computes, as sorted JSON (for fingerprints).
    public var identity: Data {
        var fields: [String: Any] = [
            "model_type": modelType, "hidden_size": hiddenSize, "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": intermediateSize, "vocab_size": vocabSize, "max_position_embeddings": maxPositions,
            "type_vocab_size": typeVocabSize, "layer_norm_eps": layerNormEps, "hidden_act": hiddenAct,
            "pad_token_id": padTokenID,
        ]
        // Only where the field exists, so that the other types' fingerprints stay as they were.
        if family == .electra || family == .albert { fields["embedding_size"] = embeddingSize }
        if family == .albert {
            fields["num_hidden_groups"] = layerGroups
            fields["inner_group_num"] = innerLayers
        }
        if sinusoidalPositions { fields["sinusoidal_pos_embds"] = true }
        if let r = relative {
            fields["relative_attention"] = r.enabled
            fields["pos_att_type"] = (r.c2p ? ["c2p"] : []) + (r.p2c ? ["p2c"] : [])
            fields["position_buckets"] = r.buckets
            fields["max_relative_positions"] = r.maxRelative
            fields["share_att_key"] = r.shareKey
            fields["norm_rel_ebd"] = r.normalized ? "layer_norm" : "none"
            fields["position_biased_input"] = hasPositionTable
            fields["pooler_hidden_act"] = poolerActivation == .tanh ? "gelu_new" : "gelu"
        }
        if let m = modern {
            fields["norm_bias"] = m.normBias
            fields["attention_bias"] = m.attentionBias
            fields["mlp_bias"] = m.mlpBias
            fields["classifier_bias"] = m.classifierBias
            fields["classifier_pooling"] = m.meanPooling ? "mean" : "cls"
            fields["classifier_activation"] = m.headActivation == .tanh ? "gelu_new" : "gelu"
            fields["global_rope_theta"] = m.globalTheta
            fields["local_rope_theta"] = m.localTheta
            fields["local_attention"] = 2 * m.window
            fields["layer_types"] = m.global.map { $0 ? "full_attention" : "sliding_attention" }
        }
        return (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data()
    }

    /// Writes `config.json` as transformers reads it: the source's fields (or, for a model
    /// made from scratch, `config`'s), `architectures`, `id2label`, `label2id`, and
    /// tangent's run record under the `tangent` key; floats stay floats (`JSONText`).
    static func save(
        source: [String: Any], config: HFEncoderConfig, classificationClass: String, labels: [String],
        extra: [String: Any], into directory: URL
    ) throws {
        var json = source
        if json.isEmpty { json = try JSONSerialization.jsonObject(with: config.identity) as? [String: Any] ?? [:] }
        json["architectures"] = [classificationClass]
        json["id2label"] = Dictionary(uniqueKeysWithValues: labels.enumerated().map { (String($0.offset), $0.element) })
        json["label2id"] = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($0.element, $0.offset) })
        json["num_labels"] = nil
        json["tangent"] = extra
        try AtomicFile.write(try JSONText.data(json), to: directory.appendingPathComponent("config.json"))
    }

    /// Parameters of the encoder and a head of `classes` outputs.
    public func parameterCount(classes: Int) -> Double {
        let h = Double(hiddenSize)
        let f = Double(intermediateSize)
        let L = Double(parameterSets)
        let e = Double(embeddingSize)
        var relativeTable = 0.0
        var relativeProjections = 0.0
        if let r = relative, r.enabled {
            relativeTable = Double(2 * r.span) * h + 2 * h
            if !r.shareKey { relativeProjections = L * Double((r.c2p ? 1 : 0) + (r.p2c ? 1 : 0)) * (h * h + h) }
        }
        if let m = modern {
            let nb = m.normBias ? 1.0 : 0
            let ab = m.attentionBias ? 1.0 : 0
            let mb = m.mlpBias ? 1.0 : 0
            let layer = (4 * h * h + 3 * h * f) + ab * 4 * h + mb * (2 * f + h) + 2 * h * (1 + nb)
            return Double(vocabSize) * h + 2 * h * (1 + nb) + L * layer - h * (1 + nb) + h * h
                + (m.classifierBias ? h : 0)
                + h * (1 + nb) + Double(classes) * (h + 1)
        }
        return (Double(vocabSize + (hasPositionTable ? maxPositions : 0) + typeVocabSize) + 2) * e
            + (projectsEmbeddings ? e * h + h : 0)
            + L * (4 * h * h + 2 * h * f + 9 * h + f) + h * h + h + Double(classes) * (h + 1) + relativeTable
            + relativeProjections
    }

    /// Bytes fine-tuning needs: parameters, gradients and AdamW's two moments, plus one
    /// batch's saved activations at `maxTokens` tokens per text.
    public func trainingBytes(batch: Int, classes: Int) -> Double {
        let T = Double(maxTokens)
        let h = Double(hiddenSize)
        let f = Double(intermediateSize)
        let L = Double(appliedLayers)
        let H = Double(heads)
        let perText = 4 * T * (L * (12 * h + 2 * f + H * T) + 4 * h)
        // DeBERTa keeps each layer's projected relative table (2 span rows, keys and queries).
        let relative = relative.map { $0.enabled ? 4 * L * 4 * Double($0.span) * h : 0 } ?? 0
        return 16 * parameterCount(classes: classes) + Double(batch) * perText + relative
    }

    /// Class names by index from `id2label` (none when it is absent): every index from 0,
    /// each a string, no name twice.
    static func labels(_ raw: Any?, fail: (String, String) -> ModelError) throws -> [String] {
        guard let raw, !(raw is NSNull) else { return [] }
        guard let id2label = raw as? [String: Any] else {
            throw fail("id2label", "is \(JSONField.typeName(raw)), not an object of index to label")
        }
        let n = id2label.count
        let labels = try (0..<n).map { i in
            guard let value = id2label[String(i)] else { throw fail("id2label", "lacks index \(i) of \(n)") }
            guard let name = value as? String else {
                throw fail("id2label", "gives index \(i) \(JSONField.typeName(value)) (\(value)), not a label name")
            }
            return name
        }
        var seen: [String: Int] = [:]
        for (i, name) in labels.enumerated() {
            if let j = seen[name] {
                throw fail("id2label", "names '\(name)' twice (indices \(j) and \(i)); each class needs its own label")
            }
            seen[name] = i
        }
        return labels
    }

    public init(json: [String: Any], source: String) throws {
        let fields = ConfigFields(json: json, source: source)
        guard let type = json["model_type"] as? String else { throw fields.fail("model_type", "is missing") }
        guard HFEncoderConfig.supportedTypes.contains(type) else {
            throw fields.fail(
                "model_type", "is '\(type)'; supported: \(HFEncoderConfig.supportedTypes.joined(separator: ", "))")
        }
        modelType = type
        let family = Family(modelType: type)
        let keys = SizeKeys(family: family, distil: type == "distilbert")
        let limit = ModelConfig.maximumDimension
        hiddenSize = try fields.int(keys.hidden, 1...limit)
        layers = try fields.int(keys.layers, 0...1024)
        heads = try fields.int(keys.heads, 1...limit)
        guard hiddenSize % heads == 0 else {
            throw fields.fail(keys.hidden, "(\(hiddenSize)) is not a multiple of \(keys.heads) (\(heads))")
        }
        intermediateSize = try fields.int(keys.feedForward, 1...limit)
        // ELECTRA's and ALBERT's own defaults when a field is absent, as their configs in transformers.
        let factorized = family == .electra || family == .albert
        embeddingSize = factorized ? try fields.int("embedding_size", 1...limit, default: 128) : hiddenSize
        layerGroups = family == .albert ? try fields.int("num_hidden_groups", 1...max(1, layers), default: 1) : 1
        innerLayers = family == .albert ? try fields.int("inner_group_num", 1...64, default: 1) : 1
        vocabSize = try fields.int("vocab_size", 1...limit)
        maxPositions = try fields.int("max_position_embeddings", 1...limit)
        if family == .deberta {
            (relative, hasPositionTable) = try HFEncoderConfig.debertaFields(
                fields, maxPositions: maxPositions, hidden: hiddenSize, heads: heads)
        } else {
            relative = nil
            hasPositionTable = family != .modernbert
        }
        sinusoidalPositions = keys.distil && JSONField.boolean(json["sinusoidal_pos_embds"]) == true
        modern =
            family == .modernbert
            ? try HFEncoderConfig.modernFields(fields, layers: layers, hidden: hiddenSize, heads: heads) : nil
        (typeVocabSize, layerNormEps) = try HFEncoderConfig.normalization(fields, family: family, distil: keys.distil)
        hiddenAct = try fields.activationName(keys.activation, default: family == .albert ? "gelu_new" : "gelu")
        poolerActivation = family == .deberta ? try fields.activation("pooler_hidden_act") : .erf
        try HFEncoderConfig.refuseUnsupported(fields)
        (padTokenID, padTokenIDGiven) = try HFEncoderConfig.padding(fields, family: family, vocabSize: vocabSize)
        // RoBERTa-family positions start after the padding id: the table must hold it and
        // a text of at least two tokens beyond it.
        let first = family == .roberta ? padTokenID + 1 : 0
        guard maxPositions >= first + 2 else {
            let start = "\(first)\(family == .roberta ? " (pad_token_id \(padTokenID) + 1)" : "")"
            throw fields.fail(
                "max_position_embeddings",
                "is \(maxPositions), which leaves no room for a text: positions start at \(start) and a text takes at least 2"
            )
        }
        initializerRange = try fields.fraction("initializer_range", default: 0.02)
        labels = try HFEncoderConfig.labels(json["id2label"], fail: fields.fail)
    }

    /// The names a model type gives its sizes: DistilBERT's own, ModernBERT's activation key,
    /// BERT's for the rest.
    struct SizeKeys {
        let distil: Bool
        let hidden, layers, heads, feedForward, activation: String

        init(family: Family, distil: Bool) {
            self.distil = distil
            (hidden, layers, heads, feedForward) =
                distil
                ? ("dim", "n_layers", "n_heads", "hidden_dim")
                : ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
            activation = distil ? "activation" : family == .modernbert ? "hidden_activation" : "hidden_act"
        }
    }

    /// Token types and the LayerNorm epsilon, with each model type's names and defaults.
    static func normalization(_ fields: ConfigFields, family: Family, distil: Bool) throws -> (
        types: Int, epsilon: Double
    ) {
        let limit = ModelConfig.maximumDimension
        switch family {
        case .modernbert:
            // ModernBertConfig's names and defaults: no token types, norm_eps 1e-5.
            return (0, try fields.fraction("norm_eps", default: 1e-5))
        case .deberta:
            // DebertaV2Config's defaults: no token types, epsilon 1e-7.
            return (
                try fields.int("type_vocab_size", 0...limit, default: 0),
                try fields.fraction("layer_norm_eps", default: 1e-7)
            )
        default:
            guard distil else {
                return (
                    try fields.int("type_vocab_size", 1...limit), try fields.fraction("layer_norm_eps", default: nil)
                )
            }
            // DistilBERT fixes its LayerNorm epsilon at 1e-12 and has no token types.
            if let v = fields.value("sinusoidal_pos_embds"), JSONField.boolean(v) == nil {
                throw fields.fail(
                    "sinusoidal_pos_embds", "is \(JSONField.typeName(v)) (\(JSONField.text(v))), not true or false")
            }
            return (0, 1e-12)
        }
    }

    /// Fields whose other values would make a model this one does not compute: relative
    /// positions of the BERT kind, and heads other than softmax over the classes.
    static func refuseUnsupported(_ fields: ConfigFields) throws {
        if let kind = fields.value("position_embedding_type"), kind as? String != "absolute" {
            throw fields.fail(
                "position_embedding_type", "is \(kind); only learned absolute positions ('absolute') are supported")
        }
        // Only softmax over classes is implemented: multi-label (sigmoid per class) and
        // regression heads would be reported as something they are not.
        if let problem = fields.value("problem_type"), problem as? String != "single_label_classification" {
            throw fields.fail(
                "problem_type",
                "is \(problem); only single_label_classification (softmax over the classes) is supported")
        }
    }

    /// The padding token id (each family's default when absent) and whether it was given.
    static func padding(_ fields: ConfigFields, family: Family, vocabSize: Int) throws -> (id: Int, given: Bool) {
        let pad = fields.value("pad_token_id")
        if let pad, JSONField.integer(pad) == nil {
            throw fields.fail("pad_token_id", "is \(JSONField.typeName(pad)) (\(pad)), not a token id")
        }
        let id =
            pad.flatMap(JSONField.integer)
            ?? (family == .roberta ? 1 : family == .modernbert ? min(50283, vocabSize - 1) : 0)
        guard (0..<vocabSize).contains(id) else {
            throw fields.fail("pad_token_id", "is \(id), outside the vocabulary of \(vocabSize)")
        }
        return (id, pad != nil)
    }

    /// ModernBERT's flags, head, rotary bases and layer types, bounded; rotary scalings other
    /// than the default and sizes transformers would compute otherwise are refused by field.
    static func modernFields(_ fields: ConfigFields, layers: Int, hidden: Int, heads: Int) throws -> ModernSettings {
        let json = fields.json
        let fail = fields.fail
        func number(_ v: Any?, _ key: String, _ fallback: Double) throws -> Double {
            guard let v, !(v is NSNull) else { return fallback }
            guard let x = JSONField.number(v), x > 1, x < 1e12 else {
                throw fail(key, "is \(JSONField.text(v)), not a rotary base above 1")
            }
            return x
        }
        if let v = json["head_dim"], !(v is NSNull), JSONField.integer(v) != hidden / heads {
            throw fail(
                "head_dim",
                "is \(JSONField.text(v)); only hidden_size / num_attention_heads (\(hidden / heads)) is supported")
        }
        guard (hidden / heads) % 2 == 0 else {
            throw fail(
                "num_attention_heads",
                "gives heads of \(hidden / heads) dimensions; rotary positions need an even number")
        }
        guard let pooling = (json["classifier_pooling"] ?? "cls") as? String, ["cls", "mean"].contains(pooling) else {
            throw fail("classifier_pooling", "is \(JSONField.text(json["classifier_pooling"])); supported: cls, mean")
        }
        let types: [Bool]
        if let raw = json["layer_types"], !(raw is NSNull) {
            guard let list = raw as? [Any], list.count == layers,
                list.allSatisfy({ ($0 as? String).map(["full_attention", "sliding_attention"].contains) == true })
            else {
                throw fail("layer_types", "is not a list of \(layers) entries 'full_attention' or 'sliding_attention'")
            }
            types = list.map { ($0 as! String) == "full_attention" }
        } else {
            var every = 3
            if let v = json["global_attn_every_n_layers"], !(v is NSNull) {
                guard let n = JSONField.integer(v), n >= 1 else {
                    throw fail(
                        "global_attn_every_n_layers", "is \(JSONField.text(v)), not a whole number of at least 1")
                }
                every = n
            }
            types = (0..<layers).map { $0 % every == 0 }
        }
        let rope = json["rope_parameters"] as? [String: Any]
        func theta(_ type: String, legacy: String, _ fallback: Double) throws -> Double {
            if let p = rope?[type] as? [String: Any] {
                if let kind = p["rope_type"], !(kind is NSNull), kind as? String != "default" {
                    throw fail(
                        "rope_parameters",
                        "gives \(type) rope_type \(JSONField.text(kind)); only 'default' rotary positions are supported"
                    )
                }
                return try number(p["rope_theta"], "rope_parameters.\(type).rope_theta", fallback)
            }
            return try number(json[legacy], legacy, fallback)
        }
        if let scaling = json["rope_scaling"], !(scaling is NSNull) {
            throw fail("rope_scaling", "is set; only default rotary positions are supported")
        }
        let local = json["local_attention"] == nil ? 128 : JSONField.integer(json["local_attention"]) ?? -1
        guard local >= 0, local <= ModelConfig.maximumDimension else {
            throw fail(
                "local_attention",
                "is \(JSONField.text(json["local_attention"])), not a window of 0 to \(ModelConfig.maximumDimension) tokens"
            )
        }
        return ModernSettings(
            normBias: try fields.flag("norm_bias", default: false),
            attentionBias: try fields.flag("attention_bias", default: false),
            mlpBias: try fields.flag("mlp_bias", default: false),
            classifierBias: try fields.flag("classifier_bias", default: false), meanPooling: pooling == "mean",
            headActivation: try fields.activation("classifier_activation"),
            globalTheta: try theta("full_attention", legacy: "global_rope_theta", 160_000),
            localTheta: try theta("sliding_attention", legacy: "local_rope_theta", 10_000),
            window: local / 2, global: types)
    }

    /// DeBERTa-v2/v3's relative attention and `position_biased_input`, bounded; what
    /// transformers would compute differently (a convolution after the first layer,
    /// factorized embeddings, other head or pooler widths) is refused by field.
    static func debertaFields(
        _ fields: ConfigFields, maxPositions: Int, hidden: Int, heads: Int
    ) throws -> (RelativeAttention, positions: Bool) {
        let json = fields.json
        let fail = fields.fail
        if let conv = JSONField.integer(json["conv_kernel_size"]), conv > 0 {
            throw fail(
                "conv_kernel_size",
                "is \(conv); DeBERTa-v2's convolution after the first layer is not supported (DeBERTa-v3 has none)")
        }
        for (key, want) in [
            ("embedding_size", hidden), ("pooler_hidden_size", hidden), ("attention_head_size", hidden / heads),
        ] {
            if let v = json[key], !(v is NSNull), JSONField.integer(v) != want {
                throw fail(
                    key,
                    "is \(JSONField.text(v)); only \(want) (\(key == "attention_head_size" ? "hidden_size / num_attention_heads" : "hidden_size")) is supported"
                )
            }
        }
        // pos_att_type: "p2c|c2p" or a list, as DebertaV2Config splits it; other entries
        // are ignored, as transformers ignores them.
        var types: [String] = []
        if let raw = json["pos_att_type"], !(raw is NSNull) {
            if let text = raw as? String {
                types = text.lowercased().split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            } else if let list = raw as? [Any], list.allSatisfy({ $0 is String }) {
                types = list.map { ($0 as! String) }
            } else {
                throw fail(
                    "pos_att_type",
                    "is \(JSONField.typeName(raw)), not a list of 'c2p' / 'p2c' or a string joining them with '|'")
            }
        }
        guard let norm = (json["norm_rel_ebd"] ?? "none") as? String else {
            throw fail(
                "norm_rel_ebd", "is \(JSONField.typeName(json["norm_rel_ebd"])), not a string such as 'layer_norm'")
        }
        let buckets = try fields.whole("position_buckets", default: -1)
        var maxRelative = try fields.whole("max_relative_positions", default: -1)
        if maxRelative < 1 { maxRelative = maxPositions }
        let limit = ModelConfig.maximumDimension
        guard buckets <= limit / 2 else { throw fail("position_buckets", "is \(buckets), above \(limit / 2)") }
        guard maxRelative <= limit / 2 else {
            throw fail("max_relative_positions", "is \(maxRelative), above \(limit / 2)")
        }
        if buckets > 0, buckets < 2 || maxRelative < 2 {
            throw fail(
                "position_buckets",
                "is \(buckets) with max_relative_positions \(maxRelative); log buckets need at least 2 of each")
        }
        // The log buckets divide by log((max_relative_positions - 1) / (position_buckets / 2)).
        if buckets > 0, maxRelative - 1 <= buckets / 2 {
            throw fail(
                "max_relative_positions",
                "is \(maxRelative), at most position_buckets / 2 + 1 (\(buckets / 2 + 1)): log buckets need it larger")
        }
        let relative = RelativeAttention(
            enabled: try fields.flag("relative_attention", default: false), c2p: types.contains("c2p"),
            p2c: types.contains("p2c"),
            buckets: buckets, maxRelative: maxRelative, shareKey: try fields.flag("share_att_key", default: false),
            normalized: norm.lowercased().split(separator: "|").contains {
                $0.trimmingCharacters(in: .whitespaces) == "layer_norm"
            })
        return (relative, try fields.flag("position_biased_input", default: true))
    }
}
