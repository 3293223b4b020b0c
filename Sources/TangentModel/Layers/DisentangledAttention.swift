import Foundation
import TangentTensor

/// DeBERTa-v2/v3's disentangled self-attention over packed texts: per head, the score of
/// query i and key j is
///
///     (q_i . k_j + q_i . Kr[r_ij] + k_j . Qr[r_ij]) / sqrt(dh * factor)
///
/// with Kr and Qr the relative-position embeddings projected by the key and query
/// projections (content to position `c2p`, position to content `p2c`; factor = 1 + the
/// terms used) and r_ij = clamp(span + bucket(i - j), 0, 2 span - 1) the relative position's
/// row, log-bucketed as transformers' `make_log_bucket_position`. Each text attends only
/// to its own tokens.
enum DisentangledAttention {
    /// The relative-position row of every (i, j) of a text of `length` tokens.
    struct Positions {
        let span: Int, buckets: Int, maxPosition: Int

        /// transformers' `make_log_bucket_position` of i - j (identity when `buckets` <= 0),
        /// in float32 as torch computes it there.
        func bucket(_ relative: Int) -> Int {
            guard buckets > 0, maxPosition > 0 else { return relative }
            let mid = buckets / 2
            let sign: Float = relative > 0 ? 1 : relative < 0 ? -1 : 0
            let absolute = relative < mid && relative > -mid ? Float(mid - 1) : Float(abs(relative))
            if absolute <= Float(mid) { return relative }
            let ratio = Float(maxPosition - 1) / Float(mid)
            let logPos =
                (Foundation.log(absolute / Float(mid)) / Foundation.log(ratio) * Float(mid - 1)).rounded(.up)
                + Float(mid)
            return Int(logPos * sign)
        }

        /// r_ij for i, j in 0..<length, row-major.
        func rows(length L: Int) -> [Int32] {
            var out = [Int32](repeating: 0, count: L * L)
            for i in 0..<L {
                for j in 0..<L { out[i * L + j] = Int32(min(max(span + bucket(i - j), 0), 2 * span - 1)) }
            }
            return out
        }
    }

    /// Which relative terms the scores have, and the scale's factor: 1 + the terms
    /// `pos_att_type` names, which transformers counts even when `relative_attention` is
    /// off and the scores have none.
    struct Terms {
        let c2p: Bool, p2c: Bool
        let factor: Int
        init(c2p: Bool, p2c: Bool, factor: Int? = nil) {
            self.c2p = c2p
            self.p2c = p2c
            self.factor = factor ?? 1 + (c2p ? 1 : 0) + (p2c ? 1 : 0)
        }
    }

    /// The relative rows a text of `length` tokens reads (r_ij for i, j < length): a
    /// contiguous range, since the buckets do not decrease with i - j.
    static func usedRows(_ positions: Positions, length L: Int) -> ClosedRange<Int> {
        let last = 2 * positions.span - 1
        let lo = min(max(positions.span + positions.bucket(-(L - 1)), 0), last)
        let hi = min(max(positions.span + positions.bucket(L - 1), 0), last)
        return lo...hi
    }

    /// out [N, D]; att saves the probabilities (per text, per head, L x L). qkv [N, 3D];
    /// kr, qr [2 span, D] (the projected relative embeddings; either may be unused);
    /// scratch needs maxL * 2 span elements.
    static func forward<T: BLASScalar>(
        out: UnsafeMutablePointer<T>, att: UnsafeMutablePointer<T>, scratch: UnsafeMutablePointer<T>,
        qkv: UnsafePointer<T>, kr: UnsafePointer<T>, qr: UnsafePointer<T>, positions: Positions, terms: Terms,
        texts: [Range<Int>], attOffsets: [Int], d: Int, heads: Int
    ) {
        let dh = d / heads
        let R = 2 * positions.span
        let ld = 3 * d
        let scale = 1 / T(dh * terms.factor).squareRoot()
        for (b, r) in texts.enumerated() {
            let L = r.count
            let rows = positions.rows(length: L)
            for h in 0..<heads {
                let q = qkv + r.lowerBound * ld + h * dh
                let k = q + d
                let v = q + 2 * d
                let p = att + attOffsets[b] + h * L * L
                T.gemm(
                    transA: false, transB: true, m: L, n: L, k: dh, alpha: scale, a: q, lda: ld, b: k, ldb: ld, beta: 0,
                    c: p, ldc: L)
                if terms.c2p {
                    // C = q Kr^T [L, 2 span]; S[i, j] += C[i, r_ij].
                    T.gemm(
                        transA: false, transB: true, m: L, n: R, k: dh, alpha: scale, a: q, lda: ld, b: kr + h * dh,
                        ldb: d,
                        beta: 0, c: scratch, ldc: R)
                    for i in 0..<L { for j in 0..<L { p[i * L + j] += scratch[i * R + Int(rows[i * L + j])] } }
                }
                if terms.p2c {
                    // P = k Qr^T [L, 2 span]; S[i, j] += P[j, r_ij].
                    T.gemm(
                        transA: false, transB: true, m: L, n: R, k: dh, alpha: scale, a: k, lda: ld, b: qr + h * dh,
                        ldb: d,
                        beta: 0, c: scratch, ldc: R)
                    for i in 0..<L { for j in 0..<L { p[i * L + j] += scratch[j * R + Int(rows[i * L + j])] } }
                }
                Attention.softmaxRows(p, L)
                T.gemm(
                    transA: false, transB: false, m: L, n: dh, k: L, alpha: 1, a: p, lda: L, b: v, ldb: ld, beta: 0,
                    c: out + r.lowerBound * d + h * dh, ldc: d)
            }
        }
    }

