import TangentTensor

/// DeBERTa-v2/v3's relative-position path through `BertClassifier`: the table
/// `encoder.rel_embeddings` (2 span rows), its LayerNorm (`norm_rel_ebd`), and per layer
/// its projections Kr = R Wk^T + bk and Qr = R Wq^T + bq by the layer's key and query
/// (or `pos_key_proj` / `pos_query_proj`), which `DisentangledAttention` reads.
///
/// In the backward pass every text's Kr and Qr gradients pass back through the same
/// projections: the weights' gradients gain dKr^T R (per text when gradients are per
/// text), and the table's gradient is the sum of dKr Wk + dQr Wq over the layers. Per
/// text, only the rows a text's relative positions reach are touched
/// (`DisentangledAttention.usedRows`), so the cost grows with the text's length, not
/// with the table's.
final class RelativeBuffers<T: BLASScalar> {
    /// The table after its LayerNorm [R, D], with the norm's saved statistics.
    let rows = Buffer<T>(), mean = Buffer<T>(), rstd = Buffer<T>()
    /// Each layer's projected table [R, D] (keys for c2p, queries for p2c).
    var keys: [Buffer<T>], queries: [Buffer<T>]
    /// The attention's scratch (forward and backward).
    let scratch = Buffer<T>()
    /// Backward: the rows each text reads, as ranges of the blocks below (one block per
    /// text when gradients are per text, else one block and one range).
    var ranges: [Range<Int>] = []
    /// Per text: the normalized table, the raw table and its statistics, copied per block.
    let rowsCopy = Buffer<T>(), rawCopy = Buffer<T>(), meanCopy = Buffer<T>(), rstdCopy = Buffer<T>()
    /// Per block: the gradient of one layer's Kr and Qr, of the normalized table (all
    /// layers) and of the raw table.
    let dkeys = Buffer<T>(), dqueries = Buffer<T>(), drows = Buffer<T>(), draw = Buffer<T>()
    /// Row r of every block's table row r mod R, for the scatter into the table's gradient.
    var rowIDs: [Int32] = []

    init(layers: Int) {
        keys = (0..<layers).map { _ in Buffer<T>() }
        queries = (0..<layers).map { _ in Buffer<T>() }
    }
}

extension HFEncoderConfig.RelativeAttention {
    var positions: DisentangledAttention.Positions { .init(span: span, buckets: buckets, maxPosition: maxRelative) }
    /// The rows of the relative table a text of `length` tokens reads.
    public func usedRows(length: Int) -> ClosedRange<Int> { DisentangledAttention.usedRows(positions, length: length) }
    var terms: DisentangledAttention.Terms {
        .init(c2p: enabled && c2p, p2c: enabled && p2c, factor: 1 + (c2p ? 1 : 0) + (p2c ? 1 : 0))
    }
}

extension BertClassifier {
    /// This workspace's relative buffers, made on first use.
    func relativeBuffers(_ ws: Workspace<T>) -> RelativeBuffers<T> {
        if let b = ws.architectureBuffers as? RelativeBuffers<T> { return b }
        let b = RelativeBuffers<T>(layers: layerIndices.count)
        ws.architectureBuffers = b
        return b
    }

    /// The normalized table, once per forward pass (all layers read it).
    func relativeTableForward(_ ws: Workspace<T>) {
        guard let t = relativeTable, let r = config.relative else { return }
        let rb = relativeBuffers(ws)
        let R = 2 * r.span
        let h = config.hiddenSize
        rb.rows.ensure(R * h)
        rb.mean.ensure(R)
        rb.rstd.ensure(R)
        if let norm = t.norm {
            LayerNorm.forward(
                out: rb.rows.p, mean: rb.mean.p, rstd: rb.rstd.p, inp: p(t.table), weight: p(norm.w), bias: p(norm.b),
                n: R, d: h, eps: T(config.layerNormEps))
        } else {
            rb.rows.p.update(from: p(t.table), count: R * h)
        }
    }

