import TangentTensor

/// Fully connected layer, PyTorch convention: out = inp @ W^T + b with W [O, I].
enum Linear {
    /// out [N, O] = inp [N, I] @ weight[O, I]^T + bias [O].
    static func forward<T: BLASScalar>(
        out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>,
        weight: UnsafePointer<T>, bias: UnsafePointer<T>, n: Int, i: Int, o: Int
    ) {
        for r in 0..<n { (out + r * o).update(from: bias, count: o) }
        T.gemm(transA: false, transB: true, m: n, n: o, k: i, alpha: 1, a: inp, lda: i,
               b: weight, ldb: i, beta: 1, c: out, ldc: o)
    }

    /// dinp [N, I] (+)= dout @ W; dweight/dbias accumulate per segment (nil: skipped).
    static func backward<T: BLASScalar>(
        dinp: UnsafeMutablePointer<T>?, accumulateInput: Bool,
        dweight: UnsafeMutablePointer<T>?, dbias: UnsafeMutablePointer<T>?,
        dout: UnsafePointer<T>, inp: UnsafePointer<T>, weight: UnsafePointer<T>,
        n: Int, i: Int, o: Int, segments: Segments
    ) {
        if let dinp {
            T.gemm(transA: false, transB: false, m: n, n: i, k: o, alpha: 1, a: dout, lda: o,
                   b: weight, ldb: i, beta: accumulateInput ? 1 : 0, c: dinp, ldc: i)
        }
        for (k, r) in segments.ranges.enumerated() where !r.isEmpty {
            if let dweight {
                T.gemm(transA: true, transB: false, m: o, n: i, k: r.count, alpha: 1,
                       a: dout + r.lowerBound * o, lda: o, b: inp + r.lowerBound * i, ldb: i,
                       beta: 1, c: dweight + k * segments.stride, ldc: i)
            }
            if let dbias {
                let db = dbias + k * segments.stride
                for row in r {
                    let d = dout + row * o
                    for j in 0..<o { db[j] += d[j] }
                }
            }
        }
    }
}
