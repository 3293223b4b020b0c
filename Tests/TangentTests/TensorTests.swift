import Foundation
import TangentTensor
import Testing

@Suite(.singleThreadedBLAS) struct TensorTests {
    @Test func vectorizedFloatExpAndErfMatchLibm() {
        var worstExp = 0.0
        var worstErf = 0.0
        for i in 0...200_000 {
            let x = -87.0 + 175.0 * Double(i) / 200_000
            let e = Double(Float.vexp(Float(x)))
            worstExp = max(worstExp, abs(e - Foundation.exp(Double(Float(x)))) / Foundation.exp(Double(Float(x))))
            let y = -6.0 + 12.0 * Double(i) / 200_000
            worstErf = max(worstErf, abs(Double(Float.verf(Float(y))) - Foundation.erf(Double(Float(y)))))
        }
        #expect(worstExp < 3e-7, "exp relative error \(worstExp)")
        #expect(worstErf < 5e-7, "erf absolute error \(worstErf)")
        #expect(Float.vexp(-200) >= 0 && Float.vexp(-200) < 1e-37)
        #expect(Double.verf(0.5) == Foundation.erf(0.5))
    }

    @Test func blasMatchesTheNaiveReference() {
        let rng = CounterRNG.derive(1, 2)
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let m = 7
            let n = 5
            let k = 9
            let a = (0..<(m * k)).map { rng.normal(UInt64($0)) }
            let b = (0..<(k * n)).map { rng.normal(UInt64(1000 + $0)) }
            let lda = ta ? m : k
            let ldb = tb ? k : n
            var c = [Double](repeating: 0, count: m * n)
            Double.gemm(
                transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: &c,
                ldc: n)
            let r = referenceGemm(transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb)
            let diff = zip(c, r).map { abs($0 - $1) }.max()!
            #expect(diff < 1e-12, "transA \(ta) transB \(tb): max difference \(diff)")
        }
    }

    @Test func counterRNGIsAPureFunctionOfKeyAndCounter() {
        let a = CounterRNG.derive(42, 1, 2)
        let b = CounterRNG.derive(42, 1, 2)
        let c = CounterRNG.derive(42, 2, 1)
        #expect(a.bits(5) == b.bits(5))
        #expect(a.bits(5) != c.bits(5))
        let n = 100_000
        let mean = (0..<n).map { a.normal(UInt64($0)) }.reduce(0, +) / Double(n)
        let variance =
            (0..<n).map {
                let z = a.normal(UInt64($0))
                return z * z
            }.reduce(0, +) / Double(n)
        #expect(abs(mean) < 0.02 && abs(variance - 1) < 0.02)
        #expect(splitRange(10, parts: 3) == [0..<4, 4..<7, 7..<10])
    }
}
