import Foundation
import TangentData
import TangentTensor

/// Inverted dropout on the embeddings and on both residual branches of every block,
/// used in training only. Masks are a pure function of (seed, step, site, layer, text
/// index in the batch, position, feature), so they do not depend on the thread count.
public struct DropoutConfig: Sendable, Equatable {
    public var rate: Double
    public var seed: UInt64
    public var step: UInt64
    public init(rate: Double, seed: UInt64, step: UInt64) {
        self.rate = rate
        self.seed = seed
        self.step = step
    }

    /// Writes inverted dropout's mask (0 or 1/(1-rate)) for one site and layer over the
    /// rows of `texts`: a pure function of (seed, step, site, layer, the text's index in
    /// the whole batch, position, feature), whatever shard computes it.
    func fill<T: BLASScalar>(
        _ mask: UnsafeMutablePointer<T>, site: UInt64, layer: Int, positions: UnsafePointer<Int32>,
        texts: [Range<Int>], firstText: Int, maxTokens: Int, width D: Int
    ) {
        let rng = CounterRNG.derive(seed, step, site, UInt64(layer))
        let keep = T(1 / (1 - rate))
        for (b, r) in texts.enumerated() {
            for row in r {
                let base = UInt64((firstText + b) * maxTokens + Int(positions[row])) * UInt64(D)
                for j in 0..<D {
                    mask[row * D + j] = rng.uniform(base + UInt64(j)) < rate ? 0 : keep
                }
            }
        }
    }
}

/// The pre-LayerNorm transformer encoder classifier of the model-format spec, with a
/// hand-written backward pass over BLAS (batching and threads: `ShardedPasses`).
public final class TransformerClassifier<T: BLASScalar>: ClassifierModel, ShardPass {
    let passes: ShardedPasses<T>
    public typealias Scalar = T
    public let config: ModelConfig

    struct BlockIndices {
        let norm1w, norm1b, qkvw, qkvb, projw, projb, norm2w, norm2b, fc1w, fc1b, fc2w, fc2b: Int
    }
    let blocks: [BlockIndices]
    let tokIdx, posIdx, normw, normb, headw, headb: Int
    public var tokenTableIndex: Int { tokIdx }
    public var architecture: String { config.architecture }
    public var configurationData: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(config)) ?? Data()
    }
    public var shape: ModelShape {
        ModelShape(classes: config.nClasses, width: config.dModel, maxTokens: config.maxLen, padID: Int32(config.padID))
    }

    /// A model with every parameter zero (load values into `parameters` next).
    public init(config: ModelConfig, threads: Int = Threads.cores) throws {
        try config.validate()
        self.config = config
        let L = ParameterLayout(config: config)
        func i(_ n: String) -> Int { L.index(of: n)! }
        blocks = (0..<config.nLayers).map { l in
            let p = "blocks.\(l)."
            return BlockIndices(
                norm1w: i(p + "norm1.weight"), norm1b: i(p + "norm1.bias"),
                qkvw: i(p + "attn.qkv.weight"), qkvb: i(p + "attn.qkv.bias"),
                projw: i(p + "attn.proj.weight"), projb: i(p + "attn.proj.bias"),
                norm2w: i(p + "norm2.weight"), norm2b: i(p + "norm2.bias"),
                fc1w: i(p + "mlp.fc1.weight"), fc1b: i(p + "mlp.fc1.bias"),
                fc2w: i(p + "mlp.fc2.weight"), fc2b: i(p + "mlp.fc2.bias"))
        }
        tokIdx = i("embeddings.token.weight")
        posIdx = i("embeddings.position.weight")
        normw = i("norm.weight")
        normb = i("norm.bias")
        headw = i("head.weight")
        headb = i("head.bias")
        passes = ShardedPasses(
            layout: L, classes: config.nClasses, width: config.dModel, tokenIndex: tokIdx, layers: config.nLayers,
            threads: threads)
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

    func validate(_ batch: TokenBatch) throws { try batch.validate(for: config) }
    // Specialized entry points: the batch machinery calls these through the class's
    // vtable, which would otherwise run the unspecialized generic code.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func forwardShard(_ ws: Workspace<T>, batch: TokenBatch, firstText: Int, dropout: DropoutConfig?) {
        forwardTexts(ws, batch: batch, firstText: firstText, dropout: dropout)
    }
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func backwardShard(
        _ ws: Workspace<T>, seed: UnsafePointer<T>, base: UnsafeMutablePointer<T>?, offsets: [Int?],
        perExampleStride: Int?, needEmbeddingRows: Bool, stream: GradientStream<T>?, shard: Int
    ) {
        backwardTexts(
            ws, seed: seed, base: base, offsets: offsets, perExampleStride: perExampleStride,
            needEmbeddingRows: needEmbeddingRows, stream: stream, shard: shard)
    }

    /// The order in which the streaming `perExampleGradients` hands a text's tensors to its
    /// sink (the backward order; the token table, streamed as rows, is not in it). Code
    /// that sums over tensors in this order gets the same numbers from the streaming and
    /// the materialized gradients.
    public var streamingOrder: [Int] {
        var out = [headw, headb, normw, normb]
        for b in blocks.reversed() {
            out += [
                b.fc2w, b.fc2b, b.fc1w, b.fc1b, b.norm2w, b.norm2b, b.projw, b.projb, b.qkvw, b.qkvb, b.norm1w,
                b.norm1b,
            ]
        }
        return out + [posIdx]
    }

    /// A freshly initialized model: weights N(0, 0.02) (residual projections scaled by
    /// 1/sqrt(2 n_layers)), biases 0, LayerNorm weights 1; a pure function of `seed`.
    public static func initialized(config: ModelConfig, seed: UInt64, threads: Int = Threads.cores) throws
        -> TransformerClassifier
    {
        let m = try TransformerClassifier(config: config, threads: threads)
        let residualScale = 1 / Double(2 * max(1, config.nLayers)).squareRoot()
        for (ti, t) in m.layout.tensors.enumerated() {
            let name = t.name
            let isNorm = name.contains("norm")
            if name.hasSuffix(".bias") { continue }
            if isNorm {
                for k in t.range { m.parameters[k] = 1 }
                continue
            }
            var std = 0.02
            if name.hasSuffix("attn.proj.weight") || name.hasSuffix("mlp.fc2.weight") { std *= residualScale }
            let rng = CounterRNG.derive(seed, 0x1417, UInt64(ti))
            for (k, j) in t.range.enumerated() { m.parameters[j] = T(std * rng.normal(UInt64(k))) }
        }
        return m
    }

    public func checkTraining(batch: Int) throws { try config.checkTraining(batch: batch) }

    public var activationBytesPerText: Double { config.activationBytesPerText }

    public func releaseScratch() { passes.releaseScratch() }

    public func saveConfiguration(labels: [String], extra: [String: Any], into directory: URL) throws {
        try LabelSet(names: labels).save(directory.appendingPathComponent(ModelDirectory.labelsFile))
        try ModelDirectory.saveConfig(
            config, extra: extra, to: directory.appendingPathComponent(ModelDirectory.configFile))
    }

    public func emptyCopy(threads: Int) throws -> TransformerClassifier {
        try TransformerClassifier(config: config, threads: threads)
    }
}
