import TangentTensor
import Testing

@testable import TangentModel

/// DeBERTa's disentangled attention: the log buckets as transformers computes them, and the
/// hand-written backward pass against Float64 finite differences for q, k, v and both
/// projected relative embeddings, summed and per text.
@Suite(.singleThreadedBLAS) struct DisentangledAttentionTests {
    /// make_log_bucket_position's values, printed by transformers 5.25 for these arguments.
    @Test func bucketsMatchTransformers() {
        let p = DisentangledAttention.Positions(span: 256, buckets: 256, maxPosition: 512)
        let relative = [
            -511, -300, -200, -129, -128, -127, -5, 0, 5, 127, 128, 129, 130, 200, 255, 256, 300, 511, 1000,
        ]
        #expect(
            relative.map(p.bucket) == [
                -255, -207, -169, -129, -128, -127, -5, 0, 5, 127, 128, 129, 130, 169, 192, 192, 207, 255, 317,
            ])
        let small = DisentangledAttention.Positions(span: 3, buckets: 6, maxPosition: 10)
        #expect((-8...8).map(small.bucket) == [-5, -5, -5, -4, -4, -3, -2, -1, 0, 1, 2, 3, 4, 4, 5, 5, 5])
        #expect(DisentangledAttention.Positions(span: 4, buckets: -1, maxPosition: -1).bucket(-7) == -7)
    }

    @Test(arguments: [(true, true), (true, false), (false, true)])
    func backwardMatchesFiniteDifferences(c2p: Bool, p2c: Bool) {
        let d = 6
        let heads = 2
        let lengths = [4, 1, 7]
        let positions = DisentangledAttention.Positions(span: 3, buckets: 6, maxPosition: 10)
        let terms = DisentangledAttention.Terms(c2p: c2p, p2c: p2c)
        let R = 2 * positions.span
        let N = lengths.reduce(0, +)
        var texts: [Range<Int>] = []
        var offsets: [Int] = []
        var start = 0
        var a = 0
        for L in lengths {
            texts.append(start..<(start + L))
            offsets.append(a)
            start += L
            a += heads * L * L
        }
        var rng = TestRNG(7)
        let qkv = rng.vector(N * 3 * d)
        let kr = rng.vector(R * d)
        let qr = rng.vector(R * d)
        let weights = rng.vector(N * d)
        func f(_ qkv: [Double], _ kr: [Double], _ qr: [Double]) -> Double {
            var out = [Double](repeating: 0, count: N * d)
            var att = [Double](repeating: 0, count: a)
            var scratch = [Double](repeating: 0, count: 7 * R)
            DisentangledAttention.forward(
                out: &out, att: &att, scratch: &scratch, qkv: qkv, kr: kr, qr: qr, positions: positions, terms: terms,
                texts: texts, attOffsets: offsets, d: d, heads: heads)
            return zip(out, weights).map(*).reduce(0, +)
        }
        var out = [Double](repeating: 0, count: N * d)
        var att = [Double](repeating: 0, count: a)
        var scratch = [Double](repeating: 0, count: 49 + 7 * R)
        DisentangledAttention.forward(
            out: &out, att: &att, scratch: &scratch, qkv: qkv, kr: kr, qr: qr, positions: positions, terms: terms,
            texts: texts, attOffsets: offsets, d: d, heads: heads)
        var dqkv = [Double](repeating: 0, count: N * 3 * d)
        var dkr = [Double](repeating: 0, count: R * d)
        var dqr = [Double](repeating: 0, count: R * d)
        DisentangledAttention.backward(
            dqkv: &dqkv, dkr: &dkr, dqr: &dqr, perText: nil, scratch: &scratch, dout: weights, qkv: qkv, kr: kr, qr: qr,
            att: att, positions: positions, terms: terms, texts: texts, attOffsets: offsets, d: d, heads: heads)
        let (e1, _) = maxFiniteDifferenceError(qkv, analytic: dqkv, indices: Array(qkv.indices)) { f($0, kr, qr) }
        let (e2, _) = maxFiniteDifferenceError(kr, analytic: dkr, indices: Array(kr.indices)) { f(qkv, $0, qr) }
        let (e3, _) = maxFiniteDifferenceError(qr, analytic: dqr, indices: Array(qr.indices)) { f(qkv, kr, $0) }
        #expect(e1 < 1e-6 && e2 < 1e-6 && e3 < 1e-6, "q/k/v \(e1), Kr \(e2), Qr \(e3)")
        // The terms left out get no gradient; per text, the blocks sum to the total.
        #expect(c2p || dkr.allSatisfy { $0 == 0 })
        #expect(p2c || dqr.allSatisfy { $0 == 0 })
        var pk = [Double](repeating: 0, count: lengths.count * R * d)
        var pq = pk
        var dqkv2 = dqkv
        DisentangledAttention.backward(
            dqkv: &dqkv2, dkr: &pk, dqr: &pq, perText: R * d, scratch: &scratch, dout: weights, qkv: qkv, kr: kr,
            qr: qr,
            att: att, positions: positions, terms: terms, texts: texts, attOffsets: offsets, d: d, heads: heads)
        for k in 0..<(R * d) {
            #expect(abs((0..<lengths.count).map { pk[$0 * R * d + k] }.reduce(0, +) - dkr[k]) < 1e-12)
            #expect(abs((0..<lengths.count).map { pq[$0 * R * d + k] }.reduce(0, +) - dqr[k]) < 1e-12)
        }
    }
}
