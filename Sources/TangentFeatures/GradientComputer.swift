import TangentModel
import TangentTensor

/// Which scalar functions of the network are differentiated per text (the "model
/// output" stage of the pipeline model output -> gradients -> projector -> store -> scorer).
public enum GradientOutput: Sendable, Equatable {
    /// G(x) = (1/sqrt(C)) sum_c g_c(x): one gradient per text (pNTK).
    case pseudoNTK
    /// g_c(x) for every class c: C gradients per text (trNTK, eNTK).
    case everyLogit
    /// Gradient of the cross-entropy loss, r(x) = softmax(f(x)) - onehot(y); a nil label
    /// uses the network's predicted class (as grad-cos does for test texts).
    case loss(labels: [Int?])

    /// Gradients per text.
    public func count(classes: Int) -> Int {
        if case .everyLogit = self { return classes }
        return 1
    }
}

/// Per-example gradients of one batch of texts.
///
/// Dimension letters: O outputs per text (1, or C for every logit), B texts, N packed
/// tokens, Pd parameters of the dense part, D model width.
public struct GradientBlock<T: BLASScalar> {
    public let batch: TokenBatch
    /// Gradients per text (1 or C).
    public let outputs: Int
    /// [O, B, Pd]: gradients over the subset's tensors other than the token table, in
    /// the compact layout of `GradientComputer.dense`.
    public var dense: [T]
    /// [O, N, D]: gradient at the embedding output of every token, when the token table
    /// is in the subset. Text b's token-table gradient puts row t at row ids[t] of the table.
    public var tokenRows: [T]?
    /// [B, C] logits and [B, D] pooled embeddings e(x) of the forward pass.
    public let logits: [T]
    public let embeddings: [T]
}

/// Computes per-example gradients of a model output over a parameter subset, batched
/// over texts and cores. The token-embedding table (most of the parameters, but only a
/// few rows per text) is returned as per-token rows instead of a dense vector.
public final class GradientComputer<T: BLASScalar> {
    public let model: any ClassifierModel<T>
    /// The tensors asked for.
    public let subset: ParameterSubset
    /// The asked-for tensors other than the token table, in a compact layout.
    public let dense: ParameterSubset
    /// Whether the token table is among the tensors asked for.
    public let includesTokenTable: Bool
    let tokenTableIndex: Int
    /// The group the token table belongs to (its token-row part joins that group's).
    public var tokenTableGroup: String { model.layout.tensors[tokenTableIndex].group }
    /// The embedding-output gradients of the last streamed block (see `streamOutputs`).
    private var streamRows: [T] = []

    /// Gradients over the tensors named by `prefixes` (see `ParameterSubset`). Its passes
    /// run the model's row-invariant products, so a text's gradients do not depend on the
    /// batch it is computed in; the model's other uses are left as they were.
    public init(model: any ClassifierModel<T>, prefixes: [String]) throws {
        self.model = model
        subset = try ParameterSubset(layout: model.layout, prefixes: prefixes)
        let tokenIndex = model.tokenTableIndex
        tokenTableIndex = tokenIndex
        includesTokenTable = subset.compactOffsets[tokenIndex] != nil
        dense = ParameterSubset(layout: model.layout, tensorIndices: subset.tensorIndices.filter { $0 != tokenIndex })
    }

    /// The per-layer groups present in the subset, with the column range of each in the
    /// dense layout (the token table, if included, belongs to `embeddings`).
    public var groups: [(name: String, columns: Range<Int>)] {
        var out: [(String, Range<Int>)] = []
        for ti in subset.tensorIndices {
            let t = model.layout.tensors[ti]
            let start = dense.compactOffsets[ti] ?? (out.last?.1.upperBound ?? 0)
            let end = start + (ti == tokenTableIndex ? 0 : t.count)
            if let last = out.last, last.0 == t.group {
                out[out.count - 1].1 = last.1.lowerBound..<end
            } else {
                out.append((t.group, start..<end))
            }
        }
        return out
    }

