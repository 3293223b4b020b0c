import Foundation
import TangentTensor

/// One linear layer's rows in a backward pass, handed over instead of its parameter
/// gradients (`ClassifierModel.linearRows`): the inputs the forward pass gave it and the
/// gradients at its outputs, per text. What Kronecker-factored curvature (EK-FAC) is made of.
public struct LinearRows<T: BLASScalar> {
    /// The weight tensor [outWidth, inWidth] and its bias, by layout index.
    public let weight: Int, bias: Int?
    /// The shard (thread) that computed the rows: calls from different shards may run concurrently.
    public let shard: Int
    public let inWidth: Int, outWidth: Int
    /// Inputs [*, inWidth] and output gradients [*, outWidth], row-major.
    public let inputs: UnsafePointer<T>, outputGradients: UnsafePointer<T>
    /// Each text's rows of `inputs` and `outputGradients` (the shard's texts in order);
    /// a text's weight gradient is the sum over its rows of outputGradient^T input.
    public let texts: [Range<Int>]
    /// More rows through the same layer for the same texts (DeBERTa's relative table
    /// through the key and query projections), as `inputs`, `outputGradients`, `texts`.
    public let extra: (inputs: UnsafePointer<T>, outputGradients: UnsafePointer<T>, texts: [Range<Int>])?
}

/// What a streamed backward hands over: each text's gradient per tensor, or each
/// linear layer's rows (`LinearRows`, with no parameter gradient formed).
enum GradientStream<T: BLASScalar> {
    case tensors((_ tensor: Int, _ text: Int, _ gradient: UnsafePointer<T>) -> Void)
    case linearRows((LinearRows<T>) -> Void)
}

/// Where one backward shard's parameter gradients go: summed over the shard's texts or
/// one vector per text (`Segments`) at `base + offsets[i]` for tensor i, or (streaming)
/// handed per text and tensor from a small scratch to `sink`, or (`rowsSink`) each linear
/// layer's rows instead of any gradient. Each layer's backward goes
/// through `linear` / `layerNorm`, which write the input gradient and deliver the
/// parameter gradients to whichever destination is in use, so they cannot diverge.
struct GradientDestination<T: BLASScalar> {
    let ws: Workspace<T>
    let base: UnsafeMutablePointer<T>?
    let offsets: [Int?]
    let sink: ((Int, Int, UnsafePointer<T>) -> Void)?
    let rowsSink: ((LinearRows<T>) -> Void)?
    let shard: Int
    /// Token rows and text rows, summed or per text.
    let tokens: Segments, texts: Segments
    /// Whether gradients are per text (written at a stride, or streamed), not summed.
    let perText: Bool

    /// The destination of one shard's backward: per text at `perExampleStride` (token and
    /// text rows segmented by text), or summed over the shard.
    init(
        ws: Workspace<T>, base: UnsafeMutablePointer<T>?, offsets: [Int?], stream: GradientStream<T>?,
        perExampleStride: Int?, shard: Int = 0
    ) {
        let perText = (0..<ws.texts.count).map { $0..<($0 + 1) }
        self.ws = ws
        self.base = base
        self.offsets = offsets
        self.shard = shard
        switch stream {
        case .tensors(let f):
            sink = f
            rowsSink = nil
        case .linearRows(let f):
            sink = nil
            rowsSink = f
        case nil:
            sink = nil
            rowsSink = nil
        }
        self.perText = perExampleStride != nil || stream != nil
        if let stride = perExampleStride {
            tokens = Segments(ranges: ws.texts, stride: stride)
            texts = Segments(ranges: perText, stride: stride)
        } else {
            tokens = .summed(ws.batch.tokenCount)
            texts = .summed(ws.texts.count)
        }
    }

    /// Tensor i's gradient in `base` (nil when not wanted or when streaming).
    func slot(_ i: Int) -> UnsafeMutablePointer<T>? {
        sink == nil && rowsSink == nil ? offsets[i].map { base! + $0 } : nil
    }
    func wanted(_ i: Int) -> Bool { offsets[i] != nil }

