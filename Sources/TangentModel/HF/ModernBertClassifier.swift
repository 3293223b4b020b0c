import Foundation
import TangentIO
import TangentTensor

/// ModernBERT's sequence classifier (`model_type` `modernbert`) with a hand-written
/// backward pass, as transformers' `ModernBertForSequenceClassification` computes it:
/// token embeddings and their LayerNorm; per layer x + Wo(attention(rotary(Wqkv(attn_norm(x)))))
/// (no `attn_norm` in the first layer; sliding-window attention except in the global
/// layers), then + Wo(gelu(a) * g) with (a, g) = Wi(mlp_norm(.)); `final_norm`; the head
/// (the first token's state or the mean, dense, activation, LayerNorm) and `classifier`.
/// Biases and LayerNorm biases as the config's flags say.
///
/// Texts are packed (each attends to its own tokens); dropout (`DropoutConfig`) acts on
/// the embeddings, both residual branches and the classifier input, tangent's places for
/// every architecture (ModernBERT's own dropout rates are 0 by default).
public final class ModernBertClassifier<T: BLASScalar>: ClassifierModel, ShardPass {
    let passes: ShardedPasses<T>
    public typealias Scalar = T
    public let config: HFEncoderConfig
    let modern: HFEncoderConfig.ModernSettings
    /// Class names, `id2label` order.
    public let labels: [String]
    /// The `config.json` it was loaded from (tangent's `tangent` record left out).
    public var sourceJSON: [String: Any] = [:]
    /// Tensors of the checkpoint that loading left out (another head).
    public var droppedTensors: [String] = []

    struct Norm { let w: Int, b: Int? }
    struct Dense { let w: Int, b: Int? }
    struct LayerIndices {
        let attnNorm: Norm?, qkv: Dense, out: Dense, mlpNorm: Norm, wi: Dense, wo: Dense
    }
    let layerIndices: [LayerIndices]
    let word: Int
    let embNorm: Norm, finalNorm: Norm, headNorm: Norm
    let headDense: Dense, classifier: Dense
    /// Rotary tables of the global and the sliding-window layers.
    let globalRotary: Rotary<T>, localRotary: Rotary<T>
    /// Zeros standing for the biases a flag turns off.
    let zeros: Buffer<T>

    public var architecture: String { "hf-modernbert" }
    public var tokenTableIndex: Int { word }
    public var shape: ModelShape {
        ModelShape(
            classes: labels.count, width: config.hiddenSize, maxTokens: config.maxTokens, padID: config.packedPadID)
    }
    public var configurationData: Data { config.identity + Data(labels.joined(separator: "\u{1F}").utf8) }

    /// The checkpoint's tensors in `state_dict` order, with their groups (`embeddings`,
    /// `layers.i`, `final_norm`, `head`, `classifier`) and weight-decay flags.
    public static func layout(config c: HFEncoderConfig, classes: Int) -> ParameterLayout {
        let m = c.modern!
        let h = c.hiddenSize
        let f = c.intermediateSize
        var list: [(name: String, shape: [Int], group: String, decays: Bool)] = []
        func add(_ group: String, _ name: String, _ shape: [Int], bias: Bool) {
            list.append((name + ".weight", shape, group, shape.count > 1))
            if bias { list.append((name + ".bias", [shape[0]], group, false)) }
        }
        add("embeddings", "model.embeddings.tok_embeddings", [c.vocabSize, h], bias: false)
        add("embeddings", "model.embeddings.norm", [h], bias: m.normBias)
        for l in 0..<c.layers {
            let g = "layers.\(l)"
            let p = "model.layers.\(l)."
            if l > 0 { add(g, p + "attn_norm", [h], bias: m.normBias) }
            add(g, p + "attn.Wqkv", [3 * h, h], bias: m.attentionBias)
            add(g, p + "attn.Wo", [h, h], bias: m.attentionBias)
            add(g, p + "mlp_norm", [h], bias: m.normBias)
            add(g, p + "mlp.Wi", [2 * f, h], bias: m.mlpBias)
            add(g, p + "mlp.Wo", [h, f], bias: m.mlpBias)
        }
        add("final_norm", "model.final_norm", [h], bias: m.normBias)
        add("head", "head.dense", [h, h], bias: m.classifierBias)
        add("head", "head.norm", [h], bias: m.normBias)
        add("classifier", "classifier", [classes, h], bias: true)
        return ParameterLayout(list)
    }

    /// The names of the head's tensors (its dense layer, then the output layer), and its norm.
    public static func headNames(config c: HFEncoderConfig) -> (dense: String, output: String) {
        ("head.dense", "classifier")
    }

