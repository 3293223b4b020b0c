import Foundation
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
}

/// The pre-LayerNorm transformer encoder classifier of the model-format spec, with a
/// hand-written backward pass over BLAS.
///
/// Texts are packed without padding; a batch is split into contiguous shards of texts,
/// one per thread, each with its own saved activations, and shard gradients are summed
/// in shard order, so results are bit-identical for a fixed thread count.
///
/// Use: `forward` then any number of `backward` / `perExampleGradients` calls with
/// seeds on the logits of that forward pass. One call at a time per instance.
public final class TransformerClassifier<T: BLASScalar> {
    public let config: ModelConfig
    public let layout: ParameterLayout
    /// All parameters, flat, in `layout` order.
    public let parameters: UnsafeMutableBufferPointer<T>
    /// Number of shards (threads) a batch is split into.
    public let threads: Int
    /// Whether the last forward pass ran row-invariant products; its backward calls
    /// follow it, so a pass is row-invariant from end to end or not at all.
    var rowInvariant = false

    struct BlockIndices {
        let norm1w, norm1b, qkvw, qkvb, projw, projb, norm2w, norm2b, fc1w, fc1b, fc2w, fc2b: Int
    }
    let blocks: [BlockIndices]
    let tokIdx, posIdx, normw, normb, headw, headb: Int

    private var workspaces: [Workspace<T>]
    private var shardGrads: [Buffer<T>]
    private var shards: [Range<Int>] = []
    private var current: TokenBatch?

    /// A model with every parameter zero (load values into `parameters` next).
    public init(config: ModelConfig, threads: Int = Threads.cores) throws {
        try config.validate()
        self.config = config
        self.layout = ParameterLayout(config: config)
        self.threads = max(1, threads)
        parameters = .allocate(capacity: layout.count)
        parameters.initialize(repeating: 0)
        let L = layout
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
        tokIdx = i("embeddings.token.weight"); posIdx = i("embeddings.position.weight")
        normw = i("norm.weight"); normb = i("norm.bias"); headw = i("head.weight"); headb = i("head.bias")
        workspaces = (0..<self.threads).map { _ in Workspace<T>(nLayers: config.nLayers) }
        shardGrads = (0..<self.threads).map { _ in Buffer<T>() }
    }

    deinit { parameters.deallocate() }

    /// The order in which the streaming `perExampleGradients` hands a text's tensors to its
    /// sink (the backward order; the token table, streamed as rows, is not in it). Code
    /// that sums over tensors in this order gets the same numbers from the streaming and
    /// the materialized gradients.
    public var streamingOrder: [Int] {
        var out = [headw, headb, normw, normb]
        for b in blocks.reversed() {
            out += [b.fc2w, b.fc2b, b.fc1w, b.fc1b, b.norm2w, b.norm2b, b.projw, b.projb, b.qkvw, b.qkvb, b.norm1w, b.norm1b]
        }
        return out + [posIdx]
    }

    /// A freshly initialized model: weights N(0, 0.02) (residual projections scaled by
    /// 1/sqrt(2 n_layers)), biases 0, LayerNorm weights 1; a pure function of `seed`.
    public static func initialized(config: ModelConfig, seed: UInt64, threads: Int = Threads.cores) throws -> TransformerClassifier {
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

    /// Copies `values` (in layout order) into the parameters.
    public func setParameters(_ values: [T]) {
        precondition(values.count == layout.count, "expected \(layout.count) parameters, got \(values.count)")
        _ = parameters.update(fromContentsOf: values)
    }

    /// The parameters as an array.
    public var parameterArray: [T] { Array(parameters) }

    // MARK: - Public passes

    /// Runs the forward pass and keeps its activations for backward calls.
    /// Returns logits [B, C], row-major.
    ///
    /// With `rowInvariant`, every matrix product that mixes texts' rows runs once per
    /// text, and so do the backward calls that follow, so a text's logits, embeddings and
    /// gradients are bit-identical whatever batch, shard or thread count computes them
    /// (BLAS may round a row differently depending on how many rows share a call).
    /// Prediction and feature extraction ask for it; training does not need it.
    @discardableResult
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func forward(_ batch: TokenBatch, dropout: DropoutConfig? = nil, rowInvariant: Bool = false) throws -> [T] {
        try batch.validate(for: config)
        self.rowInvariant = rowInvariant
        let nShards = max(1, min(threads, batch.count))
        shards = splitRange(batch.count, parts: nShards)
        current = batch
        let C = config.nClasses
        let drop = (dropout?.rate ?? 0) > 0 ? dropout : nil
        let sh = shards
        parallelFor(sh.count) { s in
            self.forwardShard(self.workspaces[s], batch: batch.slice(sh[s]), firstText: sh[s].lowerBound, dropout: drop)
        }
        var logits = [T](repeating: 0, count: batch.count * C)
        for (s, r) in sh.enumerated() {
            for k in 0..<(r.count * C) { logits[r.lowerBound * C + k] = workspaces[s].logits.p[k] }
        }
        return logits
    }

    /// Pooled embeddings e(x) [B, D] of the last forward pass.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func lastEmbeddings() -> [T] {
        let D = config.dModel
        var out = [T](repeating: 0, count: (current?.count ?? 0) * D)
        for (s, r) in shards.enumerated() {
            for k in 0..<(r.count * D) { out[r.lowerBound * D + k] = workspaces[s].pooled.p[k] }
        }
        return out
    }