    /// More rows through the same linear layer, outside the token rows: DeBERTa's relative
    /// embeddings, which each layer's key and query projections also project. Their input
    /// gradient goes to `dinp` (added to; nil: not wanted); `segments` and `streamRows`
    /// hold one range per text as the layer's own rows do (one range when summed).
    struct ExtraRows {
        let dinp: UnsafeMutablePointer<T>?
        let dout: UnsafePointer<T>, inp: UnsafePointer<T>
        let segments: Segments, streamRows: [Range<Int>]
    }

    /// A linear layer's backward: dinp (written, or added to; nil: not wanted), then its weight and bias gradients
    /// (per text of `streamRows` when streaming), over its rows and any `extra` rows. `segments` picks token or text rows.
    func linear(
        dinp: UnsafeMutablePointer<T>?, accumulateInput: Bool = false, w: Int, b: Int?, weight: UnsafePointer<T>,
        dout: UnsafePointer<T>, inp: UnsafePointer<T>,
        n: Int, i: Int, o: Int, segments: Segments, rows: [Range<Int>]?, streamRows: [Range<Int>],
        extra: ExtraRows? = nil
    ) {
        Linear.backward(
            dinp: dinp, accumulateInput: accumulateInput, dweight: slot(w), dbias: b.flatMap(slot), dout: dout,
            inp: inp, weight: weight,
            n: n, i: i, o: o, segments: segments, rows: rows)
        if let e = extra {
            let extraRows = e.segments.ranges
            Linear.backward(
                dinp: e.dinp, accumulateInput: true, dweight: slot(w), dbias: b.flatMap(slot), dout: e.dout, inp: e.inp,
                weight: weight,
                n: extraRows.map(\.upperBound).max() ?? 0, i: i, o: o, segments: e.segments, rows: extraRows)
        }
        if let rowsSink, wanted(w) {
            rowsSink(
                LinearRows(
                    weight: w, bias: b, shard: shard, inWidth: i, outWidth: o, inputs: inp, outputGradients: dout,
                    texts: streamRows, extra: extra.map { ($0.inp, $0.dout, $0.streamRows) }))
        }
        guard let sink, wanted(w) || b.map(wanted) == true else { return }
        // A product with beta 0 into the scratch, so nothing is zeroed; extra rows add to it,
        // so each text's gradient is handed over once.
        ws.gradScratch.ensure(o * i)
        let sp = ws.gradScratch.p
        for (k, r) in streamRows.enumerated() where !r.isEmpty {
            let x = extra.map { $0.streamRows[k] } ?? 0..<0
            if wanted(w) {
                T.gemm(
                    transA: true, transB: false, m: o, n: i, k: r.count, alpha: 1, a: dout + r.lowerBound * o, lda: o,
                    b: inp + r.lowerBound * i, ldb: i, beta: 0, c: sp, ldc: i)
                if let e = extra, !x.isEmpty {
                    T.gemm(
                        transA: true, transB: false, m: o, n: i, k: x.count, alpha: 1, a: e.dout + x.lowerBound * o,
                        lda: o,
                        b: e.inp + x.lowerBound * i, ldb: i, beta: 1, c: sp, ldc: i)
                }
                sink(w, k, sp)
            }
            if let b, wanted(b) {
                sp.update(repeating: 0, count: o)
                for row in r { for j in 0..<o { sp[j] += dout[row * o + j] } }
                if let e = extra { for row in x { for j in 0..<o { sp[j] += e.dout[row * o + j] } } }
                sink(b, k, sp)
            }
        }
    }

    /// A LayerNorm's backward over the token rows: dinp accumulated, then its weight and
    /// bias gradients.
    /// Other rows than the tokens (DeBERTa's relative table) come as `segments` and, when
    /// streaming, one range per text (`streamRanges`).
    func layerNorm(
        dinp: UnsafeMutablePointer<T>, w: Int, b: Int?, weight: UnsafePointer<T>, dout: UnsafePointer<T>,
        inp: UnsafePointer<T>,
        mean: UnsafePointer<T>, rstd: UnsafePointer<T>, n: Int, d: Int, segments: Segments? = nil,
        streamRanges: [Range<Int>]? = nil
    ) {
        LayerNorm.backward(
            dinp: dinp, dweight: slot(w), dbias: b.flatMap(slot), dout: dout, inp: inp, weight: weight, mean: mean,
            rstd: rstd,
            n: n, d: d, segments: segments ?? tokens)
        small([w] + (b.map { [$0] } ?? []), width: d, ranges: streamRanges) { dw, db, seg in
            LayerNorm.weightGradients(
                dweight: dw!, dbias: db, dout: dout, inp: inp, mean: mean, rstd: rstd, d: d, segments: seg)
        }
    }