    /// dqkv [N, 3D] written, dkr and dqr [2 span, D] added to (per text when `perText`
    /// gives each text's own [2 span, D] block), from dout [N, D]. scratch needs
    /// maxL * maxL + maxL * 2 span elements.
    static func backward<T: BLASScalar>(
        dqkv: UnsafeMutablePointer<T>, dkr: UnsafeMutablePointer<T>, dqr: UnsafeMutablePointer<T>, perText: Int?,
        scratch: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, qkv: UnsafePointer<T>, kr: UnsafePointer<T>,
        qr: UnsafePointer<T>,
        att: UnsafePointer<T>, positions: Positions, terms: Terms, texts: [Range<Int>], attOffsets: [Int], d: Int,
        heads: Int
    ) {
        let dh = d / heads
        let R = 2 * positions.span
        let ld = 3 * d
        let scale = 1 / T(dh * terms.factor).squareRoot()
        for (b, r) in texts.enumerated() {
            let L = r.count
            let rows = positions.rows(length: L)
            let dkrText = dkr + (perText.map { $0 * b } ?? 0)
            let dqrText = dqr + (perText.map { $0 * b } ?? 0)
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
                let dRel = scratch + L * L
                T.gemm(
                    transA: false, transB: true, m: L, n: L, k: dh, alpha: 1, a: dO, lda: d, b: v, ldb: ld, beta: 0,
                    c: dp, ldc: L)
                T.gemm(
                    transA: true, transB: false, m: L, n: dh, k: L, alpha: 1, a: p, lda: L, b: dO, ldb: d, beta: 0,
                    c: dv, ldc: ld)
                Attention.softmaxBackwardRows(p, dp, L, scale: scale)
                T.gemm(
                    transA: false, transB: false, m: L, n: dh, k: L, alpha: 1, a: dp, lda: L, b: k, ldb: ld, beta: 0,
                    c: dq, ldc: ld)
                T.gemm(
                    transA: true, transB: false, m: L, n: dh, k: L, alpha: 1, a: dp, lda: L, b: q, ldb: ld, beta: 0,
                    c: dk, ldc: ld)
                if terms.c2p {
                    // dC[i, r] = sum_j dS_ij [r_ij = r]: dq += dC Kr, dKr += dC^T q.
                    for x in 0..<(L * R) { dRel[x] = 0 }
                    for i in 0..<L { for j in 0..<L { dRel[i * R + Int(rows[i * L + j])] += dp[i * L + j] } }
                    T.gemm(
                        transA: false, transB: false, m: L, n: dh, k: R, alpha: 1, a: dRel, lda: R, b: kr + h * dh,
                        ldb: d,
                        beta: 1, c: dq, ldc: ld)
                    T.gemm(
                        transA: true, transB: false, m: R, n: dh, k: L, alpha: 1, a: dRel, lda: R, b: q, ldb: ld,
                        beta: 1, c: dkrText + h * dh, ldc: d)
                }
                if terms.p2c {
                    // dP[j, r] = sum_i dS_ij [r_ij = r]: dk += dP Qr, dQr += dP^T k.
                    for x in 0..<(L * R) { dRel[x] = 0 }
                    for i in 0..<L { for j in 0..<L { dRel[j * R + Int(rows[i * L + j])] += dp[i * L + j] } }
                    T.gemm(
                        transA: false, transB: false, m: L, n: dh, k: R, alpha: 1, a: dRel, lda: R, b: qr + h * dh,
                        ldb: d,
                        beta: 1, c: dk, ldc: ld)
                    T.gemm(
                        transA: true, transB: false, m: R, n: dh, k: L, alpha: 1, a: dRel, lda: R, b: k, ldb: ld,
                        beta: 1, c: dqrText + h * dh, ldc: d)
                }
            }
        }
    }
}
