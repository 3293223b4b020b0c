import TangentTensor

/// Multi-head self-attention over packed texts. Each text attends only to its own
/// tokens, which is what the spec's padding mask achieves; packing means no padded
/// positions exist at all, so a text's logits do not depend on its batch.
enum Attention {
    /// out [N, D] = concat_h softmax(q_h k_h^T / sqrt(dh)) v_h per text.
    /// qkv [N, 3D] (q, k, v column blocks); saves att (per text, per head, L x L probabilities).
    /// With `window`, token i attends only to tokens j with |i - j| <= window (ModernBERT's
    /// sliding-window layers): the other probabilities are 0, so the backward pass needs
    /// nothing more.
    static func forward<T: BLASScalar>(
        out: UnsafeMutablePointer<T>, att: UnsafeMutablePointer<T>,
        qkv: UnsafePointer<T>, texts: [Range<Int>], attOffsets: [Int], d: Int, heads: Int, window: Int? = nil
    ) {
        let dh = d / heads
        let scale = 1 / T(dh).squareRoot()
        let ld = 3 * d
        for (b, r) in texts.enumerated() {
            let L = r.count
            for h in 0..<heads {
                let q = qkv + r.lowerBound * ld + h * dh
                let k = q + d
                let v = q + 2 * d
                let p = att + attOffsets[b] + h * L * L
                T.gemm(
                    transA: false, transB: true, m: L, n: L, k: dh, alpha: scale, a: q, lda: ld,
                    b: k, ldb: ld, beta: 0, c: p, ldc: L)
                if let window, window < L - 1 {
                    for i in 0..<L {
                        let row = p + i * L
                        let lo = max(0, i - window)
                        let hi = min(L, i + window + 1)
                        row.update(repeating: 0, count: lo)
                        (row + hi).update(repeating: 0, count: L - hi)
                        softmax(row + lo, hi - lo)
                    }
                } else {
                    softmaxRows(p, L)
                }
                T.gemm(
                    transA: false, transB: false, m: L, n: dh, k: L, alpha: 1, a: p, lda: L,
                    b: v, ldb: ld, beta: 0, c: out + r.lowerBound * d + h * dh, ldc: d)
            }
        }
    }

    /// Each row of the L x L scores `p` made its softmax, in place.
    static func softmaxRows<T: BLASScalar>(_ p: UnsafeMutablePointer<T>, _ L: Int) {
        for i in 0..<L { softmax(p + i * L, L) }
    }

    /// The softmax of `count` scores, in place.
    @inline(__always)
    static func softmax<T: BLASScalar>(_ row: UnsafeMutablePointer<T>, _ count: Int) {
        var mx = row[0]
        for j in 1..<count where row[j] > mx { mx = row[j] }
        // Exponentials in a loop of their own (it vectorizes), then the sum in order.
        for j in 0..<count { row[j] = T.vexp(row[j] - mx) }
        var sum: T = 0
        for j in 0..<count { sum += row[j] }
        let inv = 1 / sum
        for j in 0..<count { row[j] *= inv }
    }

    /// dS = P * (dP - rowsum(dP * P)) in place of dP (L x L), times `scale` (the scores').
    static func softmaxBackwardRows<T: BLASScalar>(
        _ p: UnsafePointer<T>, _ dp: UnsafeMutablePointer<T>, _ L: Int, scale: T
    ) {
        for i in 0..<L {
            let pr = p + i * L
            let dr = dp + i * L
            var s: T = 0
            for j in 0..<L { s += pr[j] * dr[j] }
            for j in 0..<L { dr[j] = pr[j] * (dr[j] - s) * scale }
        }
    }

    /// dqkv [N, 3D] written from dout [N, D]; scratch needs maxL * maxL elements.
    static func backward<T: BLASScalar>(
        dqkv: UnsafeMutablePointer<T>, scratch: UnsafeMutablePointer<T>,
        dout: UnsafePointer<T>, qkv: UnsafePointer<T>, att: UnsafePointer<T>,
        texts: [Range<Int>], attOffsets: [Int], d: Int, heads: Int
    ) {
        let dh = d / heads
        let scale = 1 / T(dh).squareRoot()
        let ld = 3 * d
        for (b, r) in texts.enumerated() {
            let L = r.count
            for h in 0..<heads {
                let q = qkv + r.lowerBound * ld + h * dh
                let k = q + d
                let v = q + 2 * d
                let dq = dqkv + r.lowerBound * ld + h * dh
                let dk = dq + d
                let dv = dq + 2 * d
                let p = att + attOffsets[b] + h * L * L
                let dO = dout + r.lowerBound * d + h * dh
                let dp = scratch
                // dP = dO V^T ; dV = P^T dO
                T.gemm(
                    transA: false, transB: true, m: L, n: L, k: dh, alpha: 1, a: dO, lda: d,
                    b: v, ldb: ld, beta: 0, c: dp, ldc: L)
                T.gemm(
                    transA: true, transB: false, m: L, n: dh, k: L, alpha: 1, a: p, lda: L,
                    b: dO, ldb: d, beta: 0, c: dv, ldc: ld)
                softmaxBackwardRows(p, dp, L, scale: scale)
                // dQ = dS K ; dK = dS^T Q
                T.gemm(
                    transA: false, transB: false, m: L, n: dh, k: L, alpha: 1, a: dp, lda: L,
                    b: k, ldb: ld, beta: 0, c: dq, ldc: ld)
                T.gemm(
                    transA: true, transB: false, m: L, n: dh, k: L, alpha: 1, a: dp, lda: L,
                    b: q, ldb: ld, beta: 0, c: dk, ldc: ld)
            }
        }
    }
}