    /// Adds the gradient of sum_b,c seed[b,c] * logits[b,c] (of the last forward pass)
    /// with respect to all parameters into `gradient` (layout order).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func backward(seed: [T], into gradient: UnsafeMutableBufferPointer<T>) {
        guard let batch = current else { preconditionFailure("backward called before forward") }
        precondition(seed.count == batch.count * config.nClasses, "seed must be [B, C]")
        precondition(gradient.count == layout.count, "gradient must have \(layout.count) entries")
        let sh = shards
        let offsets: [Int?] = layout.tensors.map { $0.offset }
        for s in 0..<sh.count { shardGrads[s].ensure(layout.count); shardGrads[s].zero(layout.count) }
        seed.withUnsafeBufferPointer { sp in
            let seedBase = sp.baseAddress!
            parallelFor(sh.count) { s in
                self.backwardShard(self.workspaces[s], seed: seedBase + sh[s].lowerBound * self.config.nClasses,
                                   base: self.shardGrads[s].p, offsets: offsets, perExampleStride: nil)
            }
        }
        // Fixed reduction order keeps results independent of scheduling.
        for s in 0..<sh.count {
            T.axpy(n: layout.count, alpha: 1, x: shardGrads[s].p, y: gradient.baseAddress!)
        }
    }

    /// Writes, for each text b of the last forward pass, the gradient of
    /// sum_c seed[b,c] * logits[b,c] over the tensors of `subset` into
    /// `output[b * subset.count ..< (b+1) * subset.count]` (compact subset layout).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    ///
    /// With `embeddingRows` (N x D, packed token order of the batch), the gradient with
    /// respect to the embedding output of every token is written there too. Token-table
    /// gradients are these rows scattered to the rows of the tokens' ids (and the
    /// position table's to their positions), so callers can treat the large, sparse
    /// token table without materializing it per example.
    public func perExampleGradients(seed: [T], subset: ParameterSubset, into output: UnsafeMutableBufferPointer<T>,
                                    embeddingRows: UnsafeMutableBufferPointer<T>? = nil) {
        guard let batch = current else { preconditionFailure("perExampleGradients called before forward") }
        precondition(seed.count == batch.count * config.nClasses, "seed must be [B, C]")
        precondition(output.count >= batch.count * subset.count, "output must hold B x subset.count entries")
        output.update(repeating: 0)
        let sh = shards
        seed.withUnsafeBufferPointer { sp in
            let seedBase = sp.baseAddress!
            let out = output.baseAddress!
            parallelFor(sh.count) { s in
                self.backwardShard(self.workspaces[s], seed: seedBase + sh[s].lowerBound * self.config.nClasses,
                                   base: out + sh[s].lowerBound * subset.count,
                                   offsets: subset.compactOffsets, perExampleStride: subset.count,
                                   needEmbeddingRows: embeddingRows != nil)
                if let rows = embeddingRows {
                    let ws = self.workspaces[s]
                    let D = self.config.dModel
                    let first = batch.offsets[sh[s].lowerBound]
                    (rows.baseAddress! + first * D).update(from: ws.dres.p, count: ws.batch.tokenCount * D)
                }
            }
        }
    }

    /// The streaming form of `perExampleGradients`: no B x P array exists. For each text b
    /// of the last forward pass and each tensor i of `subset` (the token table excluded:
    /// use `embeddingRows`), `sink(i, b, gradient)` receives the gradient of
    /// sum_c seed[b,c] * logits[b,c] with respect to tensor i, `layout.tensors[i].count`
    /// values in the tensor's own layout, valid only during the call. Calls for one text
    /// come in a fixed order (the backward order of the tensors) on one thread; calls for
    /// different texts may run concurrently, so `sink` must only touch that text's data.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func perExampleGradients(seed: [T], subset: ParameterSubset,
                                    embeddingRows: UnsafeMutableBufferPointer<T>? = nil,
                                    sink: (_ tensor: Int, _ text: Int, _ gradient: UnsafePointer<T>) -> Void) {
        guard let batch = current else { preconditionFailure("perExampleGradients called before forward") }
        precondition(seed.count == batch.count * config.nClasses, "seed must be [B, C]")
        precondition(subset.compactOffsets[tokIdx] == nil, "stream the token table through embeddingRows")
        let sh = shards
        withoutActuallyEscaping(sink) { sink in
            seed.withUnsafeBufferPointer { sp in
                let seedBase = sp.baseAddress!
                parallelFor(sh.count) { s in
                    let ws = self.workspaces[s]
                    let first = sh[s].lowerBound
                    self.backwardShard(ws, seed: seedBase + first * self.config.nClasses, base: nil, offsets: subset.compactOffsets,
                                       perExampleStride: nil, needEmbeddingRows: embeddingRows != nil,
                                       sink: { tensor, text, g in sink(tensor, first + text, g) })
                    if let rows = embeddingRows {
                        let D = self.config.dModel
                        (rows.baseAddress! + batch.offsets[first] * D).update(from: ws.dres.p, count: ws.batch.tokenCount * D)
                    }
                }
            }
        }
    }
}
