import TangentModel
import TangentTensor

/// A random projection R (K x P) with E<R g, R g'> = <g, g'>: dense with i.i.d. entries
/// of mean 0 and variance 1/K (`rademacher`, `gaussian`), or the sparse sign-hash
/// `sketch` (see Sketch.swift). R is never stored: column j of tensor t is generated
/// from a counter-based generator keyed by (seed, tensor name), with counter j, so R
/// is a pure function of (seed, tensor, K) on every machine and any batch split.
///
/// Features are also bit-identical across batch sizes, shards, thread counts and CPUs:
/// the products go through `FixedOrderGemm`, whose every element is the same sequence
/// of operations wherever its row sits, and contributions are added in a fixed order.
/// Memory: one block of `columnChunk x K` numbers per thread, never K x P.
public struct Projector: Sendable, Equatable {
    public enum Distribution: String, Sendable, CaseIterable, Codable {
        /// Entries +-1/sqrt(K); 64 entries per random word.
        case rademacher
        /// Entries N(0, 1/K).
        case gaussian
        /// s nonzero entries +-1/sqrt(s) per column, in distinct rows (SJLT).
        case sketch
    }

    /// K, the projected dimension.
    public let dimension: Int
    public let seed: UInt64
    public let distribution: Distribution
    /// s, the nonzeros per column of a `sketch` (1, 2 or 4); 0 for dense projections.
    public let nonzeros: Int
    /// Worker threads.
    public let threads: Int
    /// Columns of R generated and applied at a time.
    public let columnChunk = 512

    /// Row v holds the 8 entries encoded by byte v: bit i set -> -scale at position i.
    static func signTable(scale: Float) -> [Float] {
        (0..<(256 * 8)).map { i in ((i / 8) >> (i % 8)) & 1 == 1 ? -scale : scale }
    }

    /// Row v holds the 8 Rademacher entries encoded by byte v.
    let signs: [Float]

    /// The nonzeros per column a sketch may have.
    public static let sketchNonzeros = [1, 2, 4]

    /// `nonzeros` is s for a `sketch` (one of `sketchNonzeros`, at most K) and ignored
    /// for dense projections.
    public init(
        dimension: Int, seed: UInt64, distribution: Distribution = .rademacher, nonzeros: Int = 1,
        threads: Int = Threads.cores
    ) {
        precondition(dimension > 0)
        precondition(
            distribution != .sketch || (Projector.sketchNonzeros.contains(nonzeros) && nonzeros <= dimension),
            "a sketch has 1, 2 or 4 nonzeros per column, at most K")
        signs = distribution == .rademacher ? Projector.signTable(scale: 1 / Float(dimension).squareRoot()) : []
        self.dimension = dimension
        self.seed = seed
        self.distribution = distribution
        self.nonzeros = distribution == .sketch ? nonzeros : 0
        self.threads = max(1, threads)
    }

    /// The generator of a tensor's columns, keyed by its name (FNV-1a), not its index,
    /// so the same tensor is projected the same way whatever subset it appears in.
    /// A sketch's stream also depends on s.
    public func generator(for tensor: String) -> CounterRNG {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in tensor.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        if distribution == .sketch {
            return CounterRNG.derive(seed, 0x5CE7_C400, h, UInt64(dimension), UInt64(nonzeros))
        }
        return CounterRNG.derive(seed, 0x9E0_1EC7, h, UInt64(dimension))
    }

    /// Writes columns `columns` of R for the tensor into `out` as rows of K numbers
    /// (out[(j - lower) * K + k] = R[k, j]).
    public func generate(_ rng: CounterRNG, columns: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let K = dimension
        switch distribution {
        case .rademacher:
            // Each random byte selects 8 signs at once from a 256 x 8 table of +-1/sqrt(K).
            let words = (K + 63) / 64
            signs.withUnsafeBufferPointer { tp in
                let tb = tp.baseAddress!
                for (r, j) in columns.enumerated() {
                    let row = out + r * K
                    for w in 0..<words {
                        var bits = rng.bits(UInt64(j) &* UInt64(words) &+ UInt64(w))
                        let n = min(64, K - w * 64)
                        let dst = row + w * 64
                        if n == 64 {
                            for byte in 0..<8 {
                                (dst + byte * 8).update(from: tb + Int(bits & 0xFF) * 8, count: 8)
                                bits >>= 8
                            }
                        } else {
                            for k in 0..<n { dst[k] = tb[Int((bits >> UInt64(k & ~7)) & 0xFF) * 8 + (k & 7)] }
                        }
                    }
                }
            }
        case .gaussian:
            let scale = 1 / Double(K).squareRoot()
            for (r, j) in columns.enumerated() {
                for k in 0..<K { out[r * K + k] = Float(scale * rng.normal(UInt64(j) &* UInt64(K) &+ UInt64(k))) }
            }
        case .sketch:
            // Dense columns of the sketch (for tests; `project` never needs them).
            let scale = 1 / Float(nonzeros).squareRoot()
            var codes = [UInt32](repeating: 0, count: nonzeros)
            for (r, j) in columns.enumerated() {
                (out + r * K).update(repeating: 0, count: K)
                codes.withUnsafeMutableBufferPointer { sketchCodes(rng, coordinate: j, into: $0.baseAddress!) }
                for c in codes { out[r * K + Int(c & 0x7FFF_FFFF)] = c >> 31 == 1 ? -scale : scale }
            }
        }
    }

