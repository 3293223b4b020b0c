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
    private var rowInvariant = false

    private struct BlockIndices {
        let norm1w, norm1b, qkvw, qkvb, projw, projb, norm2w, norm2b, fc1w, fc1b, fc2w, fc2b: Int
    }
    private let blocks: [BlockIndices]
    private let tokIdx, posIdx, normw, normb, headw, headb: Int

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
    /// Feature extraction asks for it; training and prediction do not need it.
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

    // MARK: - Shard passes

    private func p(_ i: Int) -> UnsafeMutablePointer<T> { parameters.baseAddress! + layout.tensors[i].offset }

    private func forwardShard(_ ws: Workspace<T>, batch: TokenBatch, firstText: Int, dropout: DropoutConfig?) {
        let c = config
        let N = batch.tokenCount, B = batch.count, D = c.dModel, F = c.dFF, C = c.nClasses
        let eps = T(c.normEps)
        ws.prepare(batch, config: c, dropout: dropout != nil)
        let tokRows: [Range<Int>]? = rowInvariant ? ws.texts : nil
        let textRows: [Range<Int>]? = rowInvariant ? (0..<B).map { $0..<($0 + 1) } : nil
        batch.ids.withUnsafeBufferPointer { ids in
            batch.positions.withUnsafeBufferPointer { pos in
                Embedding.forward(out: ws.res[0].p, ids: ids.baseAddress!, positions: pos.baseAddress!,
                                  tokenTable: p(tokIdx), positionTable: p(posIdx), n: N, d: D)
                if let dropout {
                    fillMask(ws.embMask.p, dropout: dropout, site: 0, layer: 0, positions: pos.baseAddress!, texts: ws.texts, firstText: firstText)
                    for k in 0..<(N * D) { ws.res[0].p[k] *= ws.embMask.p[k] }
                }
                for l in 0..<c.nLayers {
                    let bi = blocks[l]
                    LayerNorm.forward(out: ws.ln1[l].p, mean: ws.ln1Mean[l].p, rstd: ws.ln1Rstd[l].p, inp: ws.res[l].p,
                                      weight: p(bi.norm1w), bias: p(bi.norm1b), n: N, d: D, eps: eps)
                    Linear.forward(out: ws.qkv[l].p, inp: ws.ln1[l].p, weight: p(bi.qkvw), bias: p(bi.qkvb), n: N, i: D, o: 3 * D, rows: tokRows)
                    Attention.forward(out: ws.atty[l].p, att: ws.att[l].p, qkv: ws.qkv[l].p, texts: ws.texts,
                                      attOffsets: ws.attOffsets, d: D, heads: c.nHeads)
                    Linear.forward(out: ws.tmpD.p, inp: ws.atty[l].p, weight: p(bi.projw), bias: p(bi.projb), n: N, i: D, o: D, rows: tokRows)
                    if let dropout {
                        fillMask(ws.attnMask[l].p, dropout: dropout, site: 1, layer: l, positions: pos.baseAddress!, texts: ws.texts, firstText: firstText)
                        for k in 0..<(N * D) { ws.tmpD.p[k] *= ws.attnMask[l].p[k] }
                    }
                    for k in 0..<(N * D) { ws.mid[l].p[k] = ws.res[l].p[k] + ws.tmpD.p[k] }
                    LayerNorm.forward(out: ws.ln2[l].p, mean: ws.ln2Mean[l].p, rstd: ws.ln2Rstd[l].p, inp: ws.mid[l].p,
                                      weight: p(bi.norm2w), bias: p(bi.norm2b), n: N, d: D, eps: eps)
                    Linear.forward(out: ws.fc1[l].p, inp: ws.ln2[l].p, weight: p(bi.fc1w), bias: p(bi.fc1b), n: N, i: D, o: F, rows: tokRows)
                    GELU.forward(out: ws.gelu[l].p, derivative: ws.fc1[l].p, inp: ws.fc1[l].p, count: N * F)
                    Linear.forward(out: ws.tmpD.p, inp: ws.gelu[l].p, weight: p(bi.fc2w), bias: p(bi.fc2b), n: N, i: F, o: D, rows: tokRows)
                    if let dropout {
                        fillMask(ws.mlpMask[l].p, dropout: dropout, site: 2, layer: l, positions: pos.baseAddress!, texts: ws.texts, firstText: firstText)
                        for k in 0..<(N * D) { ws.tmpD.p[k] *= ws.mlpMask[l].p[k] }
                    }
                    for k in 0..<(N * D) { ws.res[l + 1].p[k] = ws.mid[l].p[k] + ws.tmpD.p[k] }
                }
            }
        }
        let last = ws.res[c.nLayers].p
        LayerNorm.forward(out: ws.lnf.p, mean: ws.lnfMean.p, rstd: ws.lnfRstd.p, inp: last,
                          weight: p(normw), bias: p(normb), n: N, d: D, eps: eps)
        Pooling.forward(out: ws.pooled.p, inp: ws.lnf.p, texts: ws.texts, d: D, mode: c.pooling)
        Linear.forward(out: ws.logits.p, inp: ws.pooled.p, weight: p(headw), bias: p(headb), n: B, i: D, o: C, rows: textRows)
    }

    private func fillMask(_ mask: UnsafeMutablePointer<T>, dropout: DropoutConfig, site: UInt64, layer: Int,
                          positions: UnsafePointer<Int32>, texts: [Range<Int>], firstText: Int) {
        let D = config.dModel
        let rng = CounterRNG.derive(dropout.seed, dropout.step, site, UInt64(layer))
        let keep = T(1 / (1 - dropout.rate))
        for (b, r) in texts.enumerated() {
            for row in r {
                let base = UInt64((firstText + b) * config.maxLen + Int(positions[row])) * UInt64(D)
                for j in 0..<D {
                    mask[row * D + j] = rng.uniform(base + UInt64(j)) < dropout.rate ? 0 : keep
                }
            }
        }
    }

    /// Backward of one shard. `offsets[i]` places tensor i's gradient at `base + offsets[i]`
    /// (nil: not wanted). With `perExampleStride`, text b's gradients go to
    /// `base + b * stride + offsets[i]`; otherwise all texts sum into one vector.
    ///
    /// With `sink`, parameter gradients are not written to `base` but handed over per text
    /// and tensor from a small scratch (see the streaming `perExampleGradients`).
    ///
    /// Over 80 lines: it is the whole model's backward, head to embeddings, and every stage
    /// shares the shard's workspace pointers and the gradient destinations; issue 21 splits
    /// one block's backward and a gradient-destination type out of it, with the checks
    /// against finite differences guarding the split.
    private func backwardShard(_ ws: Workspace<T>, seed: UnsafePointer<T>, base: UnsafeMutablePointer<T>?,
                               offsets: [Int?], perExampleStride: Int?, needEmbeddingRows: Bool = false,
                               sink: ((Int, Int, UnsafePointer<T>) -> Void)? = nil) {
        let c = config
        let N = ws.batch.tokenCount, B = ws.batch.count, D = c.dModel, F = c.dFF, C = c.nClasses
        let tokSeg: Segments, textSeg: Segments
        if let stride = perExampleStride {
            tokSeg = Segments(ranges: ws.texts, stride: stride)
            textSeg = Segments(ranges: (0..<B).map { $0..<($0 + 1) }, stride: stride)
        } else {
            tokSeg = .summed(N)
            textSeg = .summed(B)
        }
        func g(_ i: Int) -> UnsafeMutablePointer<T>? { sink == nil ? offsets[i].map { base! + $0 } : nil }
        func wanted(_ i: Int) -> Bool { offsets[i] != nil }
        // Streaming: a layer's weight and bias gradients, one text at a time into the
        // scratch (a product with beta 0, so nothing is zeroed), handed to the sink.
        func streamLinear(w: Int, b: Int, dout: UnsafePointer<T>, inp: UnsafePointer<T>, i: Int, o: Int, rows: [Range<Int>]) {
            guard let sink, wanted(w) || wanted(b) else { return }
            ws.gradScratch.ensure(o * i)
            let sp = ws.gradScratch.p
            for (k, r) in rows.enumerated() where !r.isEmpty {
                if wanted(w) {
                    T.gemm(transA: true, transB: false, m: o, n: i, k: r.count, alpha: 1, a: dout + r.lowerBound * o, lda: o,
                           b: inp + r.lowerBound * i, ldb: i, beta: 0, c: sp, ldc: i)
                    sink(w, k, sp)
                }
                if wanted(b) {
                    sp.update(repeating: 0, count: o)
                    for row in r { for j in 0..<o { sp[j] += dout[row * o + j] } }
                    sink(b, k, sp)
                }
            }
        }
        // Streaming: per-text gradients of small per-row tensors (norms, position table),
        // accumulated for all texts of the shard in the scratch by `body`, then handed over.
        func streamSmall(_ tensors: [Int], width: Int, _ body: (UnsafeMutablePointer<T>?, UnsafeMutablePointer<T>?, Segments) -> Void) {
            guard let sink, tensors.contains(where: wanted) else { return }
            let stride = width * tensors.count
            ws.gradScratch.ensure(B * stride)
            ws.gradScratch.zero(B * stride)
            let sp = ws.gradScratch.p
            body(sp, tensors.count > 1 ? sp + width : nil, Segments(ranges: ws.texts, stride: stride))
            for k in 0..<B where !ws.texts[k].isEmpty {
                for (j, t) in tensors.enumerated() where wanted(t) { sink(t, k, sp + k * stride + j * width) }
            }
        }
        let tokRows: [Range<Int>]? = rowInvariant ? ws.texts : nil
        let textRows: [Range<Int>]? = rowInvariant ? (0..<B).map { $0..<($0 + 1) } : nil
        // Lowest group whose gradients are wanted: 0 embeddings, l+1 block l, n+1 norm, n+2 head.
        let groupOf: (Int) -> Int = { i in
            let name = self.layout.tensors[i].name
            if name.hasPrefix("embeddings") { return 0 }
            if name.hasPrefix("blocks.") { return Int(name.split(separator: ".")[1])! + 1 }
            return name.hasPrefix("norm") ? c.nLayers + 1 : c.nLayers + 2
        }
        let lowest = needEmbeddingRows ? 0 : (offsets.indices.filter { offsets[$0] != nil }.map(groupOf).min() ?? c.nLayers + 3)
        if lowest > c.nLayers + 2 { return }

        Linear.backward(dinp: ws.dpooled.p, accumulateInput: false, dweight: g(headw), dbias: g(headb),
                        dout: seed, inp: ws.pooled.p, weight: p(headw), n: B, i: D, o: C, segments: textSeg, rows: textRows)
        streamLinear(w: headw, b: headb, dout: seed, inp: ws.pooled.p, i: D, o: C, rows: (0..<B).map { $0..<($0 + 1) })
        if lowest > c.nLayers + 1 { return }
        Pooling.backward(dinp: ws.dln.p, dout: ws.dpooled.p, texts: ws.texts, d: D, mode: c.pooling)
        ws.dres.zero(N * D)
        LayerNorm.backward(dinp: ws.dres.p, dweight: g(normw), dbias: g(normb), dout: ws.dln.p,
                           inp: ws.res[c.nLayers].p, weight: p(normw), mean: ws.lnfMean.p, rstd: ws.lnfRstd.p,
                           n: N, d: D, segments: tokSeg)
        streamSmall([normw, normb], width: D) { dw, db, seg in
            LayerNorm.weightGradients(dweight: dw!, dbias: db!, dout: ws.dln.p, inp: ws.res[c.nLayers].p,
                                      mean: ws.lnfMean.p, rstd: ws.lnfRstd.p, d: D, segments: seg)
        }
        for l in stride(from: c.nLayers - 1, through: 0, by: -1) {
            if lowest > l + 1 { return }
            let bi = blocks[l]
            // MLP branch: res[l+1] = mid + drop(fc2(gelu(fc1(ln2(mid))))).
            ws.dmid.p.update(from: ws.dres.p, count: N * D)
            var dbranch = UnsafePointer(ws.dres.p)
            if ws.dropoutUsed {
                for k in 0..<(N * D) { ws.tmpD.p[k] = ws.dres.p[k] * ws.mlpMask[l].p[k] }
                dbranch = UnsafePointer(ws.tmpD.p)
            }
            Linear.backward(dinp: ws.dF1.p, accumulateInput: false, dweight: g(bi.fc2w), dbias: g(bi.fc2b),
                            dout: dbranch, inp: ws.gelu[l].p, weight: p(bi.fc2w), n: N, i: F, o: D, segments: tokSeg, rows: tokRows)
            streamLinear(w: bi.fc2w, b: bi.fc2b, dout: dbranch, inp: ws.gelu[l].p, i: F, o: D, rows: ws.texts)
            GELU.backward(dinp: ws.dF2.p, dout: ws.dF1.p, derivative: ws.fc1[l].p, count: N * F)
            Linear.backward(dinp: ws.dln.p, accumulateInput: false, dweight: g(bi.fc1w), dbias: g(bi.fc1b),
                            dout: ws.dF2.p, inp: ws.ln2[l].p, weight: p(bi.fc1w), n: N, i: D, o: F, segments: tokSeg, rows: tokRows)
            streamLinear(w: bi.fc1w, b: bi.fc1b, dout: ws.dF2.p, inp: ws.ln2[l].p, i: D, o: F, rows: ws.texts)
            LayerNorm.backward(dinp: ws.dmid.p, dweight: g(bi.norm2w), dbias: g(bi.norm2b), dout: ws.dln.p,
                               inp: ws.mid[l].p, weight: p(bi.norm2w), mean: ws.ln2Mean[l].p, rstd: ws.ln2Rstd[l].p,
                               n: N, d: D, segments: tokSeg)
            streamSmall([bi.norm2w, bi.norm2b], width: D) { dw, db, seg in
                LayerNorm.weightGradients(dweight: dw!, dbias: db!, dout: ws.dln.p, inp: ws.mid[l].p,
                                          mean: ws.ln2Mean[l].p, rstd: ws.ln2Rstd[l].p, d: D, segments: seg)
            }
            // Attention branch: mid = res[l] + drop(proj(attention(qkv(ln1(res[l]))))).
            ws.dres.p.update(from: ws.dmid.p, count: N * D)
            dbranch = UnsafePointer(ws.dmid.p)
            if ws.dropoutUsed {
                for k in 0..<(N * D) { ws.tmpD.p[k] = ws.dmid.p[k] * ws.attnMask[l].p[k] }
                dbranch = UnsafePointer(ws.tmpD.p)
            }
            Linear.backward(dinp: ws.datty.p, accumulateInput: false, dweight: g(bi.projw), dbias: g(bi.projb),
                            dout: dbranch, inp: ws.atty[l].p, weight: p(bi.projw), n: N, i: D, o: D, segments: tokSeg, rows: tokRows)
            streamLinear(w: bi.projw, b: bi.projb, dout: dbranch, inp: ws.atty[l].p, i: D, o: D, rows: ws.texts)
            Attention.backward(dqkv: ws.dqkv.p, scratch: ws.dattScratch.p, dout: ws.datty.p, qkv: ws.qkv[l].p,
                               att: ws.att[l].p, texts: ws.texts, attOffsets: ws.attOffsets, d: D, heads: c.nHeads)
            Linear.backward(dinp: ws.dln.p, accumulateInput: false, dweight: g(bi.qkvw), dbias: g(bi.qkvb),
                            dout: ws.dqkv.p, inp: ws.ln1[l].p, weight: p(bi.qkvw), n: N, i: D, o: 3 * D, segments: tokSeg, rows: tokRows)
            streamLinear(w: bi.qkvw, b: bi.qkvb, dout: ws.dqkv.p, inp: ws.ln1[l].p, i: D, o: 3 * D, rows: ws.texts)
            LayerNorm.backward(dinp: ws.dres.p, dweight: g(bi.norm1w), dbias: g(bi.norm1b), dout: ws.dln.p,
                               inp: ws.res[l].p, weight: p(bi.norm1w), mean: ws.ln1Mean[l].p, rstd: ws.ln1Rstd[l].p,
                               n: N, d: D, segments: tokSeg)
            streamSmall([bi.norm1w, bi.norm1b], width: D) { dw, db, seg in
                LayerNorm.weightGradients(dweight: dw!, dbias: db!, dout: ws.dln.p, inp: ws.res[l].p,
                                          mean: ws.ln1Mean[l].p, rstd: ws.ln1Rstd[l].p, d: D, segments: seg)
            }
        }
        if lowest > 0 { return }
        if ws.dropoutUsed {
            for k in 0..<(N * D) { ws.dres.p[k] *= ws.embMask.p[k] }
        }
        ws.batch.ids.withUnsafeBufferPointer { ids in
            ws.batch.positions.withUnsafeBufferPointer { pos in
                Embedding.backward(dtokenTable: g(tokIdx), dpositionTable: g(posIdx), dout: ws.dres.p,
                                   ids: ids.baseAddress!, positions: pos.baseAddress!, d: D, segments: tokSeg)
                streamSmall([posIdx], width: c.maxLen * D) { dp, _, seg in
                    Embedding.backward(dtokenTable: nil, dpositionTable: dp, dout: ws.dres.p,
                                       ids: ids.baseAddress!, positions: pos.baseAddress!, d: D, segments: seg)
                }
            }
        }
    }
}
