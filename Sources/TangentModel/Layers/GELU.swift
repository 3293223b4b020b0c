import TangentTensor

/// Exact GELU, x * Phi(x) in the erf form, as `torch.nn.GELU()`.
enum GELU {
    /// out [N] = gelu(inp [N]).
    static func forward<T: BLASScalar>(out: UnsafeMutablePointer<T>, inp: UnsafePointer<T>, count: Int) {
        let invSqrt2 = 1 / T.sqrt(2)
        for i in 0..<count {
            let x = inp[i]
            out[i] = x * (1 + T.verf(x * invSqrt2)) / 2
        }
    }

    /// dinp [N] = dout * gelu'(inp), written (not accumulated).
    static func backward<T: BLASScalar>(dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, inp: UnsafePointer<T>, count: Int) {
        let invSqrt2 = 1 / T.sqrt(2)
        let invSqrt2Pi = 1 / T.sqrt(2 * T.pi)
        for i in 0..<count {
            let x = inp[i]
            let cdf = (1 + T.verf(x * invSqrt2)) / 2
            let pdf = T.vexp(-x * x / 2) * invSqrt2Pi
            dinp[i] = dout[i] * (cdf + x * pdf)
        }
    }
}