    /// Runs the forward pass and one backward pass per output on `batch`.
    @_specialize(exported:true,where T == Float)
    @_specialize(exported:true,where T == Double)
    public func gradients(_ batch: TokenBatch, output: GradientOutput) throws -> GradientBlock<T> {
        var dense: [T] = []
        var rows: [T]? = includesTokenTable ? [] : nil
        var first: GradientBlock<T>?
        try forEachOutput(batch, output: output) { _, g in
            dense += g.dense
            if let r = g.tokenRows { rows! += r }
            if first == nil { first = g }
        }
        return GradientBlock(
            batch: batch, outputs: output.count(classes: model.shape.classes), dense: dense,
            tokenRows: rows, logits: first!.logits, embeddings: first!.embeddings)
    }

    /// Runs the forward pass once, then for each output o one per-example backward pass,
    /// handing `body(o, block)` a single-output block. Memory holds one output's
    /// gradients (B x P_dense) at a time, whatever the number of classes.
    @_specialize(exported:true,where T == Float)
    @_specialize(exported:true,where T == Double)
    public func forEachOutput(
        _ batch: TokenBatch, output: GradientOutput, _ body: (Int, GradientBlock<T>) throws -> Void
    ) throws {
        let model = model
        let dense = dense
        try forEachOutput(batch, output: output, tokenTable: includesTokenTable) { seed, d, rows in
            if let rows {
                model.perExampleGradients(seed: seed, subset: dense, into: d, embeddingRows: rows)
            } else {
                model.perExampleGradients(seed: seed, subset: dense, into: d)
            }
        } body: {
            try body($0, $1)
        }
    }

    /// `forEachOutput` with the block's dense rows written by `backward(seed, into)` from
    /// each output's seed [B, C] after the forward pass, in place of the per-example
    /// gradients of `dense` (EK-FAC writes its rotated gradients straight from the linear
    /// layers' rows); `dense` must then not include the token table.
    public func forEachOutput(
        _ batch: TokenBatch, output: GradientOutput,
        backward: (_ seed: [T], _ into: UnsafeMutableBufferPointer<T>) -> Void,
        _ body: (Int, GradientBlock<T>) throws -> Void
    ) throws {
        precondition(!includesTokenTable, "a custom backward writes no token-table rows")
        try forEachOutput(batch, output: output, tokenTable: false) { seed, d, _ in
            backward(seed, d)
        } body: {
            try body($0, $1)
        }
    }

    /// The forward pass, then per output `backward(seed, dense rows, token-table rows)` and `body`.
    private func forEachOutput(
        _ batch: TokenBatch, output: GradientOutput, tokenTable: Bool,
        backward: (_ seed: [T], _ into: UnsafeMutableBufferPointer<T>, _ rows: UnsafeMutableBufferPointer<T>?) -> Void,
        body: (Int, GradientBlock<T>) throws -> Void
    ) throws {
        let C = model.shape.classes
        let B = batch.count
        let D = model.shape.tokenWidth
        let N = batch.tokenCount
        let logits = try model.forward(batch, rowInvariant: true)
        let embeddings = model.lastEmbeddings()
        let O = output.count(classes: C)
        let seeds = self.seeds(output, logits: logits, texts: B)
        var denseOut = [T](repeating: 0, count: B * dense.count)
        var rows: [T]? = tokenTable ? [T](repeating: 0, count: N * D) : nil
        for o in 0..<O {
            denseOut.withUnsafeMutableBufferPointer { d in
                if rows != nil {
                    rows!.withUnsafeMutableBufferPointer { r in backward(seeds[o], d, r) }
                } else {
                    backward(seeds[o], d, nil)
                }
            }
            try body(
                o,
                GradientBlock(
                    batch: batch, outputs: 1, dense: denseOut, tokenRows: rows, logits: logits, embeddings: embeddings))
        }
    }

