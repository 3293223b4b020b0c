import Foundation
import TangentIO
import TangentTensor

/// A BERT-family sequence classifier (`bert`, `roberta`, `xlm-roberta`, `camembert`,
/// `distilbert`, `electra`, `albert`, `deberta-v2`) with a hand-written backward pass: the post-LayerNorm encoder of `transformers`
/// (word + learned absolute position + token-type embeddings, LayerNorm; per layer
/// self-attention, residual, LayerNorm, GELU feed-forward, residual, LayerNorm), then the
/// head: BERT's pooler (dense + tanh on `[CLS]`) and `classifier`, the RoBERTa family's
/// `classifier.dense` + tanh on `<s>` and `classifier.out_proj`, DistilBERT's
/// `pre_classifier` + ReLU, or ELECTRA's `classifier.dense` + GELU. ELECTRA's and ALBERT's
/// embeddings may be narrower than the layers and are projected to them; ALBERT's layers
/// share their weights (`HFEncoderConfig.parameterSet`): a shared tensor's gradient is the
/// sum over the layers that use it. DeBERTa-v2/v3 attends with relative terms
/// (`DisentangledAttention`; see `DebertaRelative.swift`) and pools with `ContextPooler`.
///
/// Parameters carry the checkpoint's own names, in its order, so weights save as a
/// `state_dict` that `transformers` loads. Texts are packed (each attends to its own
/// tokens, as the padding mask does) and all have token type 0, as a single-text input.
/// Training dropout (`DropoutConfig`) acts on the embeddings, both residual branches and
/// the classifier input, as `hidden_dropout_prob` does; attention probabilities are not
/// dropped.
public final class BertClassifier<T: BLASScalar>: ClassifierModel, ShardPass {
    let passes: ShardedPasses<T>
    public typealias Scalar = T
    public let config: HFEncoderConfig
    /// Class names, `id2label` order.
    public let labels: [String]
    /// The `config.json` it was loaded from (tangent's own `tangent` record left out), kept
    /// so that a saved directory carries every field transformers reads.
    public var sourceJSON: [String: Any] = [:]
    /// Tensors of the checkpoint that loading left out (pretraining or another task's
    /// heads, when fine-tuning with a new head).
    public var droppedTensors: [String] = []

    struct LayerIndices {
        let q, qb, k, kb, v, vb, ao, aob, ln1w, ln1b, fi, fib, fo, fob, ln2w, ln2b: Int
        /// DeBERTa: the projections of the relative table for the c2p (keys) and p2c
        /// (queries) terms: the layer's own key and query, or `pos_key_proj` /
        /// `pos_query_proj` (nil: the term is off).
        var relativeKey: (w: Int, b: Int)?, relativeQuery: (w: Int, b: Int)?
    }
    let layerIndices: [LayerIndices]
    let word, embLNw, embLNb, poolw, poolb, headw, headb: Int
    /// The position table (none in DeBERTa without `position_biased_input`).
    let pos: Int?
    /// DeBERTa's relative-position table and its LayerNorm (when `norm_rel_ebd` asks).
    let relativeTable: (table: Int, norm: (w: Int, b: Int)?)?
    /// The token-type table (none in DistilBERT).
    let type: Int?
    /// The projection of narrow embeddings to the layers' width (ELECTRA's `embeddings_project`).
    let projection: (w: Int, b: Int)?

    public var architecture: String { "hf-" + config.modelType }
    public var tokenTableIndex: Int { word }
    public var shape: ModelShape {
        ModelShape(
            classes: labels.count, width: config.hiddenSize, maxTokens: config.maxTokens, padID: config.packedPadID,
            tokenWidth: config.embeddingSize)
    }
    public var configurationData: Data { config.identity + Data(labels.joined(separator: "\u{1F}").utf8) }

