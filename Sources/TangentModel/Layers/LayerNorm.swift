import TangentTensor

/// LayerNorm over the last dimension with biased variance, as `torch.nn.LayerNorm`.
enum LayerNorm {
    /// out [N, D]; saves mean [N] and rstd [N] for backward.
    static func forward<T: BLASScalar>(
        out: UnsafeMutablePointer<T>, mean: UnsafeMutablePointer<T>, rstd: UnsafeMutablePointer<T>,
        inp: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>, n: Int, d: Int, eps: T
    ) {
        let invD = 1 / T(d)
        for r in 0..<n {
            let x = inp + r * d
            var m: T = 0
            for j in 0..<d { m += x[j] }
            m *= invD
            var v: T = 0
            for j in 0..<d {
                let c = x[j] - m
                v += c * c
            }
            v *= invD
            // A row that overflowed (infinite variance) would normalize to 0 times its
            // infinities; NaN instead, as torch gives, so that the outputs' finite check
            // (FiniteCheck) refuses it rather than passing on a silently wrong row.
            let s = v.isFinite ? 1 / (v + eps).squareRoot() : .nan
            let y = out + r * d
            for j in 0..<d { y[j] = (x[j] - m) * s * weight[j] + bias[j] }
            mean[r] = m
            rstd[r] = s
        }
    }

    /// dweight and dbias alone, accumulated per segment (the streaming backward computes
    /// dinp with `backward` and these separately, into its own scratch).
    static func weightGradients<T: BLASScalar>(
        dweight: UnsafeMutablePointer<T>, dbias: UnsafeMutablePointer<T>?, dout: UnsafePointer<T>,
        inp: UnsafePointer<T>,
        mean: UnsafePointer<T>, rstd: UnsafePointer<T>, d: Int, segments: Segments
    ) {
        for (k, range) in segments.ranges.enumerated() {
            let dw = dweight + k * segments.stride
            let db = dbias.map { $0 + k * segments.stride }
            for r in range {
                let x = inp + r * d
                let dy = dout + r * d
                let m = mean[r]
                let s = rstd[r]
                for j in 0..<d { dw[j] += dy[j] * (x[j] - m) * s }
                if let db { for j in 0..<d { db[j] += dy[j] } }
            }
        }
    }

    /// dinp [N, D] += input gradient; dweight/dbias accumulate per segment (nil: skipped).
    static func backward<T: BLASScalar>(
        dinp: UnsafeMutablePointer<T>, dweight: UnsafeMutablePointer<T>?, dbias: UnsafeMutablePointer<T>?,
        dout: UnsafePointer<T>, inp: UnsafePointer<T>, weight: UnsafePointer<T>,
        mean: UnsafePointer<T>, rstd: UnsafePointer<T>, n: Int, d: Int, segments: Segments
    ) {
        let invD = 1 / T(d)
        for (k, range) in segments.ranges.enumerated() {
            let dw = dweight.map { $0 + k * segments.stride }
            let db = dbias.map { $0 + k * segments.stride }
            for r in range {
                let x = inp + r * d
                let dy = dout + r * d
                let dx = dinp + r * d
                let m = mean[r]
                let s = rstd[r]
                var dnormMean: T = 0
                var dnormNormMean: T = 0
                for j in 0..<d {
                    let norm = (x[j] - m) * s
                    let dnorm = dy[j] * weight[j]
                    dnormMean += dnorm
                    dnormNormMean += dnorm * norm
                }
                dnormMean *= invD
                dnormNormMean *= invD
                for j in 0..<d {
                    let norm = (x[j] - m) * s
                    let dnorm = dy[j] * weight[j]
                    dx[j] += (dnorm - dnormMean - norm * dnormNormMean) * s
                }
                if let dw { for j in 0..<d { dw[j] += dy[j] * (x[j] - m) * s } }
                if let db { for j in 0..<d { db[j] += dy[j] } }
            }
        }
    }
}
