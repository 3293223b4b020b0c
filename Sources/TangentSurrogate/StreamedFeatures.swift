import Foundation
import TangentFeatures
import TangentIO
import TangentTensor

/// Training features read from a feature file in row blocks instead of held in memory:
/// the training side of a kernel K = F F^T (or its cosine-normalized form) for training
/// sets whose features do not fit in memory. The file is memory-mapped, so what stays
/// resident beyond one block is the kernel's pages the system chooses to keep.
///
/// Every product is defined independently of the block size: x F accumulates rows in
/// ascending order (each thread owns a range of columns), and x F^T is one fixed-order dot
/// per entry. So a memory budget changes speed, never the bits of a result.
public final class StreamedFeatures: Sendable {
    public let file: FeatureFile
    /// Texts n and the feature width D (outputs x width).
    public let n: Int
    public let width: Int
    /// Texts per block read at once: a multiple of `chunk`, or all n.
    public let blockRows: Int
    /// Rows per partial sum of F^T F.
    static let chunk = 256
    /// 1 / ||f_i|| for a cosine-normalized kernel (a zero row stays zero), else nil.
    let rowScale: [Float]?
    /// K's diagonal.
    public let diagonal: [Double]
    package let threads: Int
    /// Set when the budget is smaller than the smallest block, which is used instead.
    public let budgetNote: String?

    /// `budget` bounds the bytes of the blocks held at once (two of them: one being read,
    /// one being multiplied, as Float, plus their Double conversion for x F).
    public init(file: FeatureFile, normalized: Bool, budget: Int, threads: Int = Threads.cores) throws {
        try file.requireWhole()
        self.file = file
        n = file.metadata.texts
        width = file.metadata.outputs * file.metadata.width
        // Whole chunks of `chunk` rows, so that F^T F sums the same chunks whatever the budget.
        let fit = budget / max(1, width * 16) / StreamedFeatures.chunk * StreamedFeatures.chunk
        blockRows = max(1, min(n, max(StreamedFeatures.chunk, fit)))
        // Blocks are whole chunks: a budget below one chunk cannot be kept, so say so.
        let least = blockRows * width * 16
        budgetNote =
            least > budget
            ? "memory budget of \(ByteSize.describe(Double(budget))) is below the \(ByteSize.describe(Double(least))) that the smallest block of training features needs (\(blockRows) texts x \(width) features); using that block"
            : nil
        self.threads = threads
        var squared = [Double](repeating: 0, count: n)
        var rows = [Float](repeating: 0, count: blockRows * width)
        for start in stride(from: 0, to: n, by: blockRows) {
            let r = start..<min(n, start + blockRows)
            file.features(r, into: &rows)
            let norms = Gram.squaredNorms(Array(rows[0..<(r.count * width)]), rows: r.count)
            for (a, i) in r.enumerated() { squared[i] = Double(norms[a]) }
        }
        // A NaN or Inf anywhere in a row makes its norm non-finite: one pass finds every
        // damaged row before it can turn the surrogate into NaN.
        if let bad = squared.firstIndex(where: { !$0.isFinite }) {
            throw AttributionError(
                "\(file.url.path): the features of text \(bad) (row \(bad + 1)) hold NaN or Inf values; the file is damaged, featurize again"
            )
        }
        let logits = try file.logits()
        if let bad = logits.firstIndex(where: { !$0.isFinite }) {
            throw AttributionError(
                "\(file.url.path): the logits of text \(bad / max(1, file.metadata.classes)) hold NaN or Inf values; the file is damaged, featurize again"
            )
        }
        if normalized {
            let scale = squared.map { Float(Gram.unitScale($0)) }
            rowScale = scale
            diagonal = (0..<n).map { i in
                let s = Double(scale[i])
                return squared[i] * s * s
            }
        } else {
            rowScale = nil
            diagonal = squared
        }
    }