    /// The checkpoint's tensors with their groups (`embeddings`, `encoder.layer.i`,
    /// `pooler`, `classifier`) and weight-decay flags (not biases or LayerNorm weights,
    /// as transformers' Trainer).
    public static func layout(config c: HFEncoderConfig, classes: Int) -> ParameterLayout {
        let h = c.hiddenSize
        let f = c.intermediateSize
        let e = c.prefix
        let E = c.embeddingSize
        var list: [(name: String, shape: [Int], group: String, decays: Bool)] = []
        func add(_ group: String, _ name: String, _ shape: [Int]) {
            list.append((name, shape, group, !name.hasSuffix(".bias") && !isLayerNorm(name)))
        }
        add("embeddings", e + "embeddings.word_embeddings.weight", [c.vocabSize, E])
        if c.hasPositionTable { add("embeddings", e + "embeddings.position_embeddings.weight", [c.maxPositions, E]) }
        if c.hasTokenTypes { add("embeddings", e + "embeddings.token_type_embeddings.weight", [c.typeVocabSize, E]) }
        add("embeddings", e + "embeddings.LayerNorm.weight", [E])
        add("embeddings", e + "embeddings.LayerNorm.bias", [E])
        if c.projectsEmbeddings {
            let (group, name) = projectionName(config: c)
            add(group, name + ".weight", [h, E])
            add(group, name + ".bias", [h])
        }
        for l in 0..<c.parameterSets {
            let names = layerNames(config: c, set: l)
            let g = names.group
            // DeBERTa's own projections of the relative table (when `share_att_key` is off)
            // follow the value projection, as DisentangledSelfAttention registers them.
            let relative = relativeProjectionNames(config: c, set: l)
            let tensors =
                [(names.q, [h, h]), (names.k, [h, h]), (names.v, [h, h])] + relative.map { ($0, [h, h]) }
                + [(names.ao, [h, h]), (names.ln1, [h]), (names.fi, [f, h]), (names.fo, [h, f]), (names.ln2, [h])]
            for (name, shape) in tensors {
                add(g, name + ".weight", shape)
                add(g, name + ".bias", [shape[0]])
            }
        }
        if let r = c.relative, r.enabled {
            add("encoder.rel_embeddings", e + "encoder.rel_embeddings.weight", [2 * r.span, h])
            if r.normalized {
                add("encoder.rel_embeddings", e + "encoder.LayerNorm.weight", [h])
                add("encoder.rel_embeddings", e + "encoder.LayerNorm.bias", [h])
            }
        }
        let head = headNames(config: c)
        let denseGroup =
            [.bert, .albert, .deberta].contains(c.family)
            ? "pooler" : c.family == .distilbert ? "pre_classifier" : "classifier"
        add(denseGroup, head.dense + ".weight", [h, h])
        add(denseGroup, head.dense + ".bias", [h])
        add("classifier", head.output + ".weight", [classes, h])
        add("classifier", head.output + ".bias", [classes])
        return ParameterLayout(list)
    }

    /// Whether a tensor is a LayerNorm's (BERT's `LayerNorm`, DistilBERT's `*_layer_norm`).
    static func isLayerNorm(_ name: String) -> Bool { name.contains("LayerNorm") || name.contains("layer_norm") }

    /// The projection of the embeddings to the layers' width, and its group.
    static func projectionName(config c: HFEncoderConfig) -> (group: String, name: String) {
        let g = c.family == .albert ? "encoder.embedding_hidden_mapping_in" : "embeddings_project"
        return (g, c.prefix + g)
    }

    /// The names (without `.weight` / `.bias`) of the modules of the layer with weights
    /// `l` (a layer, or in ALBERT a group's inner layer: group l / inner_group_num), and
    /// its group.
    static func layerNames(config c: HFEncoderConfig, set l: Int)
        -> (
            group: String, q: String, k: String, v: String, ao: String, ln1: String, fi: String, fo: String, ln2: String
        )
    {
        if c.family == .albert {
            let g = "encoder.albert_layer_groups.\(l / c.innerLayers)"
            let p = c.prefix + g + ".albert_layers.\(l % c.innerLayers)."
            return (
                g, p + "attention.query", p + "attention.key", p + "attention.value", p + "attention.dense",
                p + "attention.LayerNorm",
                p + "ffn", p + "ffn_output", p + "full_layer_layer_norm"
            )
        }
        if c.family == .distilbert {
            let g = "transformer.layer.\(l)"
            let p = c.prefix + g + "."
            return (
                g, p + "attention.q_lin", p + "attention.k_lin", p + "attention.v_lin", p + "attention.out_lin",
                p + "sa_layer_norm",
                p + "ffn.lin1", p + "ffn.lin2", p + "output_layer_norm"
            )
        }
        let g = "encoder.layer.\(l)"
        let p = c.prefix + g + "."
        let s = c.family == .deberta ? "_proj" : ""
        return (
            g, p + "attention.self.query" + s, p + "attention.self.key" + s, p + "attention.self.value" + s,
            p + "attention.output.dense",
            p + "attention.output.LayerNorm", p + "intermediate.dense", p + "output.dense", p + "output.LayerNorm"
        )
    }

    /// DeBERTa's `pos_key_proj` and `pos_query_proj` of layer `l`, for the terms that are
    /// on, when the relative table is not projected by the layer's own key and query.
    static func relativeProjectionNames(config c: HFEncoderConfig, set l: Int) -> [String] {
        guard let r = c.relative, r.enabled, !r.shareKey else { return [] }
        let p = c.prefix + "encoder.layer.\(l).attention.self."
        return (r.c2p ? [p + "pos_key_proj"] : []) + (r.p2c ? [p + "pos_query_proj"] : [])
    }

    /// The names of the head's tensors (the pooler's or `classifier.dense`, then the output layer).
    public static func headNames(config c: HFEncoderConfig) -> (dense: String, output: String) {
        switch c.family {
        case .bert: return (c.prefix + "pooler.dense", "classifier")
        case .roberta, .electra: return ("classifier.dense", "classifier.out_proj")
        case .albert: return (c.prefix + "pooler", "classifier")
        case .deberta: return ("pooler.dense", "classifier")
        case .modernbert: return ModernBertClassifier<T>.headNames(config: c)
        case .distilbert: return ("pre_classifier", "classifier")
        }
    }