    /// Streaming: per-text gradients of small per-row tensors (norms, position table),
    /// accumulated for all texts of the shard in the scratch by `body`, then handed over.
    /// `ranges` (default: the texts' token rows) holds each text's rows.
    func small(
        _ tensors: [Int], width: Int, ranges: [Range<Int>]? = nil,
        _ body: (UnsafeMutablePointer<T>?, UnsafeMutablePointer<T>?, Segments) -> Void
    ) {
        guard let sink, tensors.contains(where: wanted) else { return }
        let rows = ranges ?? ws.texts
        let B = rows.count
        let stride = width * tensors.count
        ws.gradScratch.ensure(B * stride)
        ws.gradScratch.zero(B * stride)
        let sp = ws.gradScratch.p
        body(sp, tensors.count > 1 ? sp + width : nil, Segments(ranges: rows, stride: stride))
        for k in 0..<B where !rows[k].isEmpty {
            for (j, t) in tensors.enumerated() where wanted(t) { sink(t, k, sp + k * stride + j * width) }
        }
    }
}

extension TransformerClassifier {
    /// Backward of one shard. `offsets[i]` places tensor i's gradient at `base + offsets[i]`
    /// (nil: not wanted). With `perExampleStride`, text b's gradients go to
    /// `base + b * stride + offsets[i]`; otherwise all texts sum into one vector.
    ///
    /// With `sink`, parameter gradients are not written to `base` but handed over per text
    /// and tensor from a small scratch (see the streaming `perExampleGradients`).
    /// The pass stops below the lowest layer group whose gradients are wanted.
    func backwardTexts(
        _ ws: Workspace<T>, seed: UnsafePointer<T>, base: UnsafeMutablePointer<T>?,
        offsets: [Int?], perExampleStride: Int?, needEmbeddingRows: Bool = false,
        stream: GradientStream<T>? = nil, shard: Int = 0
    ) {
        let c = config
        let N = ws.batch.tokenCount
        let B = ws.batch.count
        let D = c.dModel
        let C = c.nClasses
        let perText = (0..<B).map { $0..<($0 + 1) }
        let dest = GradientDestination(
            ws: ws, base: base, offsets: offsets, stream: stream, perExampleStride: perExampleStride, shard: shard)
        let lowest =
            needEmbeddingRows
            ? 0 : (offsets.indices.filter { offsets[$0] != nil }.map(layerGroup).min() ?? c.nLayers + 3)
        if lowest > c.nLayers + 2 { return }
        dest.linear(
            dinp: ws.dpooled.p, w: headw, b: headb, weight: p(headw), dout: seed, inp: ws.pooled.p, n: B, i: D, o: C,
            segments: dest.texts, rows: rowInvariant ? perText : nil, streamRows: perText)
        if lowest > c.nLayers + 1 { return }
        Pooling.backward(dinp: ws.dln.p, dout: ws.dpooled.p, texts: ws.texts, d: D, mode: c.pooling)
        ws.dres.zero(N * D)
        dest.layerNorm(
            dinp: ws.dres.p, w: normw, b: normb, weight: p(normw), dout: ws.dln.p, inp: ws.res[c.nLayers].p,
            mean: ws.lnfMean.p, rstd: ws.lnfRstd.p, n: N, d: D)
        for l in stride(from: c.nLayers - 1, through: 0, by: -1) {
            if lowest > l + 1 { return }
            backwardBlock(l, ws, dest)
        }
        if lowest > 0 { return }
        if ws.dropoutUsed {
            for k in 0..<(N * D) { ws.dres.p[k] *= ws.embMask.p[k] }
        }
        ws.batch.ids.withUnsafeBufferPointer { ids in
            ws.batch.positions.withUnsafeBufferPointer { pos in
                Embedding.backward(
                    dtokenTable: dest.slot(tokIdx), dpositionTable: dest.slot(posIdx), dout: ws.dres.p,
                    ids: ids.baseAddress!, positions: pos.baseAddress!, d: D, segments: dest.tokens)
                dest.small([posIdx], width: c.maxLen * D) { dp, _, seg in
                    Embedding.backward(
                        dtokenTable: nil, dpositionTable: dp, dout: ws.dres.p,
                        ids: ids.baseAddress!, positions: pos.baseAddress!, d: D, segments: seg)
                }
            }
        }
    }