    /// Layer l's attention: its projections of the table, then the disentangled scores.
    func relativeAttentionForward(_ l: Int, _ ws: Workspace<T>) {
        let r = config.relative!
        let rb = relativeBuffers(ws)
        let li = layerIndices[l]
        let R = 2 * r.span
        let h = config.hiddenSize
        rb.keys[l].ensure(R * h)
        rb.queries[l].ensure(R * h)
        // All R rows in one product whatever the batch, so each text's numbers are the same in any batch.
        if let k = li.relativeKey {
            Linear.forward(out: rb.keys[l].p, inp: rb.rows.p, weight: p(k.w), bias: p(k.b), n: R, i: h, o: h)
        }
        if let q = li.relativeQuery {
            Linear.forward(out: rb.queries[l].p, inp: rb.rows.p, weight: p(q.w), bias: p(q.b), n: R, i: h, o: h)
        }
        let maxL = ws.texts.map(\.count).max() ?? 1
        rb.scratch.ensure(maxL * (maxL + R))
        DisentangledAttention.forward(
            out: ws.atty[l].p, att: ws.att[l].p, scratch: rb.scratch.p, qkv: ws.qkv[l].p,
            kr: rb.keys[l].p, qr: rb.queries[l].p, positions: r.positions, terms: r.terms,
            texts: ws.texts, attOffsets: ws.attOffsets, d: h, heads: config.heads)
    }

    /// Before the layers' backward: the rows each text reads, the table copied per text
    /// when gradients are per text, and the table's gradient zeroed.
    func relativeBackwardStart(_ ws: Workspace<T>, _ dest: GradientDestination<T>) {
        guard let r = config.relative, r.enabled else { return }
        let rb = relativeBuffers(ws)
        let R = 2 * r.span
        let h = config.hiddenSize
        let used = ws.texts.map { r.usedRows(length: $0.count) }
        if dest.perText {
            let B = ws.texts.count
            rb.ranges = used.enumerated().map { b, u in (b * R + u.lowerBound)..<(b * R + u.upperBound + 1) }
            for buffer in [rb.rowsCopy, rb.rawCopy, rb.dkeys, rb.dqueries, rb.drows, rb.draw] {
                buffer.ensure(B * R * h)
            }
            rb.meanCopy.ensure(B * R)
            rb.rstdCopy.ensure(B * R)
            for (b, range) in rb.ranges.enumerated() {
                let first = range.lowerBound - b * R
                (rb.rowsCopy.p + range.lowerBound * h).update(from: rb.rows.p + first * h, count: range.count * h)
                if let table = relativeTable, table.norm != nil {
                    (rb.rawCopy.p + range.lowerBound * h).update(
                        from: p(table.table) + first * h, count: range.count * h)
                    (rb.meanCopy.p + range.lowerBound).update(from: rb.mean.p + first, count: range.count)
                    (rb.rstdCopy.p + range.lowerBound).update(from: rb.rstd.p + first, count: range.count)
                }
            }
        } else {
            rb.ranges = [(used.map(\.lowerBound).min() ?? 0)..<((used.map(\.upperBound).max() ?? -1) + 1)]
            for buffer in [rb.dkeys, rb.dqueries, rb.drows, rb.draw] { buffer.ensure(R * h) }
        }
        if rb.rowIDs.count < rb.ranges.count * R || rb.rowIDs.count < R {
            rb.rowIDs = (0..<(max(rb.ranges.count, 1) * R)).map { Int32($0 % R) }
        }
        for range in rb.ranges { (rb.drows.p + range.lowerBound * h).update(repeating: 0, count: range.count * h) }
    }

    /// Segments over the rows texts read: per text at the gradient stride, or one summed.
    private func relativeSegments(_ rb: RelativeBuffers<T>, _ dest: GradientDestination<T>) -> Segments {
        Segments(ranges: rb.ranges, stride: dest.perText ? dest.tokens.stride : 0)
    }

    /// Whether the table's gradient is wanted (then the rows' input gradients are kept).
    private func relativeTableWanted(_ dest: GradientDestination<T>) -> Bool {
        guard let t = relativeTable else { return false }
        return dest.wanted(t.table) || t.norm.map { dest.wanted($0.w) || dest.wanted($0.b) } == true
    }

    /// Layer l's attention backward: dqkv written, this layer's dKr and dQr per block.
    func relativeAttentionBackward(_ l: Int, _ ws: Workspace<T>, _ dest: GradientDestination<T>) {
        let r = config.relative!
        let rb = relativeBuffers(ws)
        let R = 2 * r.span
        let h = config.hiddenSize
        for range in rb.ranges where r.enabled {
            (rb.dkeys.p + range.lowerBound * h).update(repeating: 0, count: range.count * h)
            (rb.dqueries.p + range.lowerBound * h).update(repeating: 0, count: range.count * h)
        }
        let maxL = ws.texts.map(\.count).max() ?? 1
        rb.scratch.ensure(maxL * (maxL + R))
        DisentangledAttention.backward(
            dqkv: ws.dqkv.p, dkr: rb.dkeys.p, dqr: rb.dqueries.p, perText: dest.perText ? R * h : nil,
            scratch: rb.scratch.p, dout: ws.datty.p, qkv: ws.qkv[l].p, kr: rb.keys[l].p, qr: rb.queries[l].p,
            att: ws.att[l].p, positions: r.positions, terms: r.terms, texts: ws.texts, attOffsets: ws.attOffsets,
            d: h, heads: config.heads)
    }