    /// A model with every parameter zero.
    public init(config: HFEncoderConfig, labels: [String], threads: Int = Threads.cores) throws {
        guard labels.count >= 2 else { throw ModelError("a classifier needs at least 2 labels, got \(labels.count)") }
        // Sizes read from a config.json are input: bound the weights before allocating them.
        let weights = config.parameterCount(classes: labels.count) * 4
        let memory = Double(ProcessInfo.processInfo.physicalMemory)
        guard weights < memory / 2 else {
            throw ModelError(
                "config.json: hidden_size \(config.hiddenSize), num_hidden_layers \(config.layers), intermediate_size \(config.intermediateSize), vocab_size \(config.vocabSize), max_position_embeddings \(config.maxPositions) make \(String(format: "%.3g", weights / 4)) parameters (\(ByteSize.describe(weights)) of weights), more than half this machine's \(ByteSize.describe(memory))"
            )
        }
        self.config = config
        self.labels = labels
        let L = BertClassifier.layout(config: config, classes: labels.count)
        func i(_ n: String) -> Int { L.index(of: n)! }
        let e = config.prefix
        // One entry per layer a text passes through; ALBERT's point at shared weights.
        layerIndices = (0..<config.appliedLayers).map { l in
            let set = config.parameterSet(applied: l)
            let n = BertClassifier.layerNames(config: config, set: set.group * config.innerLayers + set.inner)
            var li = LayerIndices(
                q: i(n.q + ".weight"), qb: i(n.q + ".bias"), k: i(n.k + ".weight"), kb: i(n.k + ".bias"),
                v: i(n.v + ".weight"), vb: i(n.v + ".bias"), ao: i(n.ao + ".weight"), aob: i(n.ao + ".bias"),
                ln1w: i(n.ln1 + ".weight"), ln1b: i(n.ln1 + ".bias"), fi: i(n.fi + ".weight"), fib: i(n.fi + ".bias"),
                fo: i(n.fo + ".weight"), fob: i(n.fo + ".bias"), ln2w: i(n.ln2 + ".weight"), ln2b: i(n.ln2 + ".bias"))
            if let r = config.relative, r.enabled {
                let own = BertClassifier.relativeProjectionNames(config: config, set: l)
                let key = r.shareKey ? n.k : own.first ?? ""
                let query = r.shareKey ? n.q : own.last ?? ""
                if r.c2p { li.relativeKey = (i(key + ".weight"), i(key + ".bias")) }
                if r.p2c { li.relativeQuery = (i(query + ".weight"), i(query + ".bias")) }
            }
            return li
        }
        word = i(e + "embeddings.word_embeddings.weight")
        pos = config.hasPositionTable ? i(e + "embeddings.position_embeddings.weight") : nil
        if let r = config.relative, r.enabled {
            relativeTable = (
                i(e + "encoder.rel_embeddings.weight"),
                r.normalized ? (i(e + "encoder.LayerNorm.weight"), i(e + "encoder.LayerNorm.bias")) : nil
            )
        } else {
            relativeTable = nil
        }
        type = config.hasTokenTypes ? i(e + "embeddings.token_type_embeddings.weight") : nil
        embLNw = i(e + "embeddings.LayerNorm.weight")
        embLNb = i(e + "embeddings.LayerNorm.bias")
        let projectionName = BertClassifier.projectionName(config: config).name
        projection = config.projectsEmbeddings ? (i(projectionName + ".weight"), i(projectionName + ".bias")) : nil
        let head = BertClassifier.headNames(config: config)
        poolw = i(head.dense + ".weight")
        poolb = i(head.dense + ".bias")
        headw = i(head.output + ".weight")
        headb = i(head.output + ".bias")
        passes = ShardedPasses(
            layout: L, classes: labels.count, width: config.hiddenSize, tokenWidth: config.embeddingSize,
            tokenIndex: word,
            layers: config.appliedLayers, threads: threads)
    }

    public func emptyCopy(threads: Int) throws -> BertClassifier {
        let m = try BertClassifier(config: config, labels: labels, threads: threads)
        m.sourceJSON = sourceJSON
        return m
    }

    /// The `…ForSequenceClassification` class transformers builds for this model type.
    public var classificationClass: String {
        switch config.modelType {
        case "roberta": return "RobertaForSequenceClassification"
        case "xlm-roberta": return "XLMRobertaForSequenceClassification"
        case "camembert": return "CamembertForSequenceClassification"
        case "distilbert": return "DistilBertForSequenceClassification"
        case "electra": return "ElectraForSequenceClassification"
        case "albert": return "AlbertForSequenceClassification"
        case "deberta-v2": return "DebertaV2ForSequenceClassification"
        default: return "BertForSequenceClassification"
        }
    }

    /// `config.json` as transformers reads it (the source's fields, `architectures`,
    /// `id2label`, `label2id`), with tangent's run record under the `tangent` key.
    public func saveConfiguration(labels: [String], extra: [String: Any], into directory: URL) throws {
        try HFEncoderConfig.save(
            source: sourceJSON, config: config, classificationClass: classificationClass, labels: labels,
            extra: extra, into: directory)
    }

    public var activationBytesPerText: Double {
        config.trainingBytes(batch: 1, classes: labels.count) - config.trainingBytes(batch: 0, classes: labels.count)
    }

    public func releaseScratch() { passes.releaseScratch() }

