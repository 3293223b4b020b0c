import TangentTensor

/// Pools each text's token states into one vector: the mean over its tokens, or the
/// state at its first (BOS) position.
enum Pooling {
    /// out [B, D] from inp [N, D].
    static func forward<T: BLASScalar>(
        out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, texts: [Range<Int>], d: Int, mode: ModelConfig.Pooling
    ) {
        for (b, r) in texts.enumerated() {
            let y = out + b * d
            switch mode {
            case .cls:
                y.update(from: inp + r.lowerBound * d, count: d)
            case .mean:
                y.update(repeating: 0, count: d)
                for row in r {
                    let x = inp + row * d
                    for j in 0..<d { y[j] += x[j] }
                }
                let inv = 1 / T(r.count)
                for j in 0..<d { y[j] *= inv }
            }
        }
    }

    /// dinp [N, D] written from dout [B, D].
    static func backward<T: BLASScalar>(
        dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, texts: [Range<Int>], d: Int, mode: ModelConfig.Pooling
    ) {
        for (b, r) in texts.enumerated() {
            let g = dout + b * d
            switch mode {
            case .cls:
                (dinp + r.lowerBound * d).update(from: g, count: d)
                if r.count > 1 { (dinp + (r.lowerBound + 1) * d).update(repeating: 0, count: (r.count - 1) * d) }
            case .mean:
                let inv = 1 / T(r.count)
                for row in r {
                    let x = dinp + row * d
                    for j in 0..<d { x[j] = g[j] * inv }
                }
            }
        }
    }
}