    /// Rows `r` of F (scaled when normalized) into `buffer` [r.count, D].
    func rows(_ r: Range<Int>, into buffer: inout [Float]) {
        file.features(r, into: &buffer)
        guard let s = rowScale else { return }
        let w = width
        for (a, i) in r.enumerated() {
            let f = s[i]
            for j in 0..<w { buffer[a * w + j] *= f }
        }
    }

    /// Calls `body` with each block of rows of F, in order.
    package func forEachBlock(_ body: (Range<Int>, [Float]) throws -> Void) rethrows {
        var buffer = [Float](repeating: 0, count: blockRows * width)
        for start in stride(from: 0, to: n, by: blockRows) {
            let r = start..<min(n, start + blockRows)
            rows(r, into: &buffer)
            try body(r, buffer)
        }
    }

    /// The rows `indices` of F, [indices.count, D]; runs of consecutive indices are read at once.
    public func gather(_ indices: [Int]) -> [Float] {
        var out = [Float](repeating: 0, count: indices.count * width)
        var run = [Float](repeating: 0, count: min(blockRows, max(1, indices.count)) * width)
        var a = 0
        while a < indices.count {
            var b = a + 1
            while b < indices.count && indices[b] == indices[b - 1] + 1 && b - a < blockRows { b += 1 }
            rows(indices[a]..<(indices[b - 1] + 1), into: &run)
            for j in 0..<((b - a) * width) { out[a * width + j] = run[j] }
            a = b
        }
        return out
    }

    /// out [m, n] = x [m, n] F F^T (see the type's note on order).
    func times(_ x: [Double], rows m: Int, into out: inout [Double]) {
        timesTransposed(leftProduct(x, rows: m), rows: m, into: &out)
    }

    /// x [m, n] F -> [m, D]: rows in ascending order, columns split over threads.
    func leftProduct(_ x: [Double], rows m: Int) -> [Double] {
        let n = self.n
        let w = width
        var u = [Double](repeating: 0, count: m * w)
        let parts = splitRange(w, parts: max(1, min(threads, w / 64))).filter { !$0.isEmpty }
        forEachBlock { r, block in
            block.withUnsafeBufferPointer { bp in
                x.withUnsafeBufferPointer { xp in
                    u.withUnsafeMutableBufferPointer { up in
                        parallelFor(parts.count) { t in
                            let cols = parts[t]
                            for (a, i) in r.enumerated() {
                                let row = bp.baseAddress! + a * w
                                for c in 0..<m {
                                    let xi = xp[c * n + i]
                                    if xi == 0 { continue }
                                    let dst = up.baseAddress! + c * w
                                    for j in cols { dst[j] += xi * Double(row[j]) }
                                }
                            }
                        }
                    }
                }
            }
        }
        return u
    }

    /// out [m, n] = u [m, D] F^T, one fixed-order dot per entry.
    func timesTransposed(_ u: [Double], rows m: Int, into out: inout [Double]) {
        let n = self.n
        let w = width
        forEachBlock { r, block in
            TrainingKernel.dots(
                u, rows: m, depth: w, matrix: block, matrixRows: r.count, into: &out, ldo: n, offset: r.lowerBound,
                threads: threads)
        }
    }

    /// F^T F [D, D] in Double, accumulated over fixed chunks of rows in order.
    func gramOfColumns() -> [Double] {
        let w = width
        var g = [Double](repeating: 0, count: w * w)
        let chunk = StreamedFeatures.chunk
        forEachBlock { r, block in
            for s in stride(from: 0, to: r.count, by: chunk) {
                let rows = min(chunk, r.count - s)
                let d = block[(s * w)..<((s + rows) * w)].map(Double.init)
                Double.gemm(
                    transA: true, transB: false, m: w, n: w, k: rows, alpha: 1, a: d, lda: w, b: d, ldb: w, beta: 1,
                    c: &g, ldc: w)
            }
        }
        for i in 0..<w {
            for j in 0..<i {
                let s = (g[i * w + j] + g[j * w + i]) / 2
                g[i * w + j] = s
                g[j * w + i] = s
            }
        }
        return g
    }
}
