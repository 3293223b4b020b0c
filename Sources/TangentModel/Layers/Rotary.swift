import Foundation
import TangentTensor

/// Rotary position embeddings (RoPE) as transformers applies them to queries and keys:
/// per head, the two halves x1, x2 of a vector at position p become
/// (x1 cos - x2 sin, x2 cos + x1 sin) with angle p * theta^(-2i / dh) for coordinate i of
/// each half. Positions count from 0 in each text.
struct Rotary<T: BLASScalar> {
    /// cos and sin [maxLength, dh / 2], in float32 as torch computes them.
    let cos: [T], sin: [T]
    let half: Int

    /// The angles for positions 0..<maxLength of heads of `headDim` dimensions.
    init(theta: Double, headDim: Int, maxLength: Int) {
        half = headDim / 2
        // inv_freq = 1 / theta^(arange(0, dh, 2) / dh) and position * inv_freq in float32.
        let inverse = (0..<half).map { i in 1 / Float(Foundation.pow(Float(theta), Float(2 * i) / Float(headDim))) }
        var c = [T](repeating: 0, count: maxLength * half), s = c
        for p in 0..<maxLength {
            for i in 0..<half {
                let angle = Float(p) * inverse[i]
                c[p * half + i] = T(Foundation.cos(angle))
                s[p * half + i] = T(Foundation.sin(angle))
            }
        }
        cos = c
        sin = s
    }

    /// Rotates the q and k blocks of qkv [N, 3D] in place (`inverse`: by minus the angle,
    /// which is the backward pass of the rotation: its transpose).
    func apply(_ qkv: UnsafeMutablePointer<T>, positions: UnsafePointer<Int32>, n: Int, d: Int, heads: Int, inverse: Bool = false) {
        let dh = d / heads, ld = 3 * d
        cos.withUnsafeBufferPointer { cp in
            sin.withUnsafeBufferPointer { sp in
                for r in 0..<n {
                    let c = cp.baseAddress! + Int(positions[r]) * half, s = sp.baseAddress! + Int(positions[r]) * half
                    for block in 0..<2 {
                        for h in 0..<heads {
                            let x = qkv + r * ld + block * d + h * dh
                            for i in 0..<half {
                                let a = x[i], b = x[i + half], si = inverse ? -s[i] : s[i]
                                x[i] = a * c[i] - b * si
                                x[i + half] = b * c[i] + a * si
                            }
                        }
                    }
                }
            }
        }
    }
}
