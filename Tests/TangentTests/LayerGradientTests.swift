import TangentTensor
import Testing

@testable import TangentModel

/// Each layer's backward against Float64 central differences of a random linear
/// functional L = sum(out * R) of its output.
@Suite(.singleThreadedBLAS) struct LayerGradientTests {
    @Test func linear() {
        var rng = TestRNG(1)
        let n = 5
        let i = 4
        let o = 3
        let inp = rng.vector(n * i)
        let w = rng.vector(o * i)
        let b = rng.vector(o)
        let r = rng.vector(n * o)
        func loss(_ inp: [Double], _ w: [Double], _ b: [Double]) -> Double {
            var out = [Double](repeating: 0, count: n * o)
            Linear.forward(out: &out, inp: inp, weight: w, bias: b, n: n, i: i, o: o)
            return zip(out, r).map(*).reduce(0, +)
        }
        var dinp = [Double](repeating: 0, count: n * i)
        var dw = [Double](repeating: 0, count: o * i)
        var db = [Double](repeating: 0, count: o)
        Linear.backward(
            dinp: &dinp, accumulateInput: false, dweight: &dw, dbias: &db, dout: r, inp: inp, weight: w,
            n: n, i: i, o: o, segments: .summed(n))
        #expect(
            maxFiniteDifferenceError(inp, analytic: dinp, indices: Array(0..<(n * i))) { loss($0, w, b) }.error < 1e-7)
        #expect(
            maxFiniteDifferenceError(w, analytic: dw, indices: Array(0..<(o * i))) { loss(inp, $0, b) }.error < 1e-7)
        #expect(maxFiniteDifferenceError(b, analytic: db, indices: Array(0..<o)) { loss(inp, w, $0) }.error < 1e-7)
    }

    @Test func layerNorm() {
        var rng = TestRNG(2)
        let n = 4
        let d = 6
        let inp = rng.vector(n * d, scale: 2)
        let w = rng.vector(d)
        let b = rng.vector(d)
        let r = rng.vector(n * d)
        func loss(_ inp: [Double], _ w: [Double], _ b: [Double]) -> Double {
            var out = [Double](repeating: 0, count: n * d)
            var mean = [Double](repeating: 0, count: n)
            var rstd = mean
            LayerNorm.forward(out: &out, mean: &mean, rstd: &rstd, inp: inp, weight: w, bias: b, n: n, d: d, eps: 1e-5)
            return zip(out, r).map(*).reduce(0, +)
        }
        var out = [Double](repeating: 0, count: n * d)
        var mean = [Double](repeating: 0, count: n)
        var rstd = mean
        LayerNorm.forward(out: &out, mean: &mean, rstd: &rstd, inp: inp, weight: w, bias: b, n: n, d: d, eps: 1e-5)
        var dinp = [Double](repeating: 0, count: n * d)
        var dw = [Double](repeating: 0, count: d)
        var db = dw
        LayerNorm.backward(
            dinp: &dinp, dweight: &dw, dbias: &db, dout: r, inp: inp, weight: w, mean: mean, rstd: rstd,
            n: n, d: d, segments: .summed(n))
        #expect(
            maxFiniteDifferenceError(inp, analytic: dinp, indices: Array(0..<(n * d))) { loss($0, w, b) }.error < 1e-6)
        #expect(maxFiniteDifferenceError(w, analytic: dw, indices: Array(0..<d)) { loss(inp, $0, b) }.error < 1e-7)
        #expect(maxFiniteDifferenceError(b, analytic: db, indices: Array(0..<d)) { loss(inp, w, $0) }.error < 1e-7)
        // Biased variance, as torch.nn.LayerNorm: each normalized row has mean 0 and variance ~1.
        var plain = [Double](repeating: 0, count: n * d)
        LayerNorm.forward(
            out: &plain, mean: &mean, rstd: &rstd, inp: inp, weight: [Double](repeating: 1, count: d),
            bias: [Double](repeating: 0, count: d), n: n, d: d, eps: 0)
        let row = Array(plain[0..<d])
        #expect(abs(row.reduce(0, +)) < 1e-12)
        #expect(abs(row.map { $0 * $0 }.reduce(0, +) / Double(d) - 1) < 1e-12)
    }

    @Test func gelu() {
        var rng = TestRNG(3)
        let n = 20
        let inp = rng.vector(n, scale: 2)
        let r = rng.vector(n)
        func loss(_ x: [Double]) -> Double {
            var out = [Double](repeating: 0, count: n)
            var derivative = out
            GELU.forward(out: &out, derivative: &derivative, inp: x, count: n)
            return zip(out, r).map(*).reduce(0, +)
        }
        var out = [Double](repeating: 0, count: n)
        var derivative = out
        var d = out
        GELU.forward(out: &out, derivative: &derivative, inp: inp, count: n)
        GELU.backward(dinp: &d, dout: r, derivative: derivative, count: n)
        #expect(maxFiniteDifferenceError(inp, analytic: d, indices: Array(0..<n), loss).error < 1e-6)
        // Exact erf form: gelu(1) = Phi(1) = 0.8413447460685429.
        var one = [0.0]
        var slope = [0.0]
        GELU.forward(out: &one, derivative: &slope, inp: [1.0], count: 1)
        #expect(abs(one[0] - 0.8413447460685429) < 1e-14)
    }

    @Test func attentionWithPackedTexts() {
        // Three texts of lengths 3, 1, 4 packed: the equivalent of a padding mask.
        var rng = TestRNG(4)
        let d = 6
        let heads = 2
        let texts = [0..<3, 3..<4, 4..<8]
        let n = 8
        var offs: [Int] = []
        var a = 0
        for t in texts {
            offs.append(a)
            a += heads * t.count * t.count
        }
        let qkv = rng.vector(n * 3 * d)
        let r = rng.vector(n * d)
        func loss(_ qkv: [Double]) -> Double {
            var out = [Double](repeating: 0, count: n * d)
            var att = [Double](repeating: 0, count: a)
            Attention.forward(out: &out, att: &att, qkv: qkv, texts: texts, attOffsets: offs, d: d, heads: heads)
            return zip(out, r).map(*).reduce(0, +)
        }
        var out = [Double](repeating: 0, count: n * d)
        var att = [Double](repeating: 0, count: a)
        Attention.forward(out: &out, att: &att, qkv: qkv, texts: texts, attOffsets: offs, d: d, heads: heads)
        var dqkv = [Double](repeating: 0, count: n * 3 * d)
        var scratch = [Double](repeating: 0, count: 16)
        Attention.backward(
            dqkv: &dqkv, scratch: &scratch, dout: r, qkv: qkv, att: att, texts: texts,
            attOffsets: offs, d: d, heads: heads)
        #expect(maxFiniteDifferenceError(qkv, analytic: dqkv, indices: Array(0..<(n * 3 * d)), loss).error < 1e-6)
        // Attention rows are distributions over the text's own tokens only.
        for (b, t) in texts.enumerated() {
            let L = t.count
            for row in 0..<(heads * L) {
                let s = (0..<L).map { att[offs[b] + row * L + $0] }.reduce(0, +)
                #expect(abs(s - 1) < 1e-12)
            }
        }
        // A text alone gives the same output as inside the packed batch.
        let alone = Array(qkv[(4 * 3 * d)..<(8 * 3 * d)])
        var out2 = [Double](repeating: 0, count: 4 * d)
        var att2 = [Double](repeating: 0, count: heads * 16)
        Attention.forward(out: &out2, att: &att2, qkv: alone, texts: [0..<4], attOffsets: [0], d: d, heads: heads)
        #expect(zip(out2, out[(4 * d)...]).map { abs($0 - $1) }.max()! < 1e-14)
    }

    @Test(arguments: [ModelConfig.Pooling.mean, .cls])
    func pooling(mode: ModelConfig.Pooling) {
        var rng = TestRNG(5)
        let d = 3
        let texts = [0..<2, 2..<5]
        let inp = rng.vector(5 * d)
        let r = rng.vector(2 * d)
        func loss(_ x: [Double]) -> Double {
            var out = [Double](repeating: 0, count: 2 * d)
            Pooling.forward(out: &out, inp: x, texts: texts, d: d, mode: mode)
            return zip(out, r).map(*).reduce(0, +)
        }
        var dinp = [Double](repeating: 9, count: 5 * d)
        Pooling.backward(dinp: &dinp, dout: r, texts: texts, d: d, mode: mode)
        #expect(maxFiniteDifferenceError(inp, analytic: dinp, indices: Array(0..<(5 * d)), loss).error < 1e-8)
    }

    @Test func embedding() {
        var rng = TestRNG(6)
        let d = 3
        let v = 5
        let maxLen = 4
        let ids: [Int32] = [2, 4, 4, 2, 1]
        let pos: [Int32] = [0, 1, 2, 0, 1]
        let tok = rng.vector(v * d)
        let posT = rng.vector(maxLen * d)
        let r = rng.vector(5 * d)
        func loss(_ tok: [Double], _ posT: [Double]) -> Double {
            var out = [Double](repeating: 0, count: 5 * d)
            Embedding.forward(out: &out, ids: ids, positions: pos, tokenTable: tok, positionTable: posT, n: 5, d: d)
            return zip(out, r).map(*).reduce(0, +)
        }
        var dt = [Double](repeating: 0, count: v * d)
        var dp = [Double](repeating: 0, count: maxLen * d)
        Embedding.backward(
            dtokenTable: &dt, dpositionTable: &dp, dout: r, ids: ids, positions: pos, d: d, segments: .summed(5))
        #expect(
            maxFiniteDifferenceError(tok, analytic: dt, indices: Array(0..<(v * d))) { loss($0, posT) }.error < 1e-8)
        #expect(
            maxFiniteDifferenceError(posT, analytic: dp, indices: Array(0..<(maxLen * d))) { loss(tok, $0) }.error
                < 1e-8)
    }

    @Test func crossEntropy() {
        var rng = TestRNG(7)
        let b = 3
        let c = 4
        let logits = rng.vector(b * c, scale: 3)
        let labels = [0, 3, 2]
        func loss(_ z: [Double]) -> Double {
            var l = [Double](repeating: 0, count: b)
            var p = [Double](repeating: 0, count: b * c)
            CrossEntropy.forward(losses: &l, probs: &p, logits: z, labels: labels, b: b, c: c)
            return l.reduce(0, +) / Double(b)
        }
        var l = [Double](repeating: 0, count: b)
        var p = [Double](repeating: 0, count: b * c)
        CrossEntropy.forward(losses: &l, probs: &p, logits: logits, labels: labels, b: b, c: c)
        var dz = [Double](repeating: 0, count: b * c)
        CrossEntropy.backward(dlogits: &dz, probs: p, labels: labels, b: b, c: c, scale: 1 / Double(b))
        #expect(maxFiniteDifferenceError(logits, analytic: dz, indices: Array(0..<(b * c)), loss).error < 1e-8)
        // Stable for huge logits.
        CrossEntropy.forward(
            losses: &l, probs: &p, logits: [1000, -1000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], labels: [1, 0, 0], b: b, c: c)
        #expect(abs(l[0] - 2000) < 1e-9)
    }
}
