import TangentModel
import TangentTensor

/// The sparse sign-hash sketch (SJLT; count-sketch when s = 1): coordinate i of tensor t
/// goes to s distinct buckets b_j(i) in [0, K) with signs sigma_j(i), each scaled by
/// 1/sqrt(s). b and sigma are pure functions of (seed, tensor name, K, s, i, j), so like
/// the dense R the sketch is never stored and is the same on every machine and split.
///
/// Cost: s additions per gradient coordinate, against K multiply-adds for a dense R.
/// Unbiased: for i != i' the signs are independent, and a coordinate's s buckets differ,
/// so E<S g, S g'> = sum_i g_i g'_i s / s = <g, g'>.
///
/// Every text's features are a sum in a fixed order (tensors in model order, coordinates
/// ascending, then token rows by (id, position)) into that text's own row, whatever the
/// batch, thread count or shard: bit-identical features with no atomics.
extension Projector {
    /// The s entries of coordinate `i`, each coded as the bucket in the low 31 bits and the
    /// sign in bit 31 (set: negative), so applying it is an index and an XOR of sign bits.
    /// Entry j draws uniformly among the K - j buckets not drawn before (32-bit
    /// multiply-shift, bias below K / 2^32), so the buckets are distinct.
    @inline(__always)
    func sketchCodes(_ rng: CounterRNG, coordinate i: Int, into codes: UnsafeMutablePointer<UInt32>) {
        let s = nonzeros
        let K = UInt64(dimension)
        if s == 1 {
            let w = rng.bits(UInt64(i))
            codes[0] = UInt32(((w & 0xFFFF_FFFF) &* K) >> 32) | UInt32(w >> 63) << 31
            return
        }
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 4) { sorted in
            for j in 0..<s {
                let w = rng.bits(UInt64(i) &* UInt64(s) &+ UInt64(j))
                var b = UInt32(((w & 0xFFFF_FFFF) &* (K - UInt64(j))) >> 32)
                // Skip the buckets already taken, in ascending order, then keep them sorted.
                var pos = 0
                while pos < j, b >= sorted[pos] {
                    b += 1
                    pos += 1
                }
                var q = j
                while q > pos {
                    sorted[q] = sorted[q - 1]
                    q -= 1
                }
                sorted[pos] = b
                codes[j] = b | UInt32(w >> 63) << 31
            }
        }
    }

    /// S applied to every gradient of a block: [L, O, B, K] as `project` returns it.
    /// Tensors are summed in the model's streaming order, so this equals what
    /// `SketchAccumulator` gets from streamed gradients, bit for bit.
    func sketch(
        _ block: GradientBlock<Float>, computer: GradientComputer<Float>, perLayer: Bool,
        codes: SketchCodes? = nil
    ) -> [Float] {
        let codes = codes ?? SketchCodes(projector: self, computer: computer)
        let acc = SketchAccumulator(codes: codes, outputs: block.outputs, texts: block.batch.count, perLayer: perLayer)
        let B = block.batch.count
        let Pd = computer.dense.count
        // Each tensor once: a materialized block holds a shared tensor's summed gradient
        // (streamed, ALBERT's come once per layer, equal up to rounding).
        var seen = Set<Int>()
        let order = computer.model.streamingOrder.filter {
            computer.dense.compactOffsets[$0] != nil && seen.insert($0).inserted
        }
        let textSplit = splitRange(B, parts: threads).filter { !$0.isEmpty }
        block.dense.withUnsafeBufferPointer { dp in
            let d = dp.baseAddress!
            parallelFor(textSplit.count) { p in
                for o in 0..<block.outputs {
                    for b in textSplit[p] {
                        for ti in order {
                            acc.add(
                                output: o, tensor: ti, text: b,
                                gradient: d + (o * B + b) * Pd + computer.dense.compactOffsets[ti]!)
                        }
                    }
                }
            }
        }
        if let rows = block.tokenRows {
            let N = block.batch.tokenCount
            let D = computer.model.shape.tokenWidth
            rows.withUnsafeBufferPointer { r in
                for o in 0..<block.outputs {
                    acc.addTokenRows(output: o, rows: r.baseAddress! + o * N * D, batch: block.batch)
                }
            }
        }
        return acc.features
    }

    /// out[code >> 1] += +-scale * g[i] for each of coordinate i's s codes, i ascending.
    @inline(__always)
    static func scatter(
        _ g: UnsafePointer<Float>, count: Int, codes: UnsafePointer<UInt32>, nonzeros s: Int, scale: Float,
        into out: UnsafeMutablePointer<Float>
    ) {
        if s == 1 {
            for i in 0..<count {
                let c = codes[i]
                out[Int(c & 0x7FFF_FFFF)] += Float(bitPattern: g[i].bitPattern ^ (c & 0x8000_0000))
            }
        } else {
            for i in 0..<count {
                let x = (g[i] * scale).bitPattern
                for j in 0..<s {
                    let c = codes[i * s + j]
                    out[Int(c & 0x7FFF_FFFF)] += Float(bitPattern: x ^ (c & 0x8000_0000))
                }
            }
        }
    }
}

