import TangentTensor

/// Fully connected layer, PyTorch convention: out = inp @ W^T + b with W [O, I].
enum Linear {
    /// out [N, O] = inp [N, I] @ weight[O, I]^T + bias [O].
    /// With `rows`, one product per row range (per text): BLAS results for a row can
    /// depend on how many rows share the call, so this makes each text's numbers
    /// independent of its batch.
    static func forward<T: BLASScalar>(
        out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>,
        weight: UnsafePointer<T>, bias: UnsafePointer<T>, n: Int, i: Int, o: Int, rows: [Range<Int>]? = nil
    ) {
        for r in 0..<n { (out + r * o).update(from: bias, count: o) }
        for r in rows ?? [0..<n] where !r.isEmpty {
            T.gemm(
                transA: false, transB: true, m: r.count, n: o, k: i, alpha: 1, a: inp + r.lowerBound * i, lda: i,
                b: weight, ldb: i, beta: 1, c: out + r.lowerBound * o, ldc: o)
        }
    }

    /// dinp [N, I] (+)= dout @ W; dweight/dbias accumulate per segment (nil: skipped).
    static func backward<T: BLASScalar>(
        dinp: UnsafeMutablePointer<T>?, accumulateInput: Bool,
        dweight: UnsafeMutablePointer<T>?, dbias: UnsafeMutablePointer<T>?,
        dout: UnsafePointer<T>, inp: UnsafePointer<T>, weight: UnsafePointer<T>,
        n: Int, i: Int, o: Int, segments: Segments, rows: [Range<Int>]? = nil
    ) {
        if let dinp {
            for r in rows ?? [0..<n] where !r.isEmpty {
                T.gemm(
                    transA: false, transB: false, m: r.count, n: i, k: o, alpha: 1, a: dout + r.lowerBound * o, lda: o,
                    b: weight, ldb: i, beta: accumulateInput ? 1 : 0, c: dinp + r.lowerBound * i, ldc: i)
            }
        }
        for (k, r) in segments.ranges.enumerated() where !r.isEmpty {
            if let dweight {
                T.gemm(
                    transA: true, transB: false, m: o, n: i, k: r.count, alpha: 1,
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
