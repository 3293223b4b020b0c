import Foundation
import RealModule

/// Softmax, log-softmax, log-odds and argmax of one row of logits: the one place where
/// logits become probabilities, so that every stage shifts by the maximum and sums in
/// Double the same way.
public enum Softmax {
    /// softmax(z), computed in Double after subtracting max(z).
    public static func probabilities(_ z: [Double]) -> [Double] {
        let m = z.max() ?? 0
        let e = z.map { Foundation.exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// softmax in the logits' own precision (the gradient computer's, generic for the Float64
    /// gradient checks).
    public static func probabilities<T: Real & BinaryFloatingPoint>(_ z: [T]) -> [T] {
        let m = z.max() ?? 0
        let e = z.map { T.exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// softmax of Float logits, computed in Double.
    public static func probabilities(_ z: [Float]) -> [Float] {
        probabilities(z.map(Double.init)).map(Float.init)
    }

    /// log softmax(z) = z - logsumexp(z), without forming probabilities that underflow.
    public static func logProbabilities(_ z: [Double]) -> [Double] {
        let m = z.max() ?? 0
        let lse = m + Foundation.log(z.reduce(0) { $0 + Foundation.exp($1 - m) })
        return z.map { $0 - lse }
    }

    /// log p_c - log(1 - p_c) = z_c - logsumexp(z_{-c}): does not saturate at p = 0 or 1.
    public static func logOdds(_ z: [Double], classIndex c: Int) -> Double {
        var m = -Double.infinity
        for (k, v) in z.enumerated() where k != c { m = max(m, v) }
        var s = 0.0
        for (k, v) in z.enumerated() where k != c { s += Foundation.exp(v - m) }
        return z[c] - (m + Foundation.log(s))
    }

    /// d L / d z of the cross-entropy L = -log p_y: p - onehot(y), the seed of a loss
    /// gradient's backward pass (the one definition every loss gradient uses).
    public static func lossResidual<T: Real & BinaryFloatingPoint>(_ z: [T], label y: Int) -> [T] {
        var r = probabilities(z)
        r[y] -= 1
        return r
    }

    /// d m / d z of the margin m = log p_y - log(1 - p_y) = z_y - logsumexp(z_{-y}): 1 at
    /// y, minus the softmax over the other classes elsewhere (TRAK's and EK-FAC's queries).
    public static func marginCoefficients(_ z: [Double], label y: Int) -> [Double] {
        var others = z
        others[y] = -.infinity
        var s = probabilities(others).map { -$0 }
        s[y] = 1
        return s
    }

    /// The index of the largest entry; the first one on ties.
    public static func argmax<C: Collection>(_ v: C) -> Int where C.Element: Comparable, C.Index == Int {
        var best = v.startIndex
        for i in v.indices where v[i] > v[best] { best = i }
        return best - v.startIndex
    }
}