    /// R applied to every gradient of a block: [O, B, K], output-major like the block.
    /// With `perLayer`, one projection per layer group of the subset (`computer.groups`,
    /// R restricted to the group's columns): [L, O, B, K], whose sum over L is R g.
    public func project(_ block: GradientBlock<Float>, computer: GradientComputer<Float>, perLayer: Bool = false)
        -> [Float]
    {
        if distribution == .sketch { return sketch(block, computer: computer, perLayer: perLayer) }
        let K = dimension
        let B = block.batch.count
        let O = block.outputs
        let Pd = computer.dense.count
        let layout = computer.model.layout
        let groupNames = computer.groups.map(\.name)
        let L = perLayer ? groupNames.count : 1
        let slab = O * B * K
        func layer(_ ti: Int) -> Int { perLayer ? groupNames.firstIndex(of: layout.tensors[ti].group)! : 0 }
        var out = [Float](repeating: 0, count: L * slab)
        var chunk = [Float](repeating: 0, count: columnChunk * K)
        // Each thread owns a range of output columns, on 16-column panel boundaries. Every
        // element's arithmetic is fixed (`FixedOrderGemm`), so neither this split nor a
        // text's neighbours in the block change its features.
        let panels = splitRange((K + 15) / 16, parts: threads).filter { !$0.isEmpty }
        let packCount = FixedOrderGemm.packCount(depth: columnChunk)
        var pack = [Float](repeating: 0, count: panels.count * packCount)
        out.withUnsafeMutableBufferPointer { fp in
            pack.withUnsafeMutableBufferPointer { pp in
                chunk.withUnsafeMutableBufferPointer { cp in
                    block.dense.withUnsafeBufferPointer { dp in
                        let rc = cp.baseAddress!
                        let d = dp.baseAddress!
                        // Dense tensors, column chunk by column chunk, in model order.
                        for ti in computer.dense.tensorIndices {
                            let t = layout.tensors[ti]
                            let f = fp.baseAddress! + layer(ti) * slab
                            let rng = generator(for: t.name)
                            let base = computer.dense.compactOffsets[ti]!
                            var j0 = 0
                            while j0 < t.count {
                                let j1 = min(t.count, j0 + columnChunk)
                                let width = j1 - j0
                                let parts = splitRange(width, parts: threads)
                                parallelFor(parts.count) { p in
                                    let r = parts[p]
                                    if !r.isEmpty {
                                        self.generate(
                                            rng, columns: (j0 + r.lowerBound)..<(j0 + r.upperBound),
                                            into: rc + r.lowerBound * K)
                                    }
                                }
                                parallelFor(panels.count) { p in
                                    let k0 = panels[p].lowerBound * 16
                                    let k1 = min(K, panels[p].upperBound * 16)
                                    for o in 0..<O {
                                        FixedOrderGemm.accumulate(
                                            m: B, n: k1 - k0, depth: width,
                                            a: d + o * B * Pd + base + j0, lda: Pd,
                                            b: rc + k0, ldb: K, c: f + o * B * K + k0, ldc: K,
                                            pack: pp.baseAddress! + p * packCount)
                                    }
                                }
                                j0 = j1
                            }
                        }
                    }
                }
            }
        }
        if let rows = block.tokenRows {
            let tokenLayer = layer(computer.model.tokenTableIndex)
            addTokenTable(block, rows: rows, computer: computer, into: &out, offset: tokenLayer * slab)
        }
        return out
    }