    /// A model with every parameter zero.
    public init(config: HFEncoderConfig, labels: [String], threads: Int = Threads.cores) throws {
        guard labels.count >= 2 else { throw ModelError("a classifier needs at least 2 labels, got \(labels.count)") }
        guard let modern = config.modern else { throw ModelError("config.json: not a ModernBERT config") }
        let weights = config.parameterCount(classes: labels.count) * 4
        let memory = Double(ProcessInfo.processInfo.physicalMemory)
        guard weights < memory / 2 else {
            throw ModelError(
                "config.json: hidden_size \(config.hiddenSize), num_hidden_layers \(config.layers), intermediate_size \(config.intermediateSize), vocab_size \(config.vocabSize) make \(String(format: "%.3g", weights / 4)) parameters (\(ByteSize.describe(weights)) of weights), more than half this machine's \(ByteSize.describe(memory))"
            )
        }
        self.config = config
        self.modern = modern
        self.labels = labels
        let L = ModernBertClassifier.layout(config: config, classes: labels.count)
        func i(_ n: String) -> Int { L.index(of: n)! }
        func norm(_ n: String) -> Norm { Norm(w: i(n + ".weight"), b: modern.normBias ? i(n + ".bias") : nil) }
        func dense(_ n: String, _ bias: Bool) -> Dense { Dense(w: i(n + ".weight"), b: bias ? i(n + ".bias") : nil) }
        layerIndices = (0..<config.layers).map { l in
            let p = "model.layers.\(l)."
            return LayerIndices(
                attnNorm: l > 0 ? norm(p + "attn_norm") : nil, qkv: dense(p + "attn.Wqkv", modern.attentionBias),
                out: dense(p + "attn.Wo", modern.attentionBias), mlpNorm: norm(p + "mlp_norm"),
                wi: dense(p + "mlp.Wi", modern.mlpBias), wo: dense(p + "mlp.Wo", modern.mlpBias))
        }
        word = i("model.embeddings.tok_embeddings.weight")
        embNorm = norm("model.embeddings.norm")
        finalNorm = norm("model.final_norm")
        headNorm = norm("head.norm")
        headDense = dense("head.dense", modern.classifierBias)
        classifier = dense("classifier", true)
        let dh = config.hiddenSize / config.heads
        globalRotary = Rotary(theta: modern.globalTheta, headDim: dh)
        localRotary = Rotary(theta: modern.localTheta, headDim: dh)
        zeros = Buffer<T>(max(3 * config.hiddenSize, 2 * config.intermediateSize))
        passes = ShardedPasses(
            layout: L, classes: labels.count, width: config.hiddenSize, tokenIndex: word,
            layers: config.layers, threads: threads)
    }

    public func emptyCopy(threads: Int) throws -> ModernBertClassifier {
        let m = try ModernBertClassifier(config: config, labels: labels, threads: threads)
        m.sourceJSON = sourceJSON
        return m
    }

    /// `config.json` as transformers reads it, with tangent's run record under `tangent`.
    public func saveConfiguration(labels: [String], extra: [String: Any], into directory: URL) throws {
        try HFEncoderConfig.save(
            source: sourceJSON, config: config, classificationClass: "ModernBertForSequenceClassification",
            labels: labels,
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
                        "--batch-size %ld: fine-tuning batches of %ld texts of up to %ld tokens would need about %@, more than this machine's %@ allows; lower --batch-size",
                    batch, batch, config.maxTokens, ByteSize.describe(need), ByteSize.describe(memory)))
        }
    }

    /// The backward order of the tensors, the token table excluded.
    public var streamingOrder: [Int] {
        func n(_ x: Norm) -> [Int] { [x.w] + (x.b.map { [$0] } ?? []) }
        func d(_ x: Dense) -> [Int] { [x.w] + (x.b.map { [$0] } ?? []) }
        var out = d(classifier) + n(headNorm) + d(headDense) + n(finalNorm)
        for li in layerIndices.reversed() {
            out += d(li.wo) + d(li.wi) + n(li.mlpNorm) + d(li.out) + d(li.qkv) + (li.attnNorm.map(n) ?? [])
        }
        return out + n(embNorm)
    }

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
    func bias(_ i: Int?) -> UnsafePointer<T> { UnsafePointer(i.map(p) ?? zeros.p) }

    func validate(_ batch: TokenBatch) throws {
        for b in 0..<batch.count {
            let r = batch.offsets[b]..<batch.offsets[b + 1]
            guard !r.isEmpty, r.count <= config.maxTokens else {
                throw ModelError("text \(b): \(r.count) tokens; the model takes 1 to \(config.maxTokens)")
            }
            for t in r where batch.ids[t] < 0 || Int(batch.ids[t]) >= config.vocabSize {
                throw ModelError(
                    "text \(b): token id \(batch.ids[t]) is outside the vocabulary of \(config.vocabSize); the tokenizer does not match the model"
                )
            }
        }
    }
}
