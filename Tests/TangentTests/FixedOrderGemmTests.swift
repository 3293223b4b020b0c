import Foundation
import TangentTensor
import Testing

/// The fixed-order product behind reproducible features: each element is exactly the
/// scalar sequence c + a0*b0 + a1*b1 + ..., on every code path and in every row position.
@Suite(.serialized, .singleThreadedBLAS) struct FixedOrderGemmTests {
    /// The defining sequence, in Swift scalar code (Swift never fuses multiply-add).
    static func reference(m: Int, n: Int, depth: Int, a: [Float], b: [Float], c: [Float]) -> [Float] {
        var out = c
        for i in 0..<m {
            for k in 0..<n {
                var acc = c[i * n + k]
                for j in 0..<depth {
                    let p = a[i * depth + j] * b[j * n + k]
                    acc = acc + p
                }
                out[i * n + k] = acc
            }
        }
        return out
    }

    static func run(
        m: Int, n: Int, depth: Int, a: [Float], b: [Float], c: [Float], path: FixedOrderGemm.InstructionSet? = nil
    ) -> [Float] {
        var out = c
        var pack = [Float](repeating: .nan, count: FixedOrderGemm.packCount(depth: depth))
        out.withUnsafeMutableBufferPointer { o in
            pack.withUnsafeMutableBufferPointer { p in
                FixedOrderGemm.accumulate(
                    m: m, n: n, depth: depth, a: a, lda: depth, b: b, ldb: n,
                    c: o.baseAddress!, ldc: n, pack: p.baseAddress!, path: path)
            }
        }
        return out
    }

    @Test(arguments: [(1, 1, 1), (3, 5, 7), (4, 16, 33), (13, 37, 129), (128, 96, 512), (2, 16, 64), (5, 1100, 40)])
    func equalsTheScalarSequenceBitForBitOnEveryPath(shape: (Int, Int, Int)) {
        let (m, n, depth) = shape
        var rng = TestRNG(UInt64(m * 1000 + n * 10 + depth))
        // Mixed magnitudes make any change of operation order visible in the last bits.
        let a = (0..<(m * depth)).map { _ in Float(rng.normal() * pow(10, Double(rng.int(5)) - 2)) }
        let b = (0..<(depth * n)).map { _ in Float(rng.normal()) }
        let c = (0..<(m * n)).map { _ in Float(rng.normal()) }
        let expected = Self.reference(m: m, n: n, depth: depth, a: a, b: b, c: c)
        for isa in FixedOrderGemm.InstructionSet.allCases {
            let got = Self.run(m: m, n: n, depth: depth, a: a, b: b, c: c, path: isa)
            let diff = zip(got, expected).filter { $0.0.bitPattern != $0.1.bitPattern }.count
            #expect(
                diff == 0, "\(diff) of \(m * n) elements differ on path \(FixedOrderGemm.instructionSet(asking: isa))")
        }
    }

    /// What OpenBLAS's AVX2 sgemm does not promise: a row's result is the same at every
    /// position among other rows (here every position of a 128-row product).
    @Test func aRowsResultDoesNotDependOnItsPosition() {
        let n = 96
        let depth = 64
        let m = 128
        var rng = TestRNG(31)
        let x = (0..<depth).map { _ in Float(rng.normal() * 3) }
        let b = (0..<(depth * n)).map { _ in Float(rng.normal()) }
        let alone = Self.run(m: 1, n: n, depth: depth, a: x, b: b, c: [Float](repeating: 0, count: n))
        for pos in 0..<m {
            var a = (0..<(m * depth)).map { _ in Float(rng.normal()) }
            for j in 0..<depth { a[pos * depth + j] = x[j] }
            let all = Self.run(m: m, n: n, depth: depth, a: a, b: b, c: [Float](repeating: 0, count: m * n))
            #expect(Array(all[(pos * n)..<((pos + 1) * n)]) == alone, "row position \(pos)")
        }
    }

    /// The defining sequence of `FixedOrderGemm.dots`, in Swift scalar code.
    static func dotReference(_ x: ArraySlice<Double>, _ k: ArraySlice<Float>) -> Double {
        let x = Array(x)
        let k = Array(k)
        let depth = x.count
        let main = depth - depth % 16
        var lanes = [Double](repeating: 0, count: 16)
        for j in 0..<main {
            let p = x[j] * Double(k[j])
            lanes[j % 16] = lanes[j % 16] + p
        }
        var four = [Double](repeating: 0, count: 4)
        for l in 0..<4 {
            let a01 = lanes[l] + lanes[l + 4]
            let a23 = lanes[l + 8] + lanes[l + 12]
            four[l] = a01 + a23
        }
        var s = (four[0] + four[1]) + (four[2] + four[3])
        for j in main..<depth {
            let p = x[j] * Double(k[j])
            s = s + p
        }
        return s
    }

    /// The kernel surrogate's products with the training kernel: every dot product is the
    /// defined sequence, on every path and whichever rows a call gets.
    @Test(arguments: [(1, 5, 7), (2, 9, 64), (3, 40, 100), (5, 33, 257), (2, 3, 15)])
    func dotsEqualTheDefinedSequenceOnEveryPathAndSplit(shape: (Int, Int, Int)) {
        let (m, rows, depth) = shape
        var rng = TestRNG(UInt64(m * 7919 + rows * 31 + depth))
        let x = (0..<(m * depth)).map { _ in rng.normal() * pow(10, Double(rng.int(5)) - 2) }
        let k = (0..<(rows * depth)).map { _ in Float(rng.normal()) }
        var expected = [Double](repeating: 0, count: m * rows)
        for i in 0..<m {
            for r in 0..<rows {
                expected[i * rows + r] = Self.dotReference(
                    x[(i * depth)..<((i + 1) * depth)], k[(r * depth)..<((r + 1) * depth)])
            }
        }
        for isa in FixedOrderGemm.InstructionSet.allCases {
            for split in [rows, max(1, rows / 3)] {
                var out = [Double](repeating: .nan, count: m * rows)
                k.withUnsafeBufferPointer { kp in
                    out.withUnsafeMutableBufferPointer { o in
                        for r0 in stride(from: 0, to: rows, by: split) {
                            FixedOrderGemm.dots(
                                m: m, rows: min(split, rows - r0), depth: depth, x: x, ldx: depth,
                                k: kp.baseAddress! + r0 * depth, ldk: depth, out: o.baseAddress! + r0, ldo: rows,
                                path: isa)
                        }
                    }
                }
                let diff = zip(out, expected).filter { $0.0.bitPattern != $0.1.bitPattern }.count
                #expect(
                    diff == 0,
                    "\(diff) of \(m * rows) dots differ on path \(FixedOrderGemm.instructionSet(asking: isa)), rows in blocks of \(split)"
                )
            }
        }
    }
}
