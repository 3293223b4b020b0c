import Foundation
import TangentData
import TangentEvaluation
import TangentTensor
import Testing

@Suite(.singleThreadedBLAS) struct DatamodelingTests {
    @Test func spearmanHandlesTiesAndConstants() {
        #expect(Datamodeling.ranks([3, 1, 3, 2]) == [3.5, 1, 3.5, 2])
        // scipy.stats.spearmanr([1, 2, 2, 4, 5], [5, 6, 7, 8, 7]) = 0.7631578947368421
        #expect(abs(Datamodeling.spearman([1, 2, 2, 4, 5], [5, 6, 7, 8, 7])! - 0.7631578947368421) < 1e-12)
        #expect(Datamodeling.spearman([1, 2, 3], [3, 2, 1]) == -1)
        #expect(Datamodeling.spearman([1, 1, 1], [1, 2, 3]) == nil)
    }

    @Test func subsetsAreSeededStableAndOfTheRightSize() {
        let a = Datamodeling.subsets(n: 101, count: 5, fraction: 0.5, seed: 3)
        let b = Datamodeling.subsets(n: 101, count: 8, fraction: 0.5, seed: 3)
        #expect(Array(b.prefix(5)) == a)
        #expect(
            a.allSatisfy {
                $0.count == 51 && $0 == $0.sorted() && Set($0).count == 51 && $0.allSatisfy { (0..<101).contains($0) }
            })
        #expect(Set(a.map { $0 }).count == 5)
        #expect(Datamodeling.subsets(n: 101, count: 5, fraction: 0.5, seed: 4) != a)
    }

    /// A model whose margins are exactly additive in its training texts: margin_m(x) =
    /// sum_{i in S_m} beta(x, i). The true effects have LDS 1, their negation -1, and
    /// effects of another model about 0; noise on the margins lowers the LDS of the
    /// true effects in between.
    @Test func additiveModelHasTheKnownScore() {
        let n = 40
        let tests = 12
        let M = 60
        let rng = CounterRNG.derive(11, 1)
        let beta = (0..<(tests * n)).map { rng.normal(UInt64($0)) }
        let subsets = Datamodeling.subsets(n: n, count: M, fraction: 0.5, seed: 1)
        func margins(noise: Double) -> [[Double]] {
            subsets.enumerated().map { m, s in
                (0..<tests).map { t in
                    s.reduce(0) { $0 + beta[t * n + $1] } + noise * rng.normal(UInt64(100_000 + m * tests + t))
                }
            }
        }
        let exact = Datamodeling.score(beta, n: n, subsets: subsets, margins: margins(noise: 0))
        #expect(
            abs(exact.mean - 1) < 1e-12 && exact.low <= exact.mean && exact.high >= exact.mean && exact.undefined == 0)
        #expect(abs(exact.high - exact.low) < 1e-12)
        let negated = Datamodeling.score(beta.map { -$0 }, n: n, subsets: subsets, margins: margins(noise: 0))
        #expect(abs(negated.mean + 1) < 1e-12)
        let unrelated = (0..<(tests * n)).map { rng.normal(UInt64(50_000 + $0)) }
        let chance = Datamodeling.score(unrelated, n: n, subsets: subsets, margins: margins(noise: 0))
        #expect(abs(chance.mean) < 0.15 && chance.low < chance.mean && chance.high > chance.mean)
        // Noise of the margins' own scale (sd of g over subsets is about sqrt(n/4) = 3.2).
        let noisy = Datamodeling.score(beta, n: n, subsets: subsets, margins: margins(noise: 3))
        #expect(noisy.mean > 0.5 && noisy.mean < 0.9 && noisy.low < noisy.mean && noisy.high > noisy.mean)
        // The subset scores are the sums over each subset.
        let g = Datamodeling.subsetScores(beta, n: n, subsets: subsets)
        #expect(abs(g[3 * M + 7] - subsets[7].reduce(0) { $0 + beta[3 * n + $1] }) < 1e-9)
    }

    @Test func constantMarginsAreCountedAsUndefined() {
        let subsets = Datamodeling.subsets(n: 6, count: 5, fraction: 0.5, seed: 0)
        let scores: [Double] = [1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1]
        let margins = (0..<5).map { m in [Double(m), 7] }
        let r = Datamodeling.score(scores, n: 6, subsets: subsets, margins: margins)
        #expect(r.undefined == 1 && r.texts == 2 && r.perText[1] == nil && r.perText[0] != nil)
    }

    /// Two trainings with identical margins have ceiling 1; independent noise on the
    /// second lowers it; the mean of two runs is their entrywise mean.
    @Test func ceilingIsOneOnIdenticalMarginsAndLowerWithNoise() {
        let M = 30
        let tests = 9
        let rng = CounterRNG.derive(5, 2)
        let first = (0..<M).map { m in (0..<tests).map { t in rng.normal(UInt64(m * tests + t)) } }
        let same = Datamodeling.ceiling(first, first)
        #expect(same.mean == 1 && same.low == 1 && same.high == 1 && same.undefined == 0 && same.texts == tests)
        let noisy = first.enumerated().map { m, row in
            row.enumerated().map { t, v in v + rng.normal(UInt64(10_000 + m * tests + t)) }
        }
        let c = Datamodeling.ceiling(first, noisy)
        #expect(c.mean > 0.4 && c.mean < 0.95 && c.low < c.mean && c.high > c.mean)
        let unrelated = (0..<M).map { m in (0..<tests).map { t in rng.normal(UInt64(90_000 + m * tests + t)) } }
        #expect(abs(Datamodeling.ceiling(first, unrelated).mean) < 0.25)
        let mean = Datamodeling.meanMargins(first, noisy)
        #expect(mean[3][4] == (first[3][4] + noisy[3][4]) / 2)
    }
}

@Suite struct AuditTests {
    /// Flipping is seeded, flips the asked share, and always to another label.
    @Test func flipsAreSeededAndChangeTheLabel() throws {
        let texts = (0..<200).map { LabeledText(text: "t\($0)", label: ["a", "b", "c"][$0 % 3], line: $0 + 1) }
        let labels = try LabelSet(collecting: texts)
        let a = try Audit.flip(texts, labels: labels, rate: 0.1, seed: 4)
        let b = try Audit.flip(texts, labels: labels, rate: 0.1, seed: 4)
        #expect(a.flipped == b.flipped && a.texts == b.texts && a.flipped.count == 20)
        #expect(try Audit.flip(texts, labels: labels, rate: 0.1, seed: 5).flipped != a.flipped)
        for i in texts.indices { #expect((a.texts[i].label != texts[i].label) == a.flipped.contains(i)) }
        // Every other label is drawn.
        #expect(Set(a.flipped.map { a.texts[$0].label! + texts[$0].label! }).count > 3)
    }

    @Test func precisionAndRankingOrderByScore() {
        let scores: [Double] = [0.1, 5, .nan, 3, 3, -1]
        #expect(Audit.ranking(scores) == [1, 3, 4, 0, 5, 2])
        #expect(Audit.precision(scores: scores, positive: [1, 4], k: 2) == 0.5)
        #expect(Audit.precision(scores: scores, positive: [1, 3], k: 2) == 1)
    }
}
