import TangentTensor

/// What ModernBERT's passes keep beyond `Workspace`: the final norm's output and
/// statistics, and the head's dense output, activation and norm statistics.
final class ModernBuffers<T: BLASScalar> {
    let final = Buffer<T>(), finalMean = Buffer<T>(), finalRstd = Buffer<T>(), dfinal = Buffer<T>()
    let dense = Buffer<T>(), act = Buffer<T>(), headMean = Buffer<T>(), headRstd = Buffer<T>(), dact = Buffer<T>()
}

extension ModernBertClassifier {
    func buffers(_ ws: Workspace<T>) -> ModernBuffers<T> {
        if let b = ws.architectureBuffers as? ModernBuffers<T> { return b }
        let b = ModernBuffers<T>()
        ws.architectureBuffers = b
        return b
    }

    private var pooling: ModelConfig.Pooling { modern.meanPooling ? .mean : .cls }

    /// Dropout mask for one site (0 embeddings, 1 attention output, 2 feed-forward output, 3 classifier input).
    private func mask(
        _ m: UnsafeMutablePointer<T>, _ dropout: DropoutConfig, site: UInt64, layer: Int,
        positions: UnsafePointer<Int32>, _ texts: [Range<Int>], _ firstText: Int
    ) {
        dropout.fill(
            m, site: site, layer: layer, positions: positions, texts: texts, firstText: firstText,
            maxTokens: config.maxTokens, width: config.hiddenSize)
    }

    private func activate(
        _ out: UnsafeMutablePointer<T>, derivative: UnsafeMutablePointer<T>, _ inp: UnsafePointer<T>, count: Int,
        _ kind: HFEncoderConfig.Activation
    ) {
        switch kind {
        case .erf: GELU.forward(out: out, derivative: derivative, inp: inp, count: count)
        case .tanh: GELU.forwardTanh(out: out, derivative: derivative, inp: inp, count: count)
        }
    }

