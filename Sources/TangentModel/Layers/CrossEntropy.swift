import TangentTensor

/// Softmax cross-entropy on logits, computed with the log-sum-exp shift.
public enum CrossEntropy {
    /// Loss of each row of logits [B, C] against labels; writes probabilities [B, C].
    public static func forward<T: BLASScalar>(
        losses: UnsafeMutablePointer<T>, probs: UnsafeMutablePointer<T>,
        logits: UnsafePointer<T>, labels: UnsafePointer<Int>, b: Int, c: Int
    ) {
        for i in 0..<b {
            let z = logits + i * c
            let p = probs + i * c
            var mx = z[0]
            for j in 1..<c where z[j] > mx { mx = z[j] }
            var sum: T = 0
            for j in 0..<c {
                let e = T.exp(z[j] - mx)
                p[j] = e
                sum += e
            }
            for j in 0..<c { p[j] /= sum }
            losses[i] = -(z[labels[i]] - mx - T.log(sum))
        }
    }

    /// dlogits [B, C] = scale * (probs - onehot(labels)); the gradient of scale * sum of losses.
    public static func backward<T: BLASScalar>(
        dlogits: UnsafeMutablePointer<T>, probs: UnsafePointer<T>, labels: UnsafePointer<Int>, b: Int, c: Int, scale: T
    ) {
        for i in 0..<b {
            for j in 0..<c {
                dlogits[i * c + j] = scale * (probs[i * c + j] - (j == labels[i] ? 1 : 0))
            }
        }
    }
}