    public func checkTraining(batch: Int) throws {
        let memory = Double(ProcessInfo.processInfo.physicalMemory)
        let need = config.trainingBytes(batch: batch, classes: labels.count)
        guard need < memory * 0.8 else {
            throw ModelError(
                String(
                    format:
                        "--batch-size %ld: fine-tuning batches of %ld texts of up to %ld tokens would need about %@ (parameters, optimizer state and one batch's activations), more than this machine's %@ allows; lower --batch-size",
                    batch, batch, config.maxTokens, ByteSize.describe(need), ByteSize.describe(memory)))
        }
    }

    /// The backward order of the tensors, the token table excluded (see `ClassifierModel`);
    /// a tensor shared by several layers (ALBERT) comes once per layer, its parts summing
    /// to its gradient.
    public var streamingOrder: [Int] {
        var out = [headw, headb, poolw, poolb]
        for b in layerIndices.reversed() {
            out += [
                b.ln2w, b.ln2b, b.fo, b.fob, b.fi, b.fib, b.ln1w, b.ln1b, b.ao, b.aob, b.q, b.qb, b.k, b.kb, b.v, b.vb,
            ]
            // DeBERTa's own projections of the relative table, after the layer's.
            for r in [b.relativeKey, b.relativeQuery].compactMap({ $0 }) where r.w != b.k && r.w != b.q {
                out += [r.w, r.b]
            }
        }
        if let t = relativeTable { out += (t.norm.map { [$0.w, $0.b] } ?? []) + [t.table] }
        return out + (projection.map { [$0.w, $0.b] } ?? []) + [embLNw, embLNb] + (pos.map { [$0] } ?? [])
            + (type.map { [$0] } ?? [])
    }

    // The shared passes (`ShardedPasses`), with this architecture's shard passes. The
    // specializations dispatch at run time, so calls through `any ClassifierModel` run
    // specialized code.
    @discardableResult
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func forward(_ batch: TokenBatch, dropout: DropoutConfig?, rowInvariant: Bool) throws -> [T] {
        try passes.forward(batch, dropout: dropout, rowInvariant: rowInvariant, architecture: self)
    }
    public func lastEmbeddings() -> [T] { passes.lastEmbeddings() }
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward(seed: [T], into gradient: UnsafeMutableBufferPointer<T>) {
        passes.backward(seed: seed, into: gradient, architecture: self)
    }
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func perExampleGradients(
        seed: [T], subset: ParameterSubset, into output: UnsafeMutableBufferPointer<T>,
        embeddingRows: UnsafeMutableBufferPointer<T>?
    ) {
        passes.perExampleGradients(
            seed: seed, subset: subset, into: output, embeddingRows: embeddingRows, architecture: self)
    }
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func perExampleGradients(
        seed: [T], subset: ParameterSubset, embeddingRows: UnsafeMutableBufferPointer<T>? = nil,
        sink: (_ tensor: Int, _ text: Int, _ gradient: UnsafePointer<T>) -> Void
    ) {
        passes.perExampleGradients(
            seed: seed, subset: subset, embeddingRows: embeddingRows, architecture: self, sink: sink)
    }

    public func linearRows(seed: [T], subset: ParameterSubset, visit: (_ rows: LinearRows<T>, _ firstText: Int) -> Void)
    {
        passes.linearRows(seed: seed, subset: subset, architecture: self, visit: visit)
    }
    public var layout: ParameterLayout { passes.layout }
    public var parameters: UnsafeMutableBufferPointer<T> { passes.parameters }
    public var threads: Int { passes.threads }
    var rowInvariant: Bool { passes.rowInvariant }
    func p(_ i: Int) -> UnsafeMutablePointer<T> { passes.p(i) }

    func validate(_ batch: TokenBatch) throws {
        for b in 0..<batch.count {
            let r = batch.offsets[b]..<batch.offsets[b + 1]
            guard !r.isEmpty, r.count <= config.maxTokens else {
                throw ModelError("text \(b): \(r.count) tokens; the model takes 1 to \(config.maxTokens)")
            }
            for t in r {
                guard batch.ids[t] >= 0, Int(batch.ids[t]) < config.vocabSize else {
                    throw ModelError(
                        "text \(b): token id \(batch.ids[t]) is outside the vocabulary of \(config.vocabSize); the tokenizer does not match the model"
                    )
                }
                guard Int(batch.positions[t]) < config.maxTokens else {
                    throw ModelError(
                        "text \(b): position \(batch.positions[t]) exceeds the model's \(config.maxTokens) positions")
                }
            }
        }
    }

    /// Each token's row of the position table, as transformers numbers them: BERT counts
    /// from 0; the RoBERTa family counts from `pad_token_id + 1` over the tokens that are
    /// not the padding id, and gives a padding id (a literal `<pad>` in the text, which
    /// the tokenizer's attention mask keeps) the row `pad_token_id`.
    func positionIDs(_ batch: TokenBatch) -> [Int32] {
        guard config.isRoberta else { return batch.positions }
        let pad = Int32(config.padTokenID)
        var out = [Int32](repeating: pad, count: batch.tokenCount)
        for r in batch.ranges {
            var next = pad + 1
            for t in r where batch.ids[t] != pad {
                out[t] = next
                next += 1
            }
        }
        return out
    }

