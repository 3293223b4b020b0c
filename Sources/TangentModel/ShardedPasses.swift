import Foundation
import TangentTensor

/// What an architecture supplies to `ShardedPasses`: its checks and its forward and
/// backward pass over one shard of texts.
protocol ShardPass<Scalar>: AnyObject {
    associatedtype Scalar: BLASScalar
    /// Checks every id and position of `batch` against the model.
    func validate(_ batch: TokenBatch) throws
    /// The forward pass of the shard `batch` (its first text is `firstText` of the whole
    /// batch), activations, `ws.pooled` [B, width] and `ws.logits` [B, classes] kept in `ws`.
    func forwardShard(_ ws: Workspace<Scalar>, batch: TokenBatch, firstText: Int, dropout: DropoutConfig?)
    /// Backward of one shard. `offsets[i]` places tensor i's gradient at `base + offsets[i]`
    /// (nil: not wanted). With `perExampleStride`, text b's gradients go to
    /// `base + b * stride + offsets[i]`; otherwise all texts sum into one vector. With
    /// `stream`, parameter gradients are handed over per text and tensor instead (see the
    /// streaming `perExampleGradients`), or the linear layers' rows (`linearRows`); `shard`
    /// is the shard's index. With `needEmbeddingRows`, `ws.dres` ends holding
    /// the gradient at each token's row of the token table.
    func backwardShard(
        _ ws: Workspace<Scalar>, seed: UnsafePointer<Scalar>, base: UnsafeMutablePointer<Scalar>?,
        offsets: [Int?], perExampleStride: Int?, needEmbeddingRows: Bool,
        stream: GradientStream<Scalar>?, shard: Int)
}

/// The batch machinery every architecture shares, with the parameters: a batch is split
/// into contiguous shards of texts, one per thread, each with its own saved activations
/// (`Workspace`); shard gradients are summed in shard order, so results are
/// bit-identical for a fixed thread count. A model owns one and passes itself (its
/// `ShardPass`) to each pass, which is the same for all architectures.
///
/// Use: `forward` then any number of `backward` / `perExampleGradients` calls with
/// seeds on the logits of that forward pass. One call at a time per instance.
final class ShardedPasses<T: BLASScalar> {
    let layout: ParameterLayout
    /// All parameters, flat, in `layout` order.
    let parameters: UnsafeMutableBufferPointer<T>
    /// Number of shards (threads) a batch is split into.
    let threads: Int
    /// Logits per text, the width of the pooled embedding and of token rows at the
    /// embedding output.
    let classes: Int, width: Int, tokenWidth: Int
    /// The tensor whose per-text gradients are returned as token rows.
    let tokenIndex: Int
    /// Whether the last forward pass ran row-invariant products; its backward calls
    /// follow it, so a pass is row-invariant from end to end or not at all.
    private(set) var rowInvariant = false

    private var workspaces: [Workspace<T>]
    private var shardGrads: [Buffer<T>]
    /// Blocks a workspace holds activations for.
    private let layers: Int
    private var shards: [Range<Int>] = []
    private var current: TokenBatch?

    /// Every parameter zero.
    init(
        layout: ParameterLayout, classes: Int, width: Int, tokenWidth: Int? = nil, tokenIndex: Int, layers: Int,
        threads: Int
    ) {
        self.layout = layout
        self.classes = classes
        self.width = width
        self.tokenWidth = tokenWidth ?? width
        self.tokenIndex = tokenIndex
        self.threads = max(1, threads)
        parameters = .allocate(capacity: layout.count)
        parameters.initialize(repeating: 0)
        self.layers = layers
        workspaces = (0..<self.threads).map { _ in Workspace<T>(nLayers: layers) }
        shardGrads = (0..<self.threads).map { _ in Buffer<T>() }
    }

    /// Frees the activations and gradient sums of past passes; the next pass allocates
    /// them again. The workspaces grow to the largest batch seen (a prediction batch of a
    /// base-size model holds gigabytes), so a model kept for later (an ensemble member, a
    /// checkpoint) would otherwise hold that memory beside its weights.
    func releaseScratch() {
        workspaces = (0..<threads).map { _ in Workspace<T>(nLayers: layers) }
        shardGrads = (0..<threads).map { _ in Buffer<T>() }
        shards = []
        current = nil
    }

    deinit { parameters.deallocate() }

    /// Tensor i's values.
    func p(_ i: Int) -> UnsafeMutablePointer<T> { parameters.baseAddress! + layout.tensors[i].offset }

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
    func forward<A: ShardPass>(_ batch: TokenBatch, dropout: DropoutConfig?, rowInvariant: Bool, architecture: A) throws
        -> [T] where A.Scalar == T
    {
        try architecture.validate(batch)
        self.rowInvariant = rowInvariant
        let nShards = max(1, min(threads, batch.count))
        shards = splitRange(batch.count, parts: nShards)
        current = batch
        let C = classes
        let drop = (dropout?.rate ?? 0) > 0 ? dropout : nil
        let sh = shards
        parallelFor(sh.count) { s in
            architecture.forwardShard(
                self.workspaces[s], batch: batch.slice(sh[s]), firstText: sh[s].lowerBound, dropout: drop)
        }
        var logits = [T](repeating: 0, count: batch.count * C)
        for (s, r) in sh.enumerated() {
            for k in 0..<(r.count * C) { logits[r.lowerBound * C + k] = workspaces[s].logits.p[k] }
        }
        return logits
    }

