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
    /// Coordinates whose buckets are hashed at a time (shared by every text of a block).
    static let sketchChunk = 8192

    /// The s entries of coordinate `i`, each coded as bucket << 1 | (sign negative).
    /// Entry j draws uniformly among the K - j buckets not drawn before (32-bit
    /// multiply-shift, bias below K / 2^32), so the buckets are distinct.
    @inline(__always)
    func sketchCodes(_ rng: CounterRNG, coordinate i: Int, into codes: UnsafeMutablePointer<UInt32>) {
        let s = nonzeros, K = UInt64(dimension)
        var chosen: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &chosen) { raw in
            let sorted = raw.baseAddress!.assumingMemoryBound(to: UInt32.self)
            for j in 0..<s {
                let w = rng.bits(UInt64(i) &* UInt64(s) &+ UInt64(j))
                var b = UInt32(((w & 0xFFFF_FFFF) &* (K - UInt64(j))) >> 32)
                // Skip the buckets already taken, in ascending order, then keep them sorted.
                var pos = 0
                while pos < j, b >= sorted[pos] { b += 1; pos += 1 }
                var q = j
                while q > pos { sorted[q] = sorted[q - 1]; q -= 1 }
                sorted[pos] = b
                codes[j] = b << 1 | UInt32(w >> 63)
            }
        }
    }

    /// S applied to every gradient of a block: [L, O, B, K] as `project` returns it.
    func sketch(_ block: GradientBlock<Float>, computer: GradientComputer<Float>, perLayer: Bool) -> [Float] {
        let K = dimension, B = block.batch.count, O = block.outputs, s = nonzeros
        let Pd = computer.dense.count
        let layout = computer.model.layout
        let groupNames = computer.groups.map(\.name)
        let L = perLayer ? groupNames.count : 1
        let slab = O * B * K
        func layer(_ ti: Int) -> Int { perLayer ? groupNames.firstIndex(of: layout.tensors[ti].group)! : 0 }
        let scale = 1 / Float(s).squareRoot()
        var out = [Float](repeating: 0, count: L * slab)
        let chunk = Projector.sketchChunk
        var codes = [UInt32](repeating: 0, count: chunk * s)
        let textSplit = splitRange(B, parts: threads).filter { !$0.isEmpty }
        out.withUnsafeMutableBufferPointer { fp in
            codes.withUnsafeMutableBufferPointer { cp in
                block.dense.withUnsafeBufferPointer { dp in
                    let codes = cp.baseAddress!, d = dp.baseAddress!
                    for ti in computer.dense.tensorIndices {
                        let t = layout.tensors[ti]
                        let f = fp.baseAddress! + layer(ti) * slab
                        let rng = generator(for: t.name)
                        let base = computer.dense.compactOffsets[ti]!
                        var j0 = 0
                        while j0 < t.count {
                            let width = min(chunk, t.count - j0)
                            let parts = splitRange(width, parts: threads)
                            parallelFor(parts.count) { p in
                                for i in parts[p] { self.sketchCodes(rng, coordinate: j0 + i, into: codes + i * s) }
                            }
                            parallelFor(textSplit.count) { p in
                                for o in 0..<O {
                                    for b in textSplit[p] {
                                        Projector.scatter(d + (o * B + b) * Pd + base + j0, count: width, codes: codes, nonzeros: s,
                                                          scale: scale, into: f + (o * B + b) * K)
                                    }
                                }
                            }
                            j0 += width
                        }
                    }
                }
            }
        }
        if let rows = block.tokenRows {
            let tokenLayer = layer(layout.index(of: "embeddings.token.weight")!)
            sketchTokenTable(block, rows: rows, computer: computer, into: &out, offset: tokenLayer * slab)
        }
        return out
    }

    /// out[code >> 1] += +-scale * g[i] for each of coordinate i's s codes, i ascending.
    @inline(__always)
    static func scatter(_ g: UnsafePointer<Float>, count: Int, codes: UnsafePointer<UInt32>, nonzeros s: Int, scale: Float,
                        into out: UnsafeMutablePointer<Float>) {
        if s == 1 {
            for i in 0..<count {
                let c = codes[i], x = g[i]
                out[Int(c >> 1)] += c & 1 == 1 ? -x : x
            }
        } else {
            for i in 0..<count {
                let x = g[i] * scale
                for j in 0..<s {
                    let c = codes[i * s + j]
                    out[Int(c >> 1)] += c & 1 == 1 ? -x : x
                }
            }
        }
    }

    /// The token table's part, over the rows present in each text only: a text's tokens
    /// in (id, position) order, each row's D coordinates hashed on the fly.
    private func sketchTokenTable(_ block: GradientBlock<Float>, rows: [Float], computer: GradientComputer<Float>,
                                  into out: inout [Float], offset: Int) {
        let K = dimension, D = computer.model.config.dModel, B = block.batch.count, N = block.batch.tokenCount
        let O = block.outputs, s = nonzeros
        let rng = generator(for: "embeddings.token.weight")
        let scale = 1 / Float(s).squareRoot()
        let textSplit = splitRange(B, parts: threads).filter { !$0.isEmpty }
        let batch = block.batch
        out.withUnsafeMutableBufferPointer { fp in
            rows.withUnsafeBufferPointer { xp in
                let f = fp.baseAddress! + offset, x = xp.baseAddress!
                parallelFor(textSplit.count) { p in
                    var codes = [UInt32](repeating: 0, count: D * s)
                    codes.withUnsafeMutableBufferPointer { cp in
                        let codes = cp.baseAddress!
                        for b in textSplit[p] {
                            let tokens = (batch.offsets[b]..<batch.offsets[b + 1]).sorted { (batch.ids[$0], $0) < (batch.ids[$1], $1) }
                            for t in tokens {
                                let id = Int(batch.ids[t])
                                for d in 0..<D { self.sketchCodes(rng, coordinate: id * D + d, into: codes + d * s) }
                                for o in 0..<O {
                                    Projector.scatter(x + (o * N + t) * D, count: D, codes: codes, nonzeros: s, scale: scale,
                                                      into: f + (o * B + b) * K)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