    // MARK: - Forward

    // Specialized entry points: the batch machinery calls these through the class's
    // vtable, which would otherwise run the unspecialized generic code.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func forwardShard(_ ws: Workspace<T>, batch: TokenBatch, firstText: Int, dropout: DropoutConfig?) {
        let c = config
        let N = batch.tokenCount
        let B = batch.count
        let h = c.hiddenSize
        let C = labels.count
        let E = c.embeddingSize
        let eps = T(c.layerNormEps)
        ws.prepare(batch, heads: c.heads, width: h, ffWidth: c.intermediateSize, classes: C, dropout: dropout != nil)
        ws.poolIn.ensure(B * h)
        ws.dpoolIn.ensure(B * h)
        ws.headIn.ensure(B * h)
        ws.headMask.ensure(B * h)
        ws.headDerivative.ensure(B * h)
        // Embedding-width buffers (forward and backward), when the tables are not as wide as the layers.
        for b in [ws.lnf, ws.dres, ws.dln, ws.dmid] { b.ensure(N * max(E, h)) }
        if dropout != nil { ws.embMask.ensure(N * E) }
        if c.projectsEmbeddings { ws.embOut.ensure(N * E) }
        ws.tokenPositions = positionIDs(batch)
        ws.tokenTypes = [Int32](repeating: 0, count: N)
        let tokRows: [Range<Int>]? = rowInvariant ? ws.texts : nil
        // Embeddings: the sum (kept in lnf for the backward pass), LayerNorm, dropout.
        batch.ids.withUnsafeBufferPointer { ids in
            ws.tokenPositions.withUnsafeBufferPointer { positions in
                Embedding.forward(
                    out: ws.lnf.p, ids: ids.baseAddress!, positions: positions.baseAddress!,
                    tokenTable: p(word), positionTable: pos.map { UnsafePointer(p($0)) }, n: N, d: E)
            }
        }
        if let type {
            let type0 = p(type)
            for r in 0..<N { for j in 0..<E { ws.lnf.p[r * E + j] += type0[j] } }
        }
        // The embedding output: the layers' input, or the projection's (ELECTRA).
        let embOut = projection == nil ? ws.res[0].p : ws.embOut.p
        LayerNorm.forward(
            out: embOut, mean: ws.lnfMean.p, rstd: ws.lnfRstd.p, inp: ws.lnf.p,
            weight: p(embLNw), bias: p(embLNb), n: N, d: E, eps: eps)
        batch.positions.withUnsafeBufferPointer { positions in
            if let dropout {
                mask(
                    ws.embMask.p, dropout, site: 0, layer: 0, positions: positions.baseAddress!, ws.texts, firstText,
                    width: E)
                for k in 0..<(N * E) { embOut[k] *= ws.embMask.p[k] }
            }
            if let projection {
                Linear.forward(
                    out: ws.res[0].p, inp: ws.embOut.p, weight: p(projection.w), bias: p(projection.b), n: N, i: E,
                    o: h, rows: tokRows)
            }
            if config.relative != nil { relativeTableForward(ws) }
            for l in 0..<layerIndices.count {
                forwardLayer(
                    l, ws, dropout: dropout, positions: positions.baseAddress!, firstText: firstText, rows: tokRows)
            }
        }
        headForward(ws, firstText: firstText, dropout: dropout)
    }

    /// The head: the first token's vector, dense + tanh (ReLU in DistilBERT, GELU in ELECTRA
    /// and DeBERTa: the pooled embedding e(x)), dropout, output layer.
    private func headForward(_ ws: Workspace<T>, firstText: Int, dropout: DropoutConfig?) {
        let c = config
        let B = ws.batch.count
        let h = c.hiddenSize
        let C = labels.count
        let perText = (0..<B).map { $0..<($0 + 1) }
        Pooling.forward(out: ws.poolIn.p, inp: ws.res[layerIndices.count].p, texts: ws.texts, d: h, mode: .cls)
        Linear.forward(
            out: ws.pooled.p, inp: ws.poolIn.p, weight: p(poolw), bias: p(poolb), n: B, i: h, o: h,
            rows: rowInvariant ? perText : nil)
        switch c.family {
        case .distilbert: for k in 0..<(B * h) { ws.pooled.p[k] = max(0, ws.pooled.p[k]) }
        case .electra: GELU.forward(out: ws.pooled.p, derivative: ws.headDerivative.p, inp: ws.pooled.p, count: B * h)
        // ModernBERT is `ModernBertClassifier`'s; its head never runs here.
        case .deberta, .modernbert:
            switch c.poolerActivation {
            case .erf: GELU.forward(out: ws.pooled.p, derivative: ws.headDerivative.p, inp: ws.pooled.p, count: B * h)
            case .tanh:
                GELU.forwardTanh(out: ws.pooled.p, derivative: ws.headDerivative.p, inp: ws.pooled.p, count: B * h)
            }
        case .bert, .roberta, .albert: for k in 0..<(B * h) { ws.pooled.p[k] = T.tanh(ws.pooled.p[k]) }
        }
        var headInput = UnsafePointer(ws.pooled.p)
        if let dropout {
            let zeros = [Int32](repeating: 0, count: B)
            zeros.withUnsafeBufferPointer { z in
                mask(ws.headMask.p, dropout, site: 3, layer: 0, positions: z.baseAddress!, perText, firstText)
            }
            for k in 0..<(B * h) { ws.headIn.p[k] = ws.pooled.p[k] * ws.headMask.p[k] }
            headInput = UnsafePointer(ws.headIn.p)
        }
        Linear.forward(
            out: ws.logits.p, inp: headInput, weight: p(headw), bias: p(headb), n: B, i: h, o: C,
            rows: rowInvariant ? perText : nil)
    }

    /// Dropout mask for one site (0 embeddings, 1 attention output, 2 feed-forward output, 3 classifier input).
    private func mask(
        _ m: UnsafeMutablePointer<T>, _ dropout: DropoutConfig, site: UInt64, layer: Int,
        positions: UnsafePointer<Int32>, _ texts: [Range<Int>], _ firstText: Int, width: Int? = nil
    ) {
        dropout.fill(
            m, site: site, layer: layer, positions: positions, texts: texts, firstText: firstText,
            maxTokens: config.maxTokens, width: width ?? config.hiddenSize)
    }

    /// One layer: mid = x + drop(attention_output(attention(x))), y = LN1(mid),
    /// z = y + drop(output(gelu(intermediate(y)))), x' = LN2(z).
    /// Saved: res[l] = x, qkv, att, atty, mid[l] = mid, ln1[l] = y, fc1 (gelu'), gelu,
    /// ln2[l] = z, res[l+1] = x'.
    private func forwardLayer(
        _ l: Int, _ ws: Workspace<T>, dropout: DropoutConfig?, positions: UnsafePointer<Int32>,
        firstText: Int, rows: [Range<Int>]?
    ) {
        let c = config
        let N = ws.batch.tokenCount
        let h = c.hiddenSize
        let f = c.intermediateSize
        let eps = T(c.layerNormEps)
        let li = layerIndices[l]
        let x = ws.res[l].p
        // q, k and v as three products of the checkpoint's own weights, packed side by side
        // for the attention.
        for (m, (w, b)) in [(li.q, li.qb), (li.k, li.kb), (li.v, li.vb)].enumerated() {
            Linear.forward(out: ws.tmpD.p, inp: x, weight: p(w), bias: p(b), n: N, i: h, o: h, rows: rows)
            for r in 0..<N { (ws.qkv[l].p + r * 3 * h + m * h).update(from: ws.tmpD.p + r * h, count: h) }
        }
        if c.relative != nil {
            relativeAttentionForward(l, ws)
        } else {
            Attention.forward(
                out: ws.atty[l].p, att: ws.att[l].p, qkv: ws.qkv[l].p, texts: ws.texts,
                attOffsets: ws.attOffsets, d: h, heads: c.heads)
        }
        Linear.forward(
            out: ws.tmpD.p, inp: ws.atty[l].p, weight: p(li.ao), bias: p(li.aob), n: N, i: h, o: h, rows: rows)
        if let dropout {
            mask(ws.attnMask[l].p, dropout, site: 1, layer: l, positions: positions, ws.texts, firstText)
            for k in 0..<(N * h) { ws.tmpD.p[k] *= ws.attnMask[l].p[k] }
        }
        for k in 0..<(N * h) { ws.mid[l].p[k] = x[k] + ws.tmpD.p[k] }
        LayerNorm.forward(
            out: ws.ln1[l].p, mean: ws.ln1Mean[l].p, rstd: ws.ln1Rstd[l].p, inp: ws.mid[l].p,
            weight: p(li.ln1w), bias: p(li.ln1b), n: N, d: h, eps: eps)
        Linear.forward(
            out: ws.fc1[l].p, inp: ws.ln1[l].p, weight: p(li.fi), bias: p(li.fib), n: N, i: h, o: f, rows: rows)
        switch c.activation {
        case .erf: GELU.forward(out: ws.gelu[l].p, derivative: ws.fc1[l].p, inp: ws.fc1[l].p, count: N * f)
        case .tanh: GELU.forwardTanh(out: ws.gelu[l].p, derivative: ws.fc1[l].p, inp: ws.fc1[l].p, count: N * f)
        }
        Linear.forward(
            out: ws.tmpD.p, inp: ws.gelu[l].p, weight: p(li.fo), bias: p(li.fob), n: N, i: f, o: h, rows: rows)
        if let dropout, c.feedForwardDropout {
            mask(ws.mlpMask[l].p, dropout, site: 2, layer: l, positions: positions, ws.texts, firstText)
            for k in 0..<(N * h) { ws.tmpD.p[k] *= ws.mlpMask[l].p[k] }
        }
        for k in 0..<(N * h) { ws.ln2[l].p[k] = ws.ln1[l].p[k] + ws.tmpD.p[k] }
        LayerNorm.forward(
            out: ws.res[l + 1].p, mean: ws.ln2Mean[l].p, rstd: ws.ln2Rstd[l].p, inp: ws.ln2[l].p,
            weight: p(li.ln2w), bias: p(li.ln2b), n: N, d: h, eps: eps)
    }

    // MARK: - Backward

    /// The layer group of tensor i: 0 embeddings, l+1 layer l, n+1 pooler (or
    /// `classifier.dense`), n+2 the output layer.
    private func groupOrdinal(_ i: Int) -> Int {
        if i == headw || i == headb { return layerIndices.count + 2 }
        if i == poolw || i == poolb { return layerIndices.count + 1 }
        if let l = layerIndices.firstIndex(where: { ($0.q...$0.ln2b).contains(i) }) { return l + 1 }
        return 0
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func backwardShard(
        _ ws: Workspace<T>, seed: UnsafePointer<T>, base: UnsafeMutablePointer<T>?, offsets: [Int?],
        perExampleStride: Int?, needEmbeddingRows: Bool, stream: GradientStream<T>?, shard: Int
    ) {
        let c = config
        let L = layerIndices.count
        let N = ws.batch.tokenCount
        let B = ws.batch.count
        let h = c.hiddenSize
        let C = labels.count
        let perText = (0..<B).map { $0..<($0 + 1) }
        let dest = GradientDestination(
            ws: ws, base: base, offsets: offsets, stream: stream, perExampleStride: perExampleStride, shard: shard)
        let lowest =
            needEmbeddingRows ? 0 : (offsets.indices.filter { offsets[$0] != nil }.map(groupOrdinal).min() ?? L + 3)
        if lowest > L + 2 { return }
        let textRows: [Range<Int>]? = rowInvariant ? perText : nil
        let headInput = ws.dropoutUsed ? UnsafePointer(ws.headIn.p) : UnsafePointer(ws.pooled.p)
        dest.linear(
            dinp: ws.dpooled.p, w: headw, b: headb, weight: p(headw), dout: seed, inp: headInput, n: B, i: h, o: C,
            segments: dest.texts, rows: textRows, streamRows: perText)
        if lowest > L + 1 { return }
        if ws.dropoutUsed { for k in 0..<(B * h) { ws.dpooled.p[k] *= ws.headMask.p[k] } }
        switch c.family {
        case .distilbert: for k in 0..<(B * h) where ws.pooled.p[k] <= 0 { ws.dpooled.p[k] = 0 }
        case .electra, .deberta, .modernbert: for k in 0..<(B * h) { ws.dpooled.p[k] *= ws.headDerivative.p[k] }
        case .bert, .roberta, .albert:
            for k in 0..<(B * h) {
                let t = ws.pooled.p[k]
                ws.dpooled.p[k] *= 1 - t * t
            }
        }
        dest.linear(
            dinp: ws.dpoolIn.p, w: poolw, b: poolb, weight: p(poolw), dout: ws.dpooled.p, inp: ws.poolIn.p, n: B, i: h,
            o: h,
            segments: dest.texts, rows: textRows, streamRows: perText)
        if lowest > L { return }
        Pooling.backward(dinp: ws.dres.p, dout: ws.dpoolIn.p, texts: ws.texts, d: h, mode: .cls)
        if config.relative != nil { relativeBackwardStart(ws, dest) }
        for l in stride(from: L - 1, through: 0, by: -1) {
            if lowest > l + 1 { return }
            backwardLayer(l, ws, dest)
        }
        if lowest > 0 { return }
        relativeTableBackward(ws, dest)
        let E = c.embeddingSize
        if let projection {
            // Back through the projection to the embedding output (E wide).
            dest.linear(
                dinp: ws.dmid.p, w: projection.w, b: projection.b, weight: p(projection.w), dout: ws.dres.p,
                inp: ws.embOut.p,
                n: N, i: E, o: h, segments: dest.tokens, rows: rowInvariant ? ws.texts : nil, streamRows: ws.texts)
            ws.dres.p.update(from: ws.dmid.p, count: N * E)
        }
        if ws.dropoutUsed { for k in 0..<(N * E) { ws.dres.p[k] *= ws.embMask.p[k] } }
        // Through the embedding LayerNorm to the sum: that gradient, per token, is what the
        // token, position and token-type tables' rows receive; it ends in dres (token rows).
        ws.dln.zero(N * E)
        dest.layerNorm(
            dinp: ws.dln.p, w: embLNw, b: embLNb, weight: p(embLNw), dout: ws.dres.p, inp: ws.lnf.p,
            mean: ws.lnfMean.p, rstd: ws.lnfRstd.p, n: N, d: E)
        ws.dres.p.update(from: ws.dln.p, count: N * E)
        embeddingTablesBackward(ws, dest)
    }

    /// The token, position and token-type tables' gradients from ws.dres (the gradient at
    /// the embeddings' sum, per token).
    private func embeddingTablesBackward(_ ws: Workspace<T>, _ dest: GradientDestination<T>) {
        let c = config
        let E = c.embeddingSize
        ws.batch.ids.withUnsafeBufferPointer { ids in
            ws.tokenPositions.withUnsafeBufferPointer { positions in
                ws.tokenTypes.withUnsafeBufferPointer { types in
                    let idp = ids.baseAddress!
                    let pp = positions.baseAddress!
                    let tp = types.baseAddress!
                    Embedding.backward(
                        dtokenTable: dest.slot(word), dpositionTable: pos.flatMap(dest.slot), dout: ws.dres.p,
                        ids: idp, positions: pp, d: E, segments: dest.tokens)
                    if let type {
                        Embedding.backward(
                            dtokenTable: nil, dpositionTable: dest.slot(type), dout: ws.dres.p,
                            ids: idp, positions: tp, d: E, segments: dest.tokens)
                    }
                    if let pos {
                        dest.small([pos], width: c.maxPositions * E) { dp, _, seg in
                            Embedding.backward(
                                dtokenTable: nil, dpositionTable: dp, dout: ws.dres.p, ids: idp, positions: pp, d: E,
                                segments: seg)
                        }
                    }
                    if let type {
                        dest.small([type], width: c.typeVocabSize * E) { dt, _, seg in
                            Embedding.backward(
                                dtokenTable: nil, dpositionTable: dt, dout: ws.dres.p, ids: idp, positions: tp, d: E,
                                segments: seg)
                        }
                    }
                }
            }
        }
    }

    /// One layer's backward, from ws.dres = d x' to ws.dres = d x (see `forwardLayer`).
    private func backwardLayer(_ l: Int, _ ws: Workspace<T>, _ dest: GradientDestination<T>) {
        let N = ws.batch.tokenCount
        let h = config.hiddenSize
        let f = config.intermediateSize
        let li = layerIndices[l]
        let rows: [Range<Int>]? = rowInvariant ? ws.texts : nil
        // x' = LN2(z): dmid = dz.
        ws.dmid.zero(N * h)
        dest.layerNorm(
            dinp: ws.dmid.p, w: li.ln2w, b: li.ln2b, weight: p(li.ln2w), dout: ws.dres.p, inp: ws.ln2[l].p,
            mean: ws.ln2Mean[l].p, rstd: ws.ln2Rstd[l].p, n: N, d: h)
        // z = y + drop(output(gelu(intermediate(y)))).
        var dbranch = UnsafePointer(ws.dmid.p)
        if ws.dropoutUsed, config.feedForwardDropout {
            for k in 0..<(N * h) { ws.tmpD.p[k] = ws.dmid.p[k] * ws.mlpMask[l].p[k] }
            dbranch = UnsafePointer(ws.tmpD.p)
        }
        dest.linear(
            dinp: ws.dF1.p, w: li.fo, b: li.fob, weight: p(li.fo), dout: dbranch, inp: ws.gelu[l].p, n: N, i: f, o: h,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        GELU.backward(dinp: ws.dF2.p, dout: ws.dF1.p, derivative: ws.fc1[l].p, count: N * f)
        dest.linear(
            dinp: ws.dln.p, w: li.fi, b: li.fib, weight: p(li.fi), dout: ws.dF2.p, inp: ws.ln1[l].p, n: N, i: h, o: f,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        for k in 0..<(N * h) { ws.dln.p[k] += ws.dmid.p[k] }
        // y = LN1(mid): dres = d mid.
        ws.dres.zero(N * h)
        dest.layerNorm(
            dinp: ws.dres.p, w: li.ln1w, b: li.ln1b, weight: p(li.ln1w), dout: ws.dln.p, inp: ws.mid[l].p,
            mean: ws.ln1Mean[l].p, rstd: ws.ln1Rstd[l].p, n: N, d: h)
        // mid = x + drop(attention_output(attention(q, k, v of x))).
        dbranch = UnsafePointer(ws.dres.p)
        if ws.dropoutUsed {
            for k in 0..<(N * h) { ws.tmpD.p[k] = ws.dres.p[k] * ws.attnMask[l].p[k] }
            dbranch = UnsafePointer(ws.tmpD.p)
        }
        dest.linear(
            dinp: ws.datty.p, w: li.ao, b: li.aob, weight: p(li.ao), dout: dbranch, inp: ws.atty[l].p, n: N, i: h, o: h,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        if config.relative != nil {
            relativeAttentionBackward(l, ws, dest)
        } else {
            Attention.backward(
                dqkv: ws.dqkv.p, scratch: ws.dattScratch.p, dout: ws.datty.p, qkv: ws.qkv[l].p,
                att: ws.att[l].p, texts: ws.texts, attOffsets: ws.attOffsets, d: h, heads: config.heads)
        }
        for (m, (w, b)) in [(li.q, li.qb), (li.k, li.kb), (li.v, li.vb)].enumerated() {
            for r in 0..<N { (ws.tmpD.p + r * h).update(from: ws.dqkv.p + r * 3 * h + m * h, count: h) }
            // DeBERTa: the relative table's rows that this projection also projected.
            let extra = m == 2 ? nil : relativeRows(l, ws, dest, weight: w)
            dest.linear(
                dinp: ws.dres.p, accumulateInput: true, w: w, b: b, weight: p(w), dout: ws.tmpD.p, inp: ws.res[l].p,
                n: N, i: h, o: h, segments: dest.tokens, rows: rows, streamRows: ws.texts, extra: extra)
        }
        relativeProjectionsBackward(l, ws, dest)
    }
}