/// The sketch's bucket codes of every dense tensor of a parameter subset, hashed once and
/// shared by all blocks of a run: P_dense x s x 4 bytes (the token table is hashed on the
/// fly, per row present in a text).
public final class SketchCodes {
    public let projector: Projector
    let computer: GradientComputer<Float>
    /// Codes of tensor i (s per coordinate), by tensor index.
    let codes: [Int: UnsafeMutableBufferPointer<UInt32>]
    /// Layer slab of each tensor in per-layer output, and the token table's.
    let groupIndex: [Int: Int]
    let tokenGroup: Int?
    let groupCount: Int

    public init(projector: Projector, computer: GradientComputer<Float>) {
        precondition(projector.distribution == .sketch)
        self.projector = projector
        self.computer = computer
        let layout = computer.model.layout
        let s = projector.nonzeros
        var codes: [Int: UnsafeMutableBufferPointer<UInt32>] = [:]
        for ti in computer.dense.tensorIndices {
            codes[ti] = .allocate(capacity: layout.tensors[ti].count * s)
        }
        // Hashing is a pure function of the coordinate: split it over threads freely.
        for ti in computer.dense.tensorIndices {
            let t = layout.tensors[ti]
            let rng = projector.generator(for: t.name)
            let buffer = codes[ti]!.baseAddress!
            let parts = splitRange(t.count, parts: projector.threads)
            parallelFor(parts.count) { p in
                for i in parts[p] { projector.sketchCodes(rng, coordinate: i, into: buffer + i * s) }
            }
        }
        self.codes = codes
        let groups = computer.groups.map(\.name)
        groupCount = groups.count
        var gi: [Int: Int] = [:]
        for ti in computer.subset.tensorIndices { gi[ti] = groups.firstIndex(of: layout.tensors[ti].group)! }
        groupIndex = gi
        tokenGroup = gi[computer.model.tokenTableIndex]
    }

    deinit { for c in codes.values { c.deallocate() } }
}

/// Sketched features of one block, accumulated from streamed gradients: [L, O, B, K]
/// (L = 1 unless per layer). Each text's row is its own, so texts may be added from
/// different threads; within a text, the order of calls fixes the rounding.
public final class SketchAccumulator {
    let codes: SketchCodes
    let outputs: Int, texts: Int, layers: Int, perLayer: Bool
    private let out: UnsafeMutableBufferPointer<Float>

    public init(codes: SketchCodes, outputs: Int, texts: Int, perLayer: Bool) {
        self.codes = codes
        self.outputs = outputs
        self.texts = texts
        self.perLayer = perLayer
        layers = perLayer ? codes.groupCount : 1
        out = .allocate(capacity: layers * outputs * texts * codes.projector.dimension)
        out.initialize(repeating: 0)
    }

    deinit { out.deallocate() }

    /// [L, O, B, K].
    public var features: [Float] { Array(out) }

    @inline(__always)
    func row(output o: Int, text b: Int, group: Int) -> UnsafeMutablePointer<Float> {
        out.baseAddress! + (((perLayer ? group : 0) * outputs + o) * texts + b) * codes.projector.dimension
    }

    /// Adds S applied to one text's gradient of one dense tensor.
    public func add(output o: Int, tensor: Int, text b: Int, gradient: UnsafePointer<Float>) {
        let p = codes.projector
        let s = p.nonzeros
        let t = codes.computer.model.layout.tensors[tensor]
        Projector.scatter(
            gradient, count: t.count, codes: codes.codes[tensor]!.baseAddress!, nonzeros: s,
            scale: 1 / Float(s).squareRoot(), into: row(output: o, text: b, group: codes.groupIndex[tensor]!))
    }

    /// Adds the token table's part of output o from the [N, D] embedding-output gradients:
    /// per text, its tokens in (id, position) order, each row's D coordinates hashed on the
    /// fly (only the rows present in the text are touched).
    public func addTokenRows(output o: Int, rows: UnsafePointer<Float>, batch: TokenBatch) {
        guard let group = codes.tokenGroup else { return }
        let p = codes.projector
        let s = p.nonzeros
        let D = codes.computer.model.shape.tokenWidth
        let rng = p.generator(for: codes.computer.model.layout.tensors[codes.computer.model.tokenTableIndex].name)
        let scale = 1 / Float(s).squareRoot()
        let textSplit = splitRange(batch.count, parts: p.threads).filter { !$0.isEmpty }
        parallelFor(textSplit.count) { part in
            var buffer = [UInt32](repeating: 0, count: D * s)
            buffer.withUnsafeMutableBufferPointer { cp in
                let c = cp.baseAddress!
                for b in textSplit[part] {
                    let target = self.row(output: o, text: b, group: group)
                    let tokens = (batch.offsets[b]..<batch.offsets[b + 1]).sorted {
                        (batch.ids[$0], $0) < (batch.ids[$1], $1)
                    }
                    for t in tokens {
                        let id = Int(batch.ids[t])
                        for d in 0..<D { p.sketchCodes(rng, coordinate: id * D + d, into: c + d * s) }
                        Projector.scatter(rows + t * D, count: D, codes: c, nonzeros: s, scale: scale, into: target)
                    }
                }
            }
        }
    }
}
