import Foundation
import TangentTensor

/// How faithfully a surrogate reproduces the network (kernels spec).
public enum Faithfulness {
    /// Kendall's tau-b between two equally long score lists (ties handled), O(n^2).
    public static func kendallTau(_ a: [Double], _ b: [Double]) -> Double {
        precondition(a.count == b.count)
        let n = a.count
        var concordant = 0.0
        var discordant = 0.0
        var tiesA = 0.0
        var tiesB = 0.0
        for i in 0..<n {
            for j in (i + 1)..<n {
                let da = a[i] - a[j]
                let db = b[i] - b[j]
                if da == 0 && db == 0 { continue }
                if da == 0 {
                    tiesA += 1
                    continue
                }
                if db == 0 {
                    tiesB += 1
                    continue
                }
                if (da > 0) == (db > 0) { concordant += 1 } else { discordant += 1 }
            }
        }
        let denom = ((concordant + discordant + tiesA) * (concordant + discordant + tiesB)).squareRoot()
        return denom == 0 ? 0 : (concordant - discordant) / denom
    }

    /// log p_c - log(1 - p_c) from logits, computed stably: z_c - logsumexp(z_{-c}).
    public static func logOdds(logits z: [Double], classIndex c: Int) -> Double { Softmax.logOdds(z, classIndex: c) }

    /// The class whose log-odds tau compares: class 1 for binary tasks, the true label otherwise.
    public static func comparedClass(classes: Int, label: Int) -> Int { classes == 2 ? 1 : label }

    /// Probability of class c from logits.
    public static func probability(logits z: [Double], classIndex c: Int) -> Double { Softmax.probabilities(z)[c] }
}
