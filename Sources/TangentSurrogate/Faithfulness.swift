import Foundation
import TangentTensor

/// How faithfully a surrogate reproduces the network (kernels spec).
public enum Faithfulness {
    /// Kendall's tau-b between two equally long score lists (ties handled), in O(n log n)
    /// by Knight's method: sort by (a, b), count the inversions of b by merge sort (the
    /// discordant pairs) and the tie groups; the counts are exact integers, so the value
    /// is the pairwise definition's (`kendallTauPairwise`) to the bit. Lists with a
    /// non-finite score, whose differences are not ordered, take the pairwise route.
    public static func kendallTau(_ a: [Double], _ b: [Double]) -> Double {
        precondition(a.count == b.count)
        let n = a.count
        guard n > 1, a.allSatisfy(\.isFinite), b.allSatisfy(\.isFinite) else { return kendallTauPairwise(a, b) }
        // Equal as the pairwise definition sees them: a difference of 0 (so -0 == +0).
        let order = (0..<n).sorted { a[$0] != a[$1] ? a[$0] < a[$1] : b[$0] < b[$1] }
        let x = order.map { a[$0] }
        var y = order.map { b[$0] }
        func pairs(_ t: Int) -> Int { t * (t - 1) / 2 }
        func tiedPairs(_ equal: (Int, Int) -> Bool) -> Int {
            var total = 0
            var run = 1
            for i in 1..<n {
                if equal(i - 1, i) {
                    run += 1
                } else {
                    total += pairs(run)
                    run = 1
                }
            }
            return total + pairs(run)
        }
        let tiesA = tiedPairs { x[$0] == x[$1] }
        let tiesBoth = tiedPairs { x[$0] == x[$1] && y[$0] == y[$1] }
        let discordant = mergeSortInversions(&y)
        let tiesB = tiedPairs { y[$0] == y[$1] }
        let all = pairs(n)
        let concordant = all - tiesA - tiesB + tiesBoth - discordant
        // The pairwise route's sums: pairs tied in a alone and in b alone.
        let c = Double(concordant)
        let d = Double(discordant)
        let onlyA = Double(tiesA - tiesBoth)
        let onlyB = Double(tiesB - tiesBoth)
        let denom = ((c + d + onlyA) * (c + d + onlyB)).squareRoot()
        return denom == 0 ? 0 : (c - d) / denom
    }

    /// Sorts `v` ascending (stable merge sort) and returns the number of pairs i < j with
    /// v[i] > v[j] it had.
    static func mergeSortInversions(_ v: inout [Double]) -> Int {
        let n = v.count
        var buffer = v
        var inversions = 0
        var width = 1
        while width < n {
            var lo = 0
            while lo < n {
                let mid = min(lo + width, n)
                let hi = min(lo + 2 * width, n)
                var i = lo
                var j = mid
                var k = lo
                while i < mid && j < hi {
                    if v[j] < v[i] {
                        buffer[k] = v[j]
                        inversions += mid - i
                        j += 1
                    } else {
                        buffer[k] = v[i]
                        i += 1
                    }
                    k += 1
                }
                while i < mid {
                    buffer[k] = v[i]
                    i += 1
                    k += 1
                }
                while j < hi {
                    buffer[k] = v[j]
                    j += 1
                    k += 1
                }
                lo = hi
            }
            swap(&v, &buffer)
            width *= 2
        }
        return inversions
    }

    /// Kendall's tau-b by its definition over every pair, O(n^2).
    public static func kendallTauPairwise(_ a: [Double], _ b: [Double]) -> Double {
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
