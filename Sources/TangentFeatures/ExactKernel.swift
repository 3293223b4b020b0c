import Foundation
import TangentModel
import TangentTensor

/// The NTK variants of the kernels spec. Cost of the exact computation for n texts and
/// a subset of P parameters: one backward pass per text and output (C for the trace
/// variants) per block pair, plus n^2 P multiply-adds; memory two blocks of gradients.
public enum NTKKind: String, Sendable, CaseIterable {
    /// <G(x), G(x')>, G = (1/sqrt(C)) sum_c g_c.
    case pntk
    /// pntk with cosine normalization.
    case pntkNorm = "pntk-norm"
    /// sum_c <g_c(x), g_c(x')> with cosine normalization.
    case trntk
    /// sum_c <g_c(x), g_c(x')>, unnormalized.
    case trntk0

    /// The gradients this kernel needs.
    public var output: GradientOutput { self == .pntk || self == .pntkNorm ? .pseudoNTK : .everyLogit }
    /// Whether the kernel is cosine-normalized.
    public var normalized: Bool { self == .pntkNorm || self == .trntk }
}

/// An exact kernel matrix between two text sets with its per-layer decomposition.
public struct ExactKernelResult<T: BLASScalar> {
    public let kind: NTKKind
    public let rows: Int
    public let columns: Int
    /// [rows, columns], row-major; normalized when `kind` is.
    public let total: [T]
    /// Per-layer parts (groups `embeddings`, `blocks.i`, `norm`, `head` present in the
    /// subset), scaled like `total`, so they add up to it.
    public let parts: [(group: String, values: [T])]
    /// Unnormalized self-kernels K(x, x) of the row and column texts.
    public let rowDiagonal: [T]
    public let columnDiagonal: [T]
}