    /// The table's rows that layer l's projection with weight `weight` also projected, as
    /// extra rows of that projection's backward (nil: it projected none).
    func relativeRows(_ l: Int, _ ws: Workspace<T>, _ dest: GradientDestination<T>, weight: Int) -> GradientDestination<
        T
    >.ExtraRows? {
        let li = layerIndices[l]
        guard config.relative?.enabled == true, li.relativeKey?.w == weight || li.relativeQuery?.w == weight else {
            return nil
        }
        let rb = relativeBuffers(ws)
        let dout = li.relativeKey?.w == weight ? rb.dkeys.p : rb.dqueries.p
        return .init(
            dinp: relativeTableWanted(dest) ? rb.drows.p : nil, dout: dout,
            inp: dest.perText ? rb.rowsCopy.p : rb.rows.p,
            segments: relativeSegments(rb, dest), streamRows: rb.ranges)
    }

    /// Layer l's own projections of the table (`share_att_key` off): their gradients, and
    /// the table's through them.
    func relativeProjectionsBackward(_ l: Int, _ ws: Workspace<T>, _ dest: GradientDestination<T>) {
        let li = layerIndices[l]
        let h = config.hiddenSize
        for (projection, isKey) in [(li.relativeKey, true), (li.relativeQuery, false)] {
            guard let w = projection, w.w != li.k, w.w != li.q else { continue }
            let rb = relativeBuffers(ws)
            dest.linear(
                dinp: relativeTableWanted(dest) ? rb.drows.p : nil, accumulateInput: true, w: w.w, b: w.b,
                weight: p(w.w),
                dout: isKey ? rb.dkeys.p : rb.dqueries.p, inp: dest.perText ? rb.rowsCopy.p : rb.rows.p,
                n: 0, i: h, o: h, segments: relativeSegments(rb, dest), rows: rb.ranges, streamRows: rb.ranges)
        }
    }

    /// After the layers: the gradient of the table (through its LayerNorm) and of the norm.
    func relativeTableBackward(_ ws: Workspace<T>, _ dest: GradientDestination<T>) {
        guard let t = relativeTable, relativeTableWanted(dest) else { return }
        let rb = relativeBuffers(ws)
        let h = config.hiddenSize
        let R = rb.rowIDs.isEmpty ? 0 : 2 * config.relative!.span
        let segments = relativeSegments(rb, dest)
        var gradient = UnsafePointer(rb.drows.p)
        if let norm = t.norm {
            for range in rb.ranges { (rb.draw.p + range.lowerBound * h).update(repeating: 0, count: range.count * h) }
            let (raw, mean, rstd) =
                dest.perText
                ? (UnsafePointer(rb.rawCopy.p), UnsafePointer(rb.meanCopy.p), UnsafePointer(rb.rstdCopy.p))
                : (UnsafePointer(p(t.table)), UnsafePointer(rb.mean.p), UnsafePointer(rb.rstd.p))
            dest.layerNorm(
                dinp: rb.draw.p, w: norm.w, b: norm.b, weight: p(norm.w), dout: rb.drows.p, inp: raw, mean: mean,
                rstd: rstd,
                n: 0, d: h, segments: segments, streamRanges: rb.ranges)
            gradient = UnsafePointer(rb.draw.p)
        }
        // Each block's row x is the table's row x mod R.
        rb.rowIDs.withUnsafeBufferPointer { ids in
            let id = ids.baseAddress!
            Embedding.backward(
                dtokenTable: dest.slot(t.table), dpositionTable: nil, dout: gradient, ids: id, positions: id, d: h,
                segments: segments)
            dest.small([t.table], width: R * h, ranges: rb.ranges) { dt, _, seg in
                Embedding.backward(
                    dtokenTable: dt, dpositionTable: nil, dout: gradient, ids: id, positions: id, d: h, segments: seg)
            }
        }
    }
}
