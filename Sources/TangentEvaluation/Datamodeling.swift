import Foundation
import TangentTensor

/// The linear datamodeling score (LDS; Park et al. 2023, TRAK), the counterfactual check
/// of an attribution method: retrain on random subsets S_m of the training set, and ask
/// whether the sum of a test text's attributions over S_m ranks the subsets as their
/// models' margins on that text do.
///
/// For test text x, g(x, S_m) = sum_{i in S_m} tau(x, i); LDS(x) = Spearman over m of
/// g(x, S_m) and margin_m(x); LDS = the mean over test texts, with a bootstrap interval
/// over test texts.
public enum Datamodeling {
    /// `count` seeded subsets of 0..<n, each of round(fraction * n) indices (at least
    /// one), in ascending order. Subset m depends only on (seed, n, fraction, m), so more
    /// subsets extend a run without changing the first ones.
    public static func subsets(n: Int, count: Int, fraction: Double, seed: UInt64) -> [[Int]] {
        let size = max(1, min(n, Int((fraction * Double(n)).rounded())))
        return (0..<count).map { m in
            let rng = CounterRNG.derive(seed, 0x1D5, UInt64(m))
            return (0..<n).sorted { rng.bits(UInt64($0)) < rng.bits(UInt64($1)) }.prefix(size).sorted()
        }
    }

    /// Ranks 1...n with ties given their average rank.
    public static func ranks(_ a: [Double]) -> [Double] {
        let order = a.indices.sorted { a[$0] < a[$1] }
        var r = [Double](repeating: 0, count: a.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && a[order[j + 1]] == a[order[i]] { j += 1 }
            let average = Double(i + j) / 2 + 1
            for k in i...j { r[order[k]] = average }
            i = j + 1
        }
        return r
    }

    /// Spearman's rank correlation (Pearson on average ranks), or nil when either list
    /// is constant (the correlation is undefined).
    public static func spearman(_ a: [Double], _ b: [Double]) -> Double? {
        precondition(a.count == b.count)
        let ra = ranks(a)
        let rb = ranks(b)
        let n = Double(a.count)
        let mean = (n + 1) / 2
        var sab = 0.0
        var saa = 0.0
        var sbb = 0.0
        for k in ra.indices {
            let x = ra[k] - mean
            let y = rb[k] - mean
            sab += x * y
            saa += x * x
            sbb += y * y
        }
        guard saa > 0, sbb > 0 else { return nil }
        return sab / (saa * sbb).squareRoot()
    }

    /// Subset scores g(x, S_m) [tests, M] from attribution scores [tests, n].
    public static func subsetScores(_ scores: [Double], n: Int, subsets: [[Int]]) -> [Double] {
        let tests = scores.count / n
        let M = subsets.count
        var mask = [Double](repeating: 0, count: n * M)
        for (m, s) in subsets.enumerated() { for i in s { mask[i * M + m] = 1 } }
        var g = [Double](repeating: 0, count: tests * M)
        Double.gemm(
            transA: false, transB: false, m: tests, n: M, k: n, alpha: 1, a: scores, lda: n, b: mask, ldb: M,
            beta: 0, c: &g, ldc: M)
        return g
    }

    /// The LDS of attribution scores [tests, n] against margins [M][tests] of the models
    /// trained on `subsets`, with a percentile bootstrap interval (`resamples` draws of
    /// the test texts with replacement, seeded).
    public static func score(
        _ scores: [Double], n: Int, subsets: [[Int]], margins: [[Double]],
        resamples: Int = 1000, seed: UInt64 = 0
    ) -> LDSScore {
        precondition(subsets.count == margins.count && !subsets.isEmpty)
        let tests = scores.count / n
        let M = subsets.count
        precondition(margins.allSatisfy { $0.count == tests })
        let g = subsetScores(scores, n: n, subsets: subsets)
        let perText: [Double?] = (0..<tests).map { t in
            spearman(Array(g[(t * M)..<((t + 1) * M)]), margins.map { $0[t] })
        }
        return summarize(perText, resamples: resamples, seed: seed)
    }

    /// The noise ceiling of LDS: for each test text, the Spearman correlation over subsets
    /// between the margins of two trainings of every subset model (`first`, `second`
    /// [M][tests]: same subset and initialization, other dropout masks and batch order),
    /// summarized as LDS is. It is what one retraining predicts of another; 1 when
    /// training is deterministic.
    public static func ceiling(_ first: [[Double]], _ second: [[Double]], resamples: Int = 1000, seed: UInt64 = 0)
        -> LDSScore
    {
        precondition(first.count == second.count && !first.isEmpty)
        let tests = first[0].count
        precondition(first.allSatisfy { $0.count == tests } && second.allSatisfy { $0.count == tests })
        let perText: [Double?] = (0..<tests).map { t in spearman(first.map { $0[t] }, second.map { $0[t] }) }
        return summarize(perText, resamples: resamples, seed: seed)
    }

    /// The mean of two trainings' margins [M][tests], entry by entry.
    public static func meanMargins(_ first: [[Double]], _ second: [[Double]]) -> [[Double]] {
        zip(first, second).map { a, b in zip(a, b).map { ($0 + $1) / 2 } }
    }

    /// The mean over test texts of per-text correlations (nil where undefined), with a
    /// percentile bootstrap interval (`resamples` draws of the test texts, seeded).
    static func summarize(_ perText: [Double?], resamples: Int, seed: UInt64) -> LDSScore {
        let tests = perText.count
        let defined = perText.compactMap { $0 }
        guard !defined.isEmpty else {
            return LDSScore(mean: .nan, low: .nan, high: .nan, texts: tests, undefined: tests, perText: perText)
        }
        let mean = defined.reduce(0, +) / Double(defined.count)
        let rng = CounterRNG.derive(seed, 0xB007)
        var means: [Double] = []
        means.reserveCapacity(resamples)
        for b in 0..<resamples {
            var s = 0.0
            for k in 0..<defined.count {
                s += defined[Int(rng.bits(UInt64(b * defined.count + k)) % UInt64(defined.count))]
            }
            means.append(s / Double(defined.count))
        }
        means.sort()
        func quantile(_ q: Double) -> Double {
            guard !means.isEmpty else { return mean }
            return means[min(means.count - 1, max(0, Int((q * Double(means.count - 1)).rounded())))]
        }
        return LDSScore(
            mean: mean, low: quantile(0.025), high: quantile(0.975), texts: tests,
            undefined: tests - defined.count, perText: perText)
    }
}

/// One method's LDS over the test texts.
public struct LDSScore: Codable, Sendable, Equatable {
    /// Mean Spearman correlation over the test texts where it is defined.
    public let mean: Double
    /// Bootstrap 95% interval of the mean (percentiles 2.5 and 97.5).
    public let low: Double
    public let high: Double
    public let texts: Int
    /// Test texts whose subset scores or margins were constant over the subsets.
    public let undefined: Int
    /// Each test text's correlation (empty where a report keeps only the summary).
    public let perText: [Double?]

    /// The same summary without the per-text values (to keep reports small).
    public var summary: LDSScore {
        LDSScore(mean: mean, low: low, high: high, texts: texts, undefined: undefined, perText: [])
    }
}