    /// Pooled embeddings e(x) [B, D] of the last forward pass.
    func lastEmbeddings() -> [T] {
        let D = width
        var out = [T](repeating: 0, count: (current?.count ?? 0) * D)
        for (s, r) in shards.enumerated() {
            for k in 0..<(r.count * D) { out[r.lowerBound * D + k] = workspaces[s].pooled.p[k] }
        }
        return out
    }

    /// Adds the gradient of sum_b,c seed[b,c] * logits[b,c] (of the last forward pass)
    /// with respect to all parameters into `gradient` (layout order).
    func backward<A: ShardPass>(seed: [T], into gradient: UnsafeMutableBufferPointer<T>, architecture: A)
    where A.Scalar == T {
        guard let batch = current else { preconditionFailure("backward called before forward") }
        precondition(seed.count == batch.count * classes, "seed must be [B, C]")
        precondition(gradient.count == layout.count, "gradient must have \(layout.count) entries")
        let sh = shards
        let offsets: [Int?] = layout.tensors.map { $0.offset }
        for s in 0..<sh.count {
            shardGrads[s].ensure(layout.count)
            shardGrads[s].zero(layout.count)
        }
        seed.withUnsafeBufferPointer { sp in
            let seedBase = sp.baseAddress!
            parallelFor(sh.count) { s in
                architecture.backwardShard(
                    self.workspaces[s], seed: seedBase + sh[s].lowerBound * self.classes,
                    base: self.shardGrads[s].p, offsets: offsets, perExampleStride: nil, needEmbeddingRows: false,
                    stream: nil, shard: s)
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
    ///
    /// With `embeddingRows` (N x D, packed token order of the batch), the gradient with
    /// respect to the embedding output of every token is written there too. Token-table
    /// gradients are these rows scattered to the rows of the tokens' ids (and the
    /// position table's to their positions), so callers can treat the large, sparse
    /// token table without materializing it per example.
    func perExampleGradients<A: ShardPass>(
        seed: [T], subset: ParameterSubset, into output: UnsafeMutableBufferPointer<T>,
        embeddingRows: UnsafeMutableBufferPointer<T>?, architecture: A
    ) where A.Scalar == T {
        guard let batch = current else { preconditionFailure("perExampleGradients called before forward") }
        precondition(seed.count == batch.count * classes, "seed must be [B, C]")
        precondition(output.count >= batch.count * subset.count, "output must hold B x subset.count entries")
        output.update(repeating: 0)
        let sh = shards
        seed.withUnsafeBufferPointer { sp in
            let seedBase = sp.baseAddress!
            let out = output.baseAddress!
            parallelFor(sh.count) { s in
                architecture.backwardShard(
                    self.workspaces[s], seed: seedBase + sh[s].lowerBound * self.classes,
                    base: out + sh[s].lowerBound * subset.count,
                    offsets: subset.compactOffsets, perExampleStride: subset.count,
                    needEmbeddingRows: embeddingRows != nil, stream: nil, shard: s)
                if let rows = embeddingRows {
                    let ws = self.workspaces[s]
                    let D = self.tokenWidth
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
    func perExampleGradients<A: ShardPass>(
        seed: [T], subset: ParameterSubset, embeddingRows: UnsafeMutableBufferPointer<T>?, architecture: A,
        sink: (_ tensor: Int, _ text: Int, _ gradient: UnsafePointer<T>) -> Void
    ) where A.Scalar == T {
        guard let batch = current else { preconditionFailure("perExampleGradients called before forward") }
        precondition(seed.count == batch.count * classes, "seed must be [B, C]")
        precondition(subset.compactOffsets[tokenIndex] == nil, "stream the token table through embeddingRows")
        let sh = shards
        withoutActuallyEscaping(sink) { sink in
            seed.withUnsafeBufferPointer { sp in
                let seedBase = sp.baseAddress!
                parallelFor(sh.count) { s in
                    let ws = self.workspaces[s]
                    let first = sh[s].lowerBound
                    architecture.backwardShard(
                        ws, seed: seedBase + first * self.classes, base: nil, offsets: subset.compactOffsets,
                        perExampleStride: nil, needEmbeddingRows: embeddingRows != nil,
                        stream: .tensors { tensor, text, g in sink(tensor, first + text, g) }, shard: s)
                    if let rows = embeddingRows {
                        let D = self.tokenWidth
                        (rows.baseAddress! + batch.offsets[first] * D).update(
                            from: ws.dres.p, count: ws.batch.tokenCount * D)
                    }
                }
            }
        }
    }

    /// One backward pass of `seed` over the last forward pass's texts that hands every
    /// linear layer of `subset` (its weight tensors) to `visit` as `LinearRows` (inputs and
    /// output gradients per text, text indices local to the shard, whose first text is
    /// `firstText`), instead of forming any parameter gradient. Shards run concurrently.
    func linearRows<A: ShardPass>(
        seed: [T], subset: ParameterSubset, architecture: A,
        visit: (_ rows: LinearRows<T>, _ firstText: Int) -> Void
    ) where A.Scalar == T {
        guard let batch = current else { preconditionFailure("linearRows called before forward") }
        precondition(seed.count == batch.count * classes, "seed must be [B, C]")
        let sh = shards
        withoutActuallyEscaping(visit) { visit in
            seed.withUnsafeBufferPointer { sp in
                let seedBase = sp.baseAddress!
                parallelFor(sh.count) { s in
                    let first = sh[s].lowerBound
                    architecture.backwardShard(
                        self.workspaces[s], seed: seedBase + first * self.classes, base: nil,
                        offsets: subset.compactOffsets,
                        perExampleStride: nil, needEmbeddingRows: false, stream: .linearRows { visit($0, first) },
                        shard: s)
                }
            }
        }
    }
}