    /// The seeds of the backward passes: one [B, C] array per output.
    func seeds(_ output: GradientOutput, logits: [T], texts B: Int) -> [[T]] {
        let C = model.shape.classes
        switch output {
        case .pseudoNTK:
            return [[T](repeating: 1 / T(C).squareRoot(), count: B * C)]
        case .everyLogit:
            return (0..<C).map { c in (0..<(B * C)).map { $0 % C == c ? 1 : 0 } }
        case .loss(let labels):
            precondition(labels.count == B, "one label (or nil) per text")
            var s = [T](repeating: 0, count: B * C)
            for b in 0..<B {
                let row = Array(logits[(b * C)..<((b + 1) * C)])
                let r = Softmax.lossResidual(row, label: labels[b] ?? Softmax.argmax(row))
                for c in 0..<C { s[b * C + c] = r[c] }
            }
            return [s]
        }
    }

    /// The streaming pipeline: the forward pass once, then per output o one backward pass
    /// whose per-example gradients are never stored together. `sink(o, tensor, text, g)`
    /// receives each text's gradient of each dense tensor (see the model's streaming
    /// `perExampleGradients`: a fixed order per text, texts possibly concurrent);
    /// `rows(o, r)` then receives the [N, D] embedding-output gradients (token table).
    /// Returns the logits [B, C] and pooled embeddings [B, D].
    @_specialize(exported:true,where T == Float)
    public func streamOutputs(
        _ batch: TokenBatch, output: GradientOutput,
        sink: (_ output: Int, _ tensor: Int, _ text: Int, _ gradient: UnsafePointer<T>) -> Void,
        rows: (_ output: Int, _ rows: UnsafePointer<T>) -> Void
    ) throws -> (logits: [T], embeddings: [T]) {
        let B = batch.count
        let D = model.shape.tokenWidth
        let N = batch.tokenCount
        let logits = try model.forward(batch, rowInvariant: true)
        let embeddings = model.lastEmbeddings()
        // Reused across calls: a fresh array per block would be paged in anew each time.
        if streamRows.count < N * D { streamRows = [T](repeating: 0, count: N * D) }
        for (o, seed) in seeds(output, logits: logits, texts: B).enumerated() {
            streamRows.withUnsafeMutableBufferPointer { r in
                model.perExampleGradients(seed: seed, subset: dense, embeddingRows: includesTokenTable ? r : nil) {
                    tensor, text, g in
                    sink(o, tensor, text, g)
                }
                if includesTokenTable { rows(o, r.baseAddress!) }
            }
        }
        return (logits, embeddings)
    }

    /// The full compact per-example gradient over `subset` (token table densified):
    /// [O, B, subset.count]. For tests and small models only: it is as large as the subset.
    public func materialize(_ block: GradientBlock<T>) -> [T] {
        let B = block.batch.count
        let D = model.shape.tokenWidth
        let P = subset.count
        let N = block.batch.tokenCount
        var out = [T](repeating: 0, count: block.outputs * B * P)
        for o in 0..<block.outputs {
            for ti in dense.tensorIndices {
                let t = model.layout.tensors[ti]
                let src = dense.compactOffsets[ti]!
                let dst = subset.compactOffsets[ti]!
                for b in 0..<B {
                    for k in 0..<t.count {
                        out[(o * B + b) * P + dst + k] = block.dense[(o * B + b) * dense.count + src + k]
                    }
                }
            }
            if let rows = block.tokenRows, let dst = subset.compactOffsets[tokenTableIndex] {
                for b in 0..<B {
                    for t in block.batch.offsets[b]..<block.batch.offsets[b + 1] {
                        let id = Int(block.batch.ids[t])
                        for d in 0..<D { out[(o * B + b) * P + dst + id * D + d] += rows[(o * N + t) * D + d] }
                    }
                }
            }
        }
        return out
    }
}