/// Exact (unprojected) NTK kernels, computed blockwise from per-example gradients
/// without materializing the token table's gradient: its part is the sum over token
/// pairs with equal ids of the dot products of their embedding-output gradients.
public enum ExactKernel {
    /// Kernel between texts `a` (rows) and `b` (columns; nil: `a` itself, computed
    /// once per unordered block pair). Texts are token sequences as the model sees them.
    /// `progress(done, total)` counts block pairs.
    @_specialize(exported:true,where T == Float)
    @_specialize(exported:true,where T == Double)
    public static func compute<T: BLASScalar>(
        _ computer: GradientComputer<T>, a: [[Int32]], b: [[Int32]]?,
        kind: NTKKind, blockSize: Int = 64,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> ExactKernelResult<T> {
        let symmetric = b == nil
        let bs = b ?? a
        let nA = a.count
        let nB = bs.count
        // A block never needs more rows than there are texts (its tile is blockSize^2), and
        // two blocks of gradients (O x rows x P_dense each, plus token rows) stay within an
        // eighth of the machine's memory: a 22M-parameter encoder would otherwise hold
        // 11 GiB at the default 64 rows, a base-sized one 43 GiB.
        let perText =
            Double(kind.output.count(classes: computer.model.shape.classes))
            * Double(computer.dense.count + computer.model.shape.maxTokens * computer.model.shape.tokenWidth)
            * Double(MemoryLayout<T>.size)
        let affordable = Int(max(1, Double(ProcessInfo.processInfo.physicalMemory) / 8 / (2 * perText)))
        let blockSize = max(1, min(blockSize, max(nA, nB), affordable))
        let groups = computer.groups
        let pad = computer.model.shape.padID
        var parts = [[T]](repeating: [T](repeating: 0, count: nA * nB), count: groups.count)
        var diagA = [T](repeating: 0, count: nA)
        var diagB = [T](repeating: 0, count: nB)
        let blocksA = stride(from: 0, to: nA, by: blockSize).map { $0..<min(nA, $0 + blockSize) }
        let blocksB = stride(from: 0, to: nB, by: blockSize).map { $0..<min(nB, $0 + blockSize) }
        var tile = [T](repeating: 0, count: blockSize * blockSize)
        let pairs = symmetric ? blocksA.count * (blocksA.count + 1) / 2 : blocksA.count * blocksB.count
        var pairsDone = 0
        for (i, ra) in blocksA.enumerated() {
            let ga = try computer.gradients(TokenBatch(sequences: Array(a[ra]), padID: pad), output: kind.output)
            let selfA = selfKernels(ga, computer: computer)
            for k in ra.indices { diagA[ra[k]] = selfA[k - ra.lowerBound] }
            for (j, rb) in blocksB.enumerated() where !symmetric || j >= i {
                let gb =
                    (symmetric && i == j)
                    ? ga : try computer.gradients(TokenBatch(sequences: Array(bs[rb]), padID: pad), output: kind.output)
                if !symmetric && i == 0 {
                    let selfB = selfKernels(gb, computer: computer)
                    for k in rb.indices { diagB[rb[k]] = selfB[k - rb.lowerBound] }
                }
                for (g, group) in groups.enumerated() {
                    tileProduct(ga, gb, columns: group.columns, stride: computer.dense.count, into: &tile)
                    if group.name == computer.tokenTableGroup && computer.includesTokenTable {
                        addTokenPart(ga, gb, d: computer.model.shape.tokenWidth, into: &tile, ldc: rb.count)
                    }
                    for x in 0..<ra.count {
                        for y in 0..<rb.count {
                            let v = tile[x * rb.count + y]
                            parts[g][(ra.lowerBound + x) * nB + rb.lowerBound + y] = v
                            if symmetric && i != j { parts[g][(rb.lowerBound + y) * nB + ra.lowerBound + x] = v }
                        }
                    }
                }
                pairsDone += 1
                progress(pairsDone, pairs)
            }
        }
        if symmetric { diagB = diagA }
        if kind.normalized {
            for g in parts.indices { Gram.normalize(&parts[g], rowSelf: diagA, columnSelf: diagB) }
        }
        var total = [T](repeating: 0, count: nA * nB)
        for p in parts { for k in total.indices { total[k] += p[k] } }
        return ExactKernelResult(
            kind: kind, rows: nA, columns: nB, total: total,
            parts: zip(groups, parts).map { ($0.name, $1) }, rowDiagonal: diagA, columnDiagonal: diagB)
    }

    /// tile[x, y] = sum_o <dense_o(x)[columns], dense_o(y)[columns]>.
    static func tileProduct<T: BLASScalar>(
        _ a: GradientBlock<T>, _ b: GradientBlock<T>, columns: Range<Int>,
        stride: Int, into tile: inout [T]
    ) {
        let ba = a.batch.count
        let bb = b.batch.count
        for k in 0..<(ba * bb) { tile[k] = 0 }
        if columns.isEmpty { return }
        a.dense.withUnsafeBufferPointer { pa in
            b.dense.withUnsafeBufferPointer { pb in
                for o in 0..<a.outputs {
                    T.gemm(
                        transA: false, transB: true, m: ba, n: bb, k: columns.count, alpha: 1,
                        a: pa.baseAddress! + o * ba * stride + columns.lowerBound, lda: stride,
                        b: pb.baseAddress! + o * bb * stride + columns.lowerBound, ldb: stride,
                        beta: 1, c: &tile, ldc: bb)
                }
            }
        }
    }

    /// Adds the token table's part: sum over token pairs with equal ids.
    static func addTokenPart<T: BLASScalar>(
        _ a: GradientBlock<T>, _ b: GradientBlock<T>, d: Int, into tile: inout [T], ldc: Int
    ) {
        guard let ra = a.tokenRows, let rb = b.tokenRows else { return }
        var byID: [Int32: [(row: Int, text: Int)]] = [:]
        for y in 0..<b.batch.count {
            for s in b.batch.offsets[y]..<b.batch.offsets[y + 1] { byID[b.batch.ids[s], default: []].append((s, y)) }
        }
        let na = a.batch.tokenCount
        let nb = b.batch.tokenCount
        ra.withUnsafeBufferPointer { pa in
            rb.withUnsafeBufferPointer { pb in
                for x in 0..<a.batch.count {
                    for t in a.batch.offsets[x]..<a.batch.offsets[x + 1] {
                        guard let matches = byID[a.batch.ids[t]] else { continue }
                        for m in matches {
                            var s: T = 0
                            for o in 0..<a.outputs {
                                s += T.dot(
                                    n: d, x: pa.baseAddress! + (o * na + t) * d,
                                    y: pb.baseAddress! + (o * nb + m.row) * d)
                            }
                            tile[x * ldc + m.text] += s
                        }
                    }
                }
            }
        }
    }

    /// K(x, x) of every text of a block over the whole subset.
    public static func selfKernels<T: BLASScalar>(_ g: GradientBlock<T>, computer: GradientComputer<T>) -> [T] {
        let B = g.batch.count
        let P = computer.dense.count
        let D = computer.model.shape.tokenWidth
        let N = g.batch.tokenCount
        var out = [T](repeating: 0, count: B)
        g.dense.withUnsafeBufferPointer { p in
            for o in 0..<g.outputs {
                for x in 0..<B {
                    let v = p.baseAddress! + (o * B + x) * P
                    out[x] += T.dot(n: P, x: v, y: v)
                }
            }
        }
        if let rows = g.tokenRows {
            rows.withUnsafeBufferPointer { r in
                for x in 0..<B {
                    let range = g.batch.offsets[x]..<g.batch.offsets[x + 1]
                    for t in range {
                        for s in range where g.batch.ids[s] == g.batch.ids[t] {
                            for o in 0..<g.outputs {
                                out[x] += T.dot(
                                    n: D, x: r.baseAddress! + (o * N + t) * D, y: r.baseAddress! + (o * N + s) * D)
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