    // MARK: - Forward

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func forwardShard(_ ws: Workspace<T>, batch: TokenBatch, firstText: Int, dropout: DropoutConfig?) {
        let c = config
        let N = batch.tokenCount
        let B = batch.count
        let h = c.hiddenSize
        let C = labels.count
        let eps = T(c.layerNormEps)
        ws.prepare(
            batch, heads: c.heads, width: h, ffWidth: 2 * c.intermediateSize, classes: C, dropout: dropout != nil)
        for b in [ws.poolIn, ws.dpoolIn, ws.headIn, ws.headMask, ws.headDerivative] { b.ensure(B * h) }
        let mb = buffers(ws)
        for b in [mb.final, mb.dfinal] { b.ensure(N * h) }
        for b in [mb.finalMean, mb.finalRstd] { b.ensure(N) }
        for b in [mb.dense, mb.act, mb.dact] { b.ensure(B * h) }
        for b in [mb.headMean, mb.headRstd] { b.ensure(B) }
        let rows: [Range<Int>]? = rowInvariant ? ws.texts : nil
        let perText = (0..<B).map { $0..<($0 + 1) }
        // Embeddings: the token rows (kept in lnf), their norm, dropout.
        let table = p(word)
        for r in 0..<N { (ws.lnf.p + r * h).update(from: table + Int(batch.ids[r]) * h, count: h) }
        LayerNorm.forward(
            out: ws.res[0].p, mean: ws.lnfMean.p, rstd: ws.lnfRstd.p, inp: ws.lnf.p, weight: p(embNorm.w),
            bias: bias(embNorm.b),
            n: N, d: h, eps: eps)
        batch.positions.withUnsafeBufferPointer { positions in
            if let dropout {
                mask(ws.embMask.p, dropout, site: 0, layer: 0, positions: positions.baseAddress!, ws.texts, firstText)
                for k in 0..<(N * h) { ws.res[0].p[k] *= ws.embMask.p[k] }
            }
            for l in 0..<layerIndices.count {
                forwardLayer(
                    l, ws, dropout: dropout, positions: positions.baseAddress!, firstText: firstText, rows: rows)
            }
        }
        let L = layerIndices.count
        LayerNorm.forward(
            out: mb.final.p, mean: mb.finalMean.p, rstd: mb.finalRstd.p, inp: ws.res[L].p, weight: p(finalNorm.w),
            bias: bias(finalNorm.b), n: N, d: h, eps: eps)
        // Head: pool, dense, activation, norm (the pooled embedding e(x)), dropout, classifier.
        Pooling.forward(out: ws.poolIn.p, inp: mb.final.p, texts: ws.texts, d: h, mode: pooling)
        Linear.forward(
            out: mb.dense.p, inp: ws.poolIn.p, weight: p(headDense.w), bias: bias(headDense.b), n: B, i: h, o: h,
            rows: rowInvariant ? perText : nil)
        activate(mb.act.p, derivative: ws.headDerivative.p, mb.dense.p, count: B * h, modern.headActivation)
        LayerNorm.forward(
            out: ws.pooled.p, mean: mb.headMean.p, rstd: mb.headRstd.p, inp: mb.act.p, weight: p(headNorm.w),
            bias: bias(headNorm.b),
            n: B, d: h, eps: eps)
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
            out: ws.logits.p, inp: headInput, weight: p(classifier.w), bias: bias(classifier.b), n: B, i: h, o: C,
            rows: rowInvariant ? perText : nil)
    }

    /// One pre-norm layer. Saved: res[l] = x, ln1[l] = attn_norm(x) (layer 0: none), qkv
    /// (rotated), att, atty, mid[l] = x + attention branch, ln2[l] = mlp_norm(mid), fc1[l]
    /// = Wi's output [N, 2F] with gelu'(a) in place of a, gelu[l] = [gelu(a) * g | gelu(a)],
    /// res[l+1] = mid + feed-forward branch.
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
        var input = UnsafePointer(x)
        if let norm = li.attnNorm {
            LayerNorm.forward(
                out: ws.ln1[l].p, mean: ws.ln1Mean[l].p, rstd: ws.ln1Rstd[l].p, inp: x, weight: p(norm.w),
                bias: bias(norm.b),
                n: N, d: h, eps: eps)
            input = UnsafePointer(ws.ln1[l].p)
        }
        Linear.forward(
            out: ws.qkv[l].p, inp: input, weight: p(li.qkv.w), bias: bias(li.qkv.b), n: N, i: h, o: 3 * h, rows: rows)
        let global = modern.global[l]
        (global ? globalRotary : localRotary).apply(ws.qkv[l].p, positions: positions, n: N, d: h, heads: c.heads)
        Attention.forward(
            out: ws.atty[l].p, att: ws.att[l].p, qkv: ws.qkv[l].p, texts: ws.texts, attOffsets: ws.attOffsets,
            d: h, heads: c.heads, window: global ? nil : modern.window)
        Linear.forward(
            out: ws.tmpD.p, inp: ws.atty[l].p, weight: p(li.out.w), bias: bias(li.out.b), n: N, i: h, o: h, rows: rows)
        if let dropout {
            mask(ws.attnMask[l].p, dropout, site: 1, layer: l, positions: positions, ws.texts, firstText)
            for k in 0..<(N * h) { ws.tmpD.p[k] *= ws.attnMask[l].p[k] }
        }
        for k in 0..<(N * h) { ws.mid[l].p[k] = x[k] + ws.tmpD.p[k] }
        LayerNorm.forward(
            out: ws.ln2[l].p, mean: ws.ln2Mean[l].p, rstd: ws.ln2Rstd[l].p, inp: ws.mid[l].p, weight: p(li.mlpNorm.w),
            bias: bias(li.mlpNorm.b), n: N, d: h, eps: eps)
        let wi = ws.fc1[l].p
        let product = ws.gelu[l].p
        let activated = ws.gelu[l].p + N * f
        Linear.forward(
            out: wi, inp: ws.ln2[l].p, weight: p(li.wi.w), bias: bias(li.wi.b), n: N, i: h, o: 2 * f, rows: rows)
        // GeGLU: gelu(a) * g for (a, g) the two halves of each row.
        for r in 0..<N {
            activate(activated + r * f, derivative: wi + r * 2 * f, wi + r * 2 * f, count: f, c.activation)
            let g = wi + r * 2 * f + f
            let a = activated + r * f
            let y = product + r * f
            for j in 0..<f { y[j] = a[j] * g[j] }
        }
        Linear.forward(
            out: ws.tmpD.p, inp: product, weight: p(li.wo.w), bias: bias(li.wo.b), n: N, i: f, o: h, rows: rows)
        if let dropout {
            mask(ws.mlpMask[l].p, dropout, site: 2, layer: l, positions: positions, ws.texts, firstText)
            for k in 0..<(N * h) { ws.tmpD.p[k] *= ws.mlpMask[l].p[k] }
        }
        for k in 0..<(N * h) { ws.res[l + 1].p[k] = ws.mid[l].p[k] + ws.tmpD.p[k] }
    }

    // MARK: - Backward

    /// The layer group of tensor i: 0 embeddings, l+1 layer l, n+1 the final norm, n+2 the
    /// head, n+3 the classifier.
    private func groupOrdinal(_ i: Int) -> Int {
        let n = layerIndices.count
        if i == classifier.w || i == classifier.b { return n + 3 }
        if [headDense.w, headDense.b, headNorm.w, headNorm.b].contains(i) { return n + 2 }
        if i == finalNorm.w || i == finalNorm.b { return n + 1 }
        for (l, li) in layerIndices.enumerated() {
            let all = [
                li.attnNorm?.w, li.attnNorm?.b, li.qkv.w, li.qkv.b, li.out.w, li.out.b, li.mlpNorm.w, li.mlpNorm.b,
                li.wi.w, li.wi.b, li.wo.w, li.wo.b,
            ]
            if all.contains(i) { return l + 1 }
        }
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
            needEmbeddingRows ? 0 : (offsets.indices.filter { offsets[$0] != nil }.map(groupOrdinal).min() ?? L + 4)
        if lowest > L + 3 { return }
        let mb = buffers(ws)
        let textRows: [Range<Int>]? = rowInvariant ? perText : nil
        let headInput = ws.dropoutUsed ? UnsafePointer(ws.headIn.p) : UnsafePointer(ws.pooled.p)
        dest.linear(
            dinp: ws.dpooled.p, w: classifier.w, b: classifier.b, weight: p(classifier.w), dout: seed, inp: headInput,
            n: B, i: h, o: C, segments: dest.texts, rows: textRows, streamRows: perText)
        if lowest > L + 2 { return }
        if ws.dropoutUsed { for k in 0..<(B * h) { ws.dpooled.p[k] *= ws.headMask.p[k] } }
        mb.dact.zero(B * h)
        dest.layerNorm(
            dinp: mb.dact.p, w: headNorm.w, b: headNorm.b, weight: p(headNorm.w), dout: ws.dpooled.p, inp: mb.act.p,
            mean: mb.headMean.p, rstd: mb.headRstd.p, n: B, d: h, segments: dest.texts, streamRanges: perText)
        for k in 0..<(B * h) { mb.dact.p[k] *= ws.headDerivative.p[k] }
        dest.linear(
            dinp: ws.dpoolIn.p, w: headDense.w, b: headDense.b, weight: p(headDense.w), dout: mb.dact.p,
            inp: ws.poolIn.p,
            n: B, i: h, o: h, segments: dest.texts, rows: textRows, streamRows: perText)
        if lowest > L + 1 { return }
        Pooling.backward(dinp: mb.dfinal.p, dout: ws.dpoolIn.p, texts: ws.texts, d: h, mode: pooling)
        ws.dres.zero(N * h)
        dest.layerNorm(
            dinp: ws.dres.p, w: finalNorm.w, b: finalNorm.b, weight: p(finalNorm.w), dout: mb.dfinal.p,
            inp: ws.res[L].p,
            mean: mb.finalMean.p, rstd: mb.finalRstd.p, n: N, d: h)
        if lowest > L { return }
        ws.batch.positions.withUnsafeBufferPointer { positions in
            for l in stride(from: L - 1, through: 0, by: -1) where lowest <= l + 1 {
                backwardLayer(l, ws, dest, positions: positions.baseAddress!)
            }
        }
        if lowest > 0 { return }
        // res[0] = drop(norm(token rows)): the token rows' gradient ends in dres.
        if ws.dropoutUsed { for k in 0..<(N * h) { ws.dres.p[k] *= ws.embMask.p[k] } }
        ws.dln.zero(N * h)
        dest.layerNorm(
            dinp: ws.dln.p, w: embNorm.w, b: embNorm.b, weight: p(embNorm.w), dout: ws.dres.p, inp: ws.lnf.p,
            mean: ws.lnfMean.p, rstd: ws.lnfRstd.p, n: N, d: h)
        ws.dres.p.update(from: ws.dln.p, count: N * h)
        ws.batch.ids.withUnsafeBufferPointer { ids in
            Embedding.backward(
                dtokenTable: dest.slot(word), dpositionTable: nil, dout: ws.dres.p, ids: ids.baseAddress!,
                positions: ids.baseAddress!, d: h, segments: dest.tokens)
        }
    }

    /// One layer's backward, from ws.dres = d res[l+1] to ws.dres = d res[l] (see `forwardLayer`).
    private func backwardLayer(
        _ l: Int, _ ws: Workspace<T>, _ dest: GradientDestination<T>, positions: UnsafePointer<Int32>
    ) {
        let c = config
        let N = ws.batch.tokenCount
        let h = c.hiddenSize
        let f = c.intermediateSize
        let li = layerIndices[l]
        let rows: [Range<Int>]? = rowInvariant ? ws.texts : nil
        // res[l+1] = mid + drop(Wo(gelu(a) * g)).
        ws.dmid.p.update(from: ws.dres.p, count: N * h)
        var dbranch = UnsafePointer(ws.dres.p)
        if ws.dropoutUsed {
            for k in 0..<(N * h) { ws.tmpD.p[k] = ws.dres.p[k] * ws.mlpMask[l].p[k] }
            dbranch = UnsafePointer(ws.tmpD.p)
        }
        let wi = ws.fc1[l].p
        let product = ws.gelu[l].p
        let activated = ws.gelu[l].p + N * f
        let dproduct = ws.dF2.p
        let dwi = ws.dF1.p
        dest.linear(
            dinp: dproduct, w: li.wo.w, b: li.wo.b, weight: p(li.wo.w), dout: dbranch, inp: product, n: N, i: f, o: h,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        for r in 0..<N {
            let dp = dproduct + r * f
            let row = wi + r * 2 * f
            let a = activated + r * f
            let d = dwi + r * 2 * f
            for j in 0..<f {
                d[j] = dp[j] * row[f + j] * row[j]
                d[f + j] = dp[j] * a[j]
            }
        }
        dest.linear(
            dinp: ws.dln.p, w: li.wi.w, b: li.wi.b, weight: p(li.wi.w), dout: dwi, inp: ws.ln2[l].p, n: N, i: h,
            o: 2 * f,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        dest.layerNorm(
            dinp: ws.dmid.p, w: li.mlpNorm.w, b: li.mlpNorm.b, weight: p(li.mlpNorm.w), dout: ws.dln.p,
            inp: ws.mid[l].p,
            mean: ws.ln2Mean[l].p, rstd: ws.ln2Rstd[l].p, n: N, d: h)
        // mid = x + drop(Wo(attention(rotary(Wqkv(attn_norm(x)))))).
        dbranch = UnsafePointer(ws.dmid.p)
        if ws.dropoutUsed {
            for k in 0..<(N * h) { ws.tmpD.p[k] = ws.dmid.p[k] * ws.attnMask[l].p[k] }
            dbranch = UnsafePointer(ws.tmpD.p)
        }
        dest.linear(
            dinp: ws.datty.p, w: li.out.w, b: li.out.b, weight: p(li.out.w), dout: dbranch, inp: ws.atty[l].p, n: N,
            i: h, o: h,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        Attention.backward(
            dqkv: ws.dqkv.p, scratch: ws.dattScratch.p, dout: ws.datty.p, qkv: ws.qkv[l].p, att: ws.att[l].p,
            texts: ws.texts, attOffsets: ws.attOffsets, d: h, heads: c.heads)
        (modern.global[l] ? globalRotary : localRotary).apply(
            ws.dqkv.p, positions: positions, n: N, d: h, heads: c.heads, inverse: true)
        let input = li.attnNorm == nil ? UnsafePointer(ws.res[l].p) : UnsafePointer(ws.ln1[l].p)
        dest.linear(
            dinp: ws.dln.p, w: li.qkv.w, b: li.qkv.b, weight: p(li.qkv.w), dout: ws.dqkv.p, inp: input, n: N, i: h,
            o: 3 * h,
            segments: dest.tokens, rows: rows, streamRows: ws.texts)
        ws.dres.p.update(from: ws.dmid.p, count: N * h)
        if let norm = li.attnNorm {
            dest.layerNorm(
                dinp: ws.dres.p, w: norm.w, b: norm.b, weight: p(norm.w), dout: ws.dln.p, inp: ws.res[l].p,
                mean: ws.ln1Mean[l].p, rstd: ws.ln1Rstd[l].p, n: N, d: h)
        } else {
            for k in 0..<(N * h) { ws.dres.p[k] += ws.dln.p[k] }
        }
    }
}
