import Foundation
import TangentTensor

/// Rotary position embeddings (RoPE) as transformers applies them to queries and keys:
/// per head, the two halves x1, x2 of a vector at position p become
/// (x1 cos - x2 sin, x2 cos + x1 sin) with angle p * theta^(-2i / dh) for coordinate i of
/// each half. Positions count from 0 in each text.
struct Rotary<T: BLASScalar> {
    /// theta^(-2i / dh) for i < dh / 2, in float32 as torch computes `inv_freq`.
    let inverse: [Float]
    var half: Int { inverse.count }

    init(theta: Double, headDim: Int) {
        inverse = (0..<(headDim / 2)).map { i in 1 / Foundation.pow(Float(theta), Float(2 * i) / Float(headDim)) }
    }

    /// Rotates the q and k blocks of qkv [N, 3D] in place (`inverse`: by minus the angle,
    /// which is the backward pass of the rotation: its transpose). Each token's angles are
    /// computed as torch computes them (position times `inverse` in float32, then cos and
    /// sin), so no table grows with the positions a config allows.
    func apply(
        _ qkv: UnsafeMutablePointer<T>, positions: UnsafePointer<Int32>, n: Int, d: Int, heads: Int,
        inverse backward: Bool = false
    ) {
        let dh = d / heads
        let ld = 3 * d
        let half = self.half
        withUnsafeTemporaryAllocation(of: T.self, capacity: 2 * half) { buffer in
            let c = buffer.baseAddress!
            let s = c + half
            for r in 0..<n {
                for i in 0..<half {
                    let angle = Float(positions[r]) * inverse[i]
                    c[i] = T(Foundation.cos(angle))
                    s[i] = backward ? -T(Foundation.sin(angle)) : T(Foundation.sin(angle))
                }
                for block in 0..<2 {
                    for h in 0..<heads {
                        let x = qkv + r * ld + block * d + h * dh
                        for i in 0..<half {
                            let a = x[i]
                            let b = x[i + half]
                            x[i] = a * c[i] - b * s[i]
                            x[i + half] = b * c[i] + a * s[i]
                        }
                    }
                }
            }
        }
    }
}