    /// The token table's part: for each distinct token id (ascending) its D columns of R,
    /// applied to every row of that id; each text's rows thus add in (id, position) order
    /// whatever else is in the batch.
    private func addTokenTable(
        _ block: GradientBlock<Float>, rows: [Float], computer: GradientComputer<Float>,
        into out: inout [Float], offset: Int
    ) {
        let K = dimension
        let D = computer.model.shape.tokenWidth
        let B = block.batch.count
        let N = block.batch.tokenCount
        let rng = generator(for: computer.model.layout.tensors[computer.model.tokenTableIndex].name)
        var byID: [Int32: [Int]] = [:]
        for t in 0..<N { byID[block.batch.ids[t], default: []].append(t) }
        let ids = byID.keys.sorted()
        var textOf = [Int](repeating: 0, count: N)
        for b in 0..<B { for t in block.batch.offsets[b]..<block.batch.offsets[b + 1] { textOf[t] = b } }
        let batchIDs = 16
        var rbuf = [Float](repeating: 0, count: batchIDs * D * K)
        let textSplit = splitRange(B, parts: threads)
        let packCount = FixedOrderGemm.packCount(depth: D)
        var pack = [Float](repeating: 0, count: textSplit.count * packCount)
        out.withUnsafeMutableBufferPointer { fp in
            rbuf.withUnsafeMutableBufferPointer { rp in
                rows.withUnsafeBufferPointer { xp in
                    pack.withUnsafeMutableBufferPointer { pk in
                        let f = fp.baseAddress! + offset
                        let r = rp.baseAddress!
                        let x = xp.baseAddress!
                        var start = 0
                        while start < ids.count {
                            let some = Array(ids[start..<min(ids.count, start + batchIDs)])
                            parallelFor(min(threads, some.count)) { p in
                                for q in stride(from: p, to: some.count, by: self.threads) {
                                    let id = Int(some[q])
                                    self.generate(rng, columns: (id * D)..<((id + 1) * D), into: r + q * D * K)
                                }
                            }
                            parallelFor(textSplit.count) { p in
                                let mine = textSplit[p]
                                for o in 0..<block.outputs {
                                    for (q, id) in some.enumerated() {
                                        for t in byID[id]! where mine.contains(textOf[t]) {
                                            let b = textOf[t]
                                            FixedOrderGemm.accumulate(
                                                m: 1, n: K, depth: D, a: x + (o * N + t) * D, lda: D,
                                                b: r + q * D * K, ldb: K, c: f + (o * B + b) * K, ldc: K,
                                                pack: pk.baseAddress! + p * packCount)
                                        }
                                    }
                                }
                            }
                            start += batchIDs
                        }
                    }
                }
            }
        }
    }
}

/// The projector a run asks for: dense Rademacher or Gaussian R, or a sketch with s
/// nonzeros per column. Its `tag` names it in feature files and cache names.
public struct ProjectorChoice: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var distribution: Projector.Distribution
    /// s for a sketch; 0 for dense projections.
    public var nonzeros: Int

    public init(_ distribution: Projector.Distribution, nonzeros: Int = 1) {
        self.distribution = distribution
        self.nonzeros = distribution == .sketch ? nonzeros : 0
    }

    public static let rademacher = ProjectorChoice(.rademacher)
    public static let gaussian = ProjectorChoice(.gaussian)
    public static func sketch(_ s: Int = 1) -> ProjectorChoice { ProjectorChoice(.sketch, nonzeros: s) }
    /// What the proj-* kernels use unless told otherwise: the count-sketch, as accurate
    /// as dense Rademacher (same expectation and pairwise variance) at a fraction of the
    /// cost, and the only projector that scales past a few million parameters.
    public static let `default` = ProjectorChoice.sketch(1)

    /// `rademacher`, `gaussian`, `sketch-s1`, `sketch-s2`, `sketch-s4`.
    public var tag: String { distribution == .sketch ? "sketch-s\(nonzeros)" : distribution.rawValue }
    public var description: String { distribution == .sketch ? "sketch (s = \(nonzeros))" : distribution.rawValue }

    /// The choice a tag names (as feature files record it), or nil.
    public init?(tag: String) {
        if tag.hasPrefix("sketch-s"), let s = Int(tag.dropFirst("sketch-s".count)), [1, 2, 4].contains(s) {
            self = .sketch(s)
        } else if let d = Projector.Distribution(rawValue: tag), d != .sketch {
            self.init(d)
        } else {
            return nil
        }
    }
}

extension Projector {
    public init(dimension: Int, seed: UInt64, choice: ProjectorChoice, threads: Int = Threads.cores) {
        self.init(
            dimension: dimension, seed: seed, distribution: choice.distribution, nonzeros: max(1, choice.nonzeros),
            threads: threads)
    }
}
