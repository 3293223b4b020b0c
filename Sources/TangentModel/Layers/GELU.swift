import TangentTensor

/// Exact GELU, x * Phi(x) in the erf form, as `torch.nn.GELU()`.
///
/// The forward pass also writes gelu'(x) = Phi(x) + x phi(x), so each backward pass is a
/// product: featurization runs one backward pass per class on the same forward pass, and
/// the derivative then costs one erf and one exp in all.
enum GELU {
    /// out [N] = gelu(inp [N]); derivative [N] = gelu'(inp) (it may be `inp` itself: each
    /// element is read before it is written).
    static func forward<T: BLASScalar>(
        out: UnsafeMutablePointer<T>, derivative: UnsafeMutablePointer<T>,
        inp: UnsafePointer<T>, count: Int
    ) {
        let invSqrt2 = 1 / T.sqrt(2)
        let invSqrt2Pi = 1 / T.sqrt(2 * T.pi)
        // `derivative` is usually `inp`, and the vectorizer's overlap check then falls back
        // to scalar code; copying each chunk of inputs to the stack first keeps the loop
        // vectorized (out and derivative never overlap).
        let chunk = 256
        withUnsafeTemporaryAllocation(of: T.self, capacity: chunk) { buffer in
            let xs = buffer.baseAddress!
            var start = 0
            while start < count {
                let n = Swift.min(chunk, count - start)
                xs.update(from: inp + start, count: n)
                let o = out + start
                let dv = derivative + start
                for i in 0..<n {
                    // The same operations, in the same order, as computing gelu and gelu'
                    // apart, so results (and trained weights) are bit-identical to doing so.
                    let x = xs[i]
                    let e = T.verf(x * invSqrt2)
                    o[i] = x * (1 + e) / 2
                    let pdf = T.vexp(-x * x / 2) * invSqrt2Pi
                    dv[i] = (1 + e) / 2 + x * pdf
                }
                start += n
            }
        }
    }

    /// dinp [N] = dout * gelu'(x), written (not accumulated), from the forward's derivative.
    static func backward<T: BLASScalar>(
        dinp: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, derivative: UnsafePointer<T>, count: Int
    ) {
        for i in 0..<count { dinp[i] = dout[i] * derivative[i] }
    }

    /// The tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) as
    /// transformers' `gelu_new`, with its derivative written as `forward` does.
    static func forwardTanh<T: BLASScalar>(
        out: UnsafeMutablePointer<T>, derivative: UnsafeMutablePointer<T>,
        inp: UnsafePointer<T>, count: Int
    ) {
        let c = T.sqrt(2 / T.pi)
        let a: T = 0.044715
        for i in 0..<count {
            let x = inp[i]
            let t = T.tanh(c * (x + a * x * x * x))
            out[i] = x * (1 + t) / 2
            derivative[i] = (1 + t) / 2 + x * (1 - t * t) * c * (1 + 3 * a * x * x) / 2
        }
    }
}