    /// The layer group of tensor i: 0 embeddings, l+1 block l, n+1 final norm, n+2 head.
    func layerGroup(_ i: Int) -> Int {
        let name = layout.tensors[i].name
        if name.hasPrefix("embeddings") { return 0 }
        if name.hasPrefix("blocks.") { return Int(name.split(separator: ".")[1])! + 1 }
        return name.hasPrefix("norm") ? config.nLayers + 1 : config.nLayers + 2
    }

    /// One block's backward, from ws.dres = d res[l+1] to ws.dres = d res[l].
    func backwardBlock(_ l: Int, _ ws: Workspace<T>, _ dest: GradientDestination<T>) {
        let N = ws.batch.tokenCount
        let D = config.dModel
        let F = config.dFF
        let bi = blocks[l]
        let rows: [Range<Int>]? = rowInvariant ? ws.texts : nil
        // MLP branch: res[l+1] = mid + drop(fc2(gelu(fc1(ln2(mid))))).
        ws.dmid.p.update(from: ws.dres.p, count: N * D)
        var dbranch = UnsafePointer(ws.dres.p)
        if ws.dropoutUsed {
            for k in 0..<(N * D) { ws.tmpD.p[k] = ws.dres.p[k] * ws.mlpMask[l].p[k] }
            dbranch = UnsafePointer(ws.tmpD.p)
        }
        dest.linear(
            dinp: ws.dF1.p, w: bi.fc2w, b: bi.fc2b, weight: p(bi.fc2w), dout: dbranch, inp: ws.gelu[l].p, n: N, i: F,
            o: D,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        GELU.backward(dinp: ws.dF2.p, dout: ws.dF1.p, derivative: ws.fc1[l].p, count: N * F)
        dest.linear(
            dinp: ws.dln.p, w: bi.fc1w, b: bi.fc1b, weight: p(bi.fc1w), dout: ws.dF2.p, inp: ws.ln2[l].p, n: N, i: D,
            o: F,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        dest.layerNorm(
            dinp: ws.dmid.p, w: bi.norm2w, b: bi.norm2b, weight: p(bi.norm2w), dout: ws.dln.p, inp: ws.mid[l].p,
            mean: ws.ln2Mean[l].p, rstd: ws.ln2Rstd[l].p, n: N, d: D)
        // Attention branch: mid = res[l] + drop(proj(attention(qkv(ln1(res[l]))))).
        ws.dres.p.update(from: ws.dmid.p, count: N * D)
        dbranch = UnsafePointer(ws.dmid.p)
        if ws.dropoutUsed {
            for k in 0..<(N * D) { ws.tmpD.p[k] = ws.dmid.p[k] * ws.attnMask[l].p[k] }
            dbranch = UnsafePointer(ws.tmpD.p)
        }
        dest.linear(
            dinp: ws.datty.p, w: bi.projw, b: bi.projb, weight: p(bi.projw), dout: dbranch, inp: ws.atty[l].p, n: N,
            i: D, o: D,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        Attention.backward(
            dqkv: ws.dqkv.p, scratch: ws.dattScratch.p, dout: ws.datty.p, qkv: ws.qkv[l].p,
            att: ws.att[l].p, texts: ws.texts, attOffsets: ws.attOffsets, d: D, heads: config.nHeads)
        dest.linear(
            dinp: ws.dln.p, w: bi.qkvw, b: bi.qkvb, weight: p(bi.qkvw), dout: ws.dqkv.p, inp: ws.ln1[l].p, n: N, i: D,
            o: 3 * D,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        dest.layerNorm(
            dinp: ws.dres.p, w: bi.norm1w, b: bi.norm1b, weight: p(bi.norm1w), dout: ws.dln.p, inp: ws.res[l].p,
            mean: ws.ln1Mean[l].p, rstd: ws.ln1Rstd[l].p, n: N, d: D)
    }
}
