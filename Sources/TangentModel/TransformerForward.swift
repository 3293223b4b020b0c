import Foundation
import TangentTensor

// One shard's forward pass: embeddings, the blocks, the final norm, pooling and the head,
// with dropout masks that are a pure function of the text's place in the run.
extension TransformerClassifier {

    /// The forward pass of the shard `batch` (its first text is `firstText` of the whole
    /// batch), activations kept in `ws`.
    func forwardTexts(_ ws: Workspace<T>, batch: TokenBatch, firstText: Int, dropout: DropoutConfig?) {
        let c = config
        let N = batch.tokenCount
        let B = batch.count
        let D = c.dModel
        let C = c.nClasses
        let eps = T(c.normEps)
        ws.prepare(batch, config: c, dropout: dropout != nil)
        let tokRows: [Range<Int>]? = rowInvariant ? ws.texts : nil
        let textRows: [Range<Int>]? = rowInvariant ? (0..<B).map { $0..<($0 + 1) } : nil
        batch.ids.withUnsafeBufferPointer { ids in
            batch.positions.withUnsafeBufferPointer { pos in
                Embedding.forward(
                    out: ws.res[0].p, ids: ids.baseAddress!, positions: pos.baseAddress!,
                    tokenTable: p(tokIdx), positionTable: p(posIdx), n: N, d: D)
                if let dropout {
                    fillMask(
                        ws.embMask.p, dropout: dropout, site: 0, layer: 0, positions: pos.baseAddress!, texts: ws.texts,
                        firstText: firstText)
                    for k in 0..<(N * D) { ws.res[0].p[k] *= ws.embMask.p[k] }
                }
                for l in 0..<c.nLayers {
                    forwardBlock(
                        l, ws, dropout: dropout, positions: pos.baseAddress!, firstText: firstText, rows: tokRows)
                }
            }
        }
        let last = ws.res[c.nLayers].p
        LayerNorm.forward(
            out: ws.lnf.p, mean: ws.lnfMean.p, rstd: ws.lnfRstd.p, inp: last,
            weight: p(normw), bias: p(normb), n: N, d: D, eps: eps)
        Pooling.forward(out: ws.pooled.p, inp: ws.lnf.p, texts: ws.texts, d: D, mode: c.pooling)
        Linear.forward(
            out: ws.logits.p, inp: ws.pooled.p, weight: p(headw), bias: p(headb), n: B, i: D, o: C, rows: textRows)
    }

    /// Inverted dropout's mask for one site (0 embeddings, 1 attention, 2 MLP) of layer `layer`.
    func fillMask(
        _ mask: UnsafeMutablePointer<T>, dropout: DropoutConfig, site: UInt64, layer: Int,
        positions: UnsafePointer<Int32>, texts: [Range<Int>], firstText: Int
    ) {
        dropout.fill(
            mask, site: site, layer: layer, positions: positions, texts: texts, firstText: firstText,
            maxTokens: config.maxLen, width: config.dModel)
    }

    /// One block's forward: res[l+1] = mid + drop(fc2(gelu(fc1(ln2(mid))))), with
    /// mid = res[l] + drop(proj(attention(qkv(ln1(res[l]))))); activations kept in `ws`.
    func forwardBlock(
        _ l: Int, _ ws: Workspace<T>, dropout: DropoutConfig?, positions: UnsafePointer<Int32>, firstText: Int,
        rows tokRows: [Range<Int>]?
    ) {
        let c = config
        let N = ws.batch.tokenCount
        let D = c.dModel
        let F = c.dFF
        let eps = T(c.normEps)
        let bi = blocks[l]
        LayerNorm.forward(
            out: ws.ln1[l].p, mean: ws.ln1Mean[l].p, rstd: ws.ln1Rstd[l].p, inp: ws.res[l].p,
            weight: p(bi.norm1w), bias: p(bi.norm1b), n: N, d: D, eps: eps)
        Linear.forward(
            out: ws.qkv[l].p, inp: ws.ln1[l].p, weight: p(bi.qkvw), bias: p(bi.qkvb), n: N, i: D, o: 3 * D,
            rows: tokRows)
        Attention.forward(
            out: ws.atty[l].p, att: ws.att[l].p, qkv: ws.qkv[l].p, texts: ws.texts,
            attOffsets: ws.attOffsets, d: D, heads: c.nHeads)
        Linear.forward(
            out: ws.tmpD.p, inp: ws.atty[l].p, weight: p(bi.projw), bias: p(bi.projb), n: N, i: D, o: D, rows: tokRows)
        if let dropout {
            fillMask(
                ws.attnMask[l].p, dropout: dropout, site: 1, layer: l, positions: positions, texts: ws.texts,
                firstText: firstText)
            for k in 0..<(N * D) { ws.tmpD.p[k] *= ws.attnMask[l].p[k] }
        }
        for k in 0..<(N * D) { ws.mid[l].p[k] = ws.res[l].p[k] + ws.tmpD.p[k] }
        LayerNorm.forward(
            out: ws.ln2[l].p, mean: ws.ln2Mean[l].p, rstd: ws.ln2Rstd[l].p, inp: ws.mid[l].p,
            weight: p(bi.norm2w), bias: p(bi.norm2b), n: N, d: D, eps: eps)
        Linear.forward(
            out: ws.fc1[l].p, inp: ws.ln2[l].p, weight: p(bi.fc1w), bias: p(bi.fc1b), n: N, i: D, o: F, rows: tokRows)
        GELU.forward(out: ws.gelu[l].p, derivative: ws.fc1[l].p, inp: ws.fc1[l].p, count: N * F)
        Linear.forward(
            out: ws.tmpD.p, inp: ws.gelu[l].p, weight: p(bi.fc2w), bias: p(bi.fc2b), n: N, i: F, o: D, rows: tokRows)
        if let dropout {
            fillMask(
                ws.mlpMask[l].p, dropout: dropout, site: 2, layer: l, positions: positions, texts: ws.texts,
                firstText: firstText)
            for k in 0..<(N * D) { ws.tmpD.p[k] *= ws.mlpMask[l].p[k] }
        }
        for k in 0..<(N * D) { ws.res[l + 1].p[k] = ws.mid[l].p[k] + ws.tmpD.p[k] }
    }
}
