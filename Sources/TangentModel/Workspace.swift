import TangentTensor

/// Activations that one shard's forward pass saves for its backward pass, and the
/// scratch the backward pass needs. Buffers grow to the largest batch seen and are
/// then reused, so steady-state training allocates nothing.
///
/// Dimension letters: N packed tokens, B texts, D model width, F feed-forward width,
/// C classes, A attention probabilities (heads x sum of squared text lengths).
final class Workspace<T: BLASScalar> {
    let nLayers: Int
    // Saved by forward.
    var res: [Buffer<T>]  // nLayers+1 x [N, D]: residual stream entering each block, then final
    var mid: [Buffer<T>]  // nLayers x [N, D]: residual after attention
    var ln1: [Buffer<T>], ln1Mean: [Buffer<T>], ln1Rstd: [Buffer<T>]
    var ln2: [Buffer<T>], ln2Mean: [Buffer<T>], ln2Rstd: [Buffer<T>]
    var qkv: [Buffer<T>]  // [N, 3D]
    var att: [Buffer<T>]  // [A]
    var atty: [Buffer<T>]  // [N, D] attention output before projection
    var fc1: [Buffer<T>]  // [N, F] pre-activation, replaced by the forward with gelu'(pre-activation)
    var gelu: [Buffer<T>]  // [N, F]
    var attnMask: [Buffer<T>], mlpMask: [Buffer<T>]  // dropout scales [N, D]
    var embMask = Buffer<T>()
    var lnf = Buffer<T>(), lnfMean = Buffer<T>(), lnfRstd = Buffer<T>()
    var pooled = Buffer<T>()  // [B, D]
    var logits = Buffer<T>()  // [B, C]
    // Scratch for forward and backward.
    var tmpD = Buffer<T>()  // [N, D]
    var dres = Buffer<T>(), dmid = Buffer<T>(), dln = Buffer<T>(), datty = Buffer<T>()  // [N, D]
    var dF1 = Buffer<T>(), dF2 = Buffer<T>()  // [N, F]
    var dqkv = Buffer<T>()  // [N, 3D]
    var dpooled = Buffer<T>()  // [B, D]
    var dattScratch = Buffer<T>()  // [maxL, maxL]
    var gradScratch = Buffer<T>()  // one text's gradient of a tensor, or a shard's of small tensors
    // Used by encoders that pool one token through a dense layer (the BERT family).
    var poolIn = Buffer<T>(), dpoolIn = Buffer<T>()  // [B, D] first-token states and their gradient
    var headIn = Buffer<T>(), headMask = Buffer<T>()  // [B, D] classifier input after dropout, and its mask
    var headDerivative = Buffer<T>()  // [B, D] the head activation's derivative (ELECTRA's GELU)
    var embOut = Buffer<T>()  // [N, E] embedding output before its projection to the layers (ELECTRA)
    var tokenPositions: [Int32] = []  // [N] position ids after the architecture's offset
    var tokenTypes: [Int32] = []  // [N] token-type ids (all 0: one segment per text)
    /// Buffers an architecture keeps beyond these (DeBERTa's relative tables), created and
    /// typed by the architecture that uses them, so that a new one does not edit this class.
    var architectureBuffers: AnyObject?

    // Shape of the batch currently held.
    var batch = TokenBatch(sequences: [])
    var texts: [Range<Int>] = []
    var attOffsets: [Int] = []
    var dropoutUsed = false

    init(nLayers: Int) {
        self.nLayers = nLayers
        func many(_ k: Int) -> [Buffer<T>] { (0..<k).map { _ in Buffer<T>() } }
        res = many(nLayers + 1)
        mid = many(nLayers)
        ln1 = many(nLayers)
        ln1Mean = many(nLayers)
        ln1Rstd = many(nLayers)
        ln2 = many(nLayers)
        ln2Mean = many(nLayers)
        ln2Rstd = many(nLayers)
        qkv = many(nLayers)
        att = many(nLayers)
        atty = many(nLayers)
        fc1 = many(nLayers)
        gelu = many(nLayers)
        attnMask = many(nLayers)
        mlpMask = many(nLayers)
    }

    /// Sizes every buffer for `batch` under `config`.
    func prepare(_ batch: TokenBatch, config c: ModelConfig, dropout: Bool) {
        prepare(batch, heads: c.nHeads, width: c.dModel, ffWidth: c.dFF, classes: c.nClasses, dropout: dropout)
    }

    /// Sizes every buffer for `batch` on a model of these sizes.
    func prepare(_ batch: TokenBatch, heads: Int, width D: Int, ffWidth F: Int, classes: Int, dropout: Bool) {
        self.batch = batch
        texts = batch.ranges
        var offs: [Int] = []
        var a = 0
        var maxL = 1
        for r in texts {
            offs.append(a)
            a += heads * r.count * r.count
            maxL = max(maxL, r.count)
        }
        attOffsets = offs
        dropoutUsed = dropout
        let N = batch.tokenCount
        let B = batch.count
        for b in res { b.ensure(N * D) }
        for l in 0..<nLayers {
            mid[l].ensure(N * D)
            ln1[l].ensure(N * D)
            ln2[l].ensure(N * D)
            atty[l].ensure(N * D)
            ln1Mean[l].ensure(N)
            ln1Rstd[l].ensure(N)
            ln2Mean[l].ensure(N)
            ln2Rstd[l].ensure(N)
            qkv[l].ensure(N * 3 * D)
            att[l].ensure(a)
            fc1[l].ensure(N * F)
            gelu[l].ensure(N * F)
            if dropout {
                attnMask[l].ensure(N * D)
                mlpMask[l].ensure(N * D)
            }
        }
        if dropout { embMask.ensure(N * D) }
        lnf.ensure(N * D)
        lnfMean.ensure(N)
        lnfRstd.ensure(N)
        pooled.ensure(B * D)
        logits.ensure(B * classes)
        tmpD.ensure(N * D)
        dres.ensure(N * D)
        dmid.ensure(N * D)
        dln.ensure(N * D)
        datty.ensure(N * D)
        dF1.ensure(N * F)
        dF2.ensure(N * F)
        dqkv.ensure(N * 3 * D)
        dpooled.ensure(B * D)
        dattScratch.ensure(maxL * maxL)
    }
}
