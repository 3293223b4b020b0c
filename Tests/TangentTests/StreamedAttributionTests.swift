import Foundation
import TangentData
import TangentFeatures
import TangentModel
import Testing

@testable import TangentAttribution
@testable import TangentSurrogate

/// Scoring with the training features streamed from a file under a memory budget.
@Suite(.singleThreadedBLAS) struct StreamedAttributionTests {
    static func setup(_ kernelName: String) throws -> (Classifier, [LabeledText], FeatureFile, SurrogateKernel, URL) {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let train = try DatasetReader().read(fixture("train-sample.jsonl"))
        let kernel = SurrogateKernel.named(kernelName)!
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-streamed-\(UUID())")
        var o = FeaturizeOptions(kind: kernel.features)
        o.projDim = 48
        o.seed = 2
        o.threads = 2
        let file = try Featurizer(classifier: clf, options: o).run(
            texts: train, source: "sample", to: cache.appendingPathComponent("train.safetensors"), replace: .never)
        return (clf, train, file, kernel, cache)
    }

    static let texts = ["a wonderful, warm film", "dull and lifeless", "not bad at all", "the plot makes no sense"]

    /// The one scoring path: kernel values fed as whole rows (the in-memory engine) or in
    /// blocks of any size (the streamed scorer) give the same logits and items, bit for
    /// bit, and the items are the k largest and k most negative W[c, i] K(x, x_i) with
    /// ties to the earlier training text.
    @Test func scorerGivesTheSameBitsForAnySplitOfTheTrainingTexts() {
        var rng = TestRNG(5)
        let n = 53
        let m = 3
        let C = 3
        let glm = KernelGLM(
            classes: C, trainCount: n, weights: (0..<(C * n)).map { _ in rng.normal() }, bias: [0.1, -0.2, 0.3],
            lambda: 1, kernelScale: 1, iterations: 0, converged: true, gradientNorm: 0)
        var kernel = (0..<(m * n)).map { _ in Double(Float(rng.normal())) }
        kernel[4] = kernel[9]  // ties are kept in training order
        let network = (0..<m).map { _ in (0..<C).map { _ in rng.normal() } }
        var whole = SurrogateScorer(glms: [glm], networkLogits: network, top: 6)
        whole.add(first: 0, rows: n, kernel: kernel)
        for block in [1, 7, 50] {
            var split = SurrogateScorer(glms: [glm], networkLogits: network, top: 6)
            for first in stride(from: 0, to: n, by: block) {
                let rows = min(block, n - first)
                split.add(
                    first: first, rows: rows,
                    kernel: (0..<m).flatMap { t in kernel[(t * n + first)..<(t * n + first + rows)] })
            }
            #expect(split.logits == whole.logits, "blocks of \(block)")
            for t in 0..<m {
                #expect(
                    split.proponents(t).map(\.index) == whole.proponents(t).map(\.index)
                        && split.opponents(t).map(\.score) == whole.opponents(t).map(\.score))
            }
        }
        for t in 0..<m {
            let c = whole.predicted[t]
            let scores = (0..<n).map { glm.weights[c * n + $0] * kernel[t * n + $0] }
            let order = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            #expect(whole.proponents(t).map(\.index) == Array(order.prefix(6)).filter { scores[$0] > 0 })
            let negative = scores.indices.sorted { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            #expect(whole.opponents(t).map(\.index) == Array(negative.prefix(6)).filter { scores[$0] < 0 })
            #expect(whole.opponents(t).allSatisfy { $0.score < 0 })
            var z = glm.bias
            for i in 0..<n { for k in 0..<C { z[k] += glm.weights[k * n + i] * kernel[t * n + i] } }
            #expect(whole.logits[0][t] == z)
        }
    }

    /// Blocks of 256 rows (a budget of one byte) and one block of all 400 give the same
    /// surrogate and the same attributions, bit for bit.
    @Test(arguments: ["proj-trntk", "ck"])
    func streamedScoresAreBitIdenticalAcrossMemoryBudgets(kernel name: String) throws {
        let (clf, train, file, kernel, _) = try Self.setup(name)
        let small = try StreamedAttribution(
            classifier: clf, train: train, trainFeatures: file, kernel: kernel, budget: 1, lambda: 1e-3)
        let large = try StreamedAttribution(
            classifier: clf, train: train, trainFeatures: file, kernel: kernel, budget: 1 << 30, lambda: 1e-3)
        #expect(small.features.blockRows == 256 && large.features.blockRows == 400)
        #expect(small.glm.converged && small.glm.weights == large.glm.weights && small.glm.bias == large.glm.bias)
        let a = try small.explain(Self.texts, top: 7)
        let b = try large.explain(Self.texts, top: 7)
        for (x, y) in zip(a, b) {
            #expect(
                x.proponents.map(\.index) == y.proponents.map(\.index)
                    && x.proponents.map(\.score) == y.proponents.map(\.score))
            #expect(
                x.opponents.map(\.index) == y.opponents.map(\.index) && x.surrogateProbability == y.surrogateProbability
            )
        }
    }

    /// The streamed surrogate and its top-k agree with the in-memory engine's at the same
    /// lambda (the fits agree to their tolerance), and the top-k kept across blocks are the
    /// k largest of all attributions. (The tiny model's out-of-fold figures are flat, so a
    /// grid of several lambdas would be decided by rounding: one lambda is compared. Its
    /// embeddings are nearly parallel, so their cosine kernel is close to all ones and the
    /// split between W and the bias is barely determined: embedding is left out here.)
    @Test(arguments: ["proj-pntk", "proj-trntk", "grad-cos"])
    func streamedScoringAgreesWithTheInMemoryEngine(kernel name: String) throws {
        let (clf, train, file, kernel, cache) = try Self.setup(name)
        let engine = try AttributionEngine(
            classifier: clf, train: train, kernel: kernel, projDim: 48, seed: 2, cache: cache,
            selector: LambdaSelector(grid: [1e-2], extendTo: nil))
        let streamed = try StreamedAttribution(
            classifier: clf, train: train, trainFeatures: file, kernel: kernel, budget: 1, lambda: nil,
            selector: engine.selector)
        #expect(streamed.glm.lambda == engine.glm.lambda && streamed.selectionTexts == train.count)
        let top = 5
        let a = try engine.explain(Self.texts, top: top, layerShares: false)
        let b = try streamed.explain(Self.texts, top: top)
        let q = try engine.query(
            Self.texts.enumerated().map { LabeledText(text: $0.element, label: nil, line: $0.offset + 1) }, source: "q")
        for (t, (x, y)) in zip(a, b).enumerated() {
            #expect(x.label == y.label && abs(x.surrogateProbability - y.surrogateProbability) < 1e-3)
            let c = clf.labels.index(of: y.label)!
            let all = engine.glm.attributions(
                kernelRow: Array(q.rows[(t * train.count)..<((t + 1) * train.count)]), classIndex: c)
            let scale = all.map(abs).max()!
            // Each kept score is (to the fits' agreement) the score of the same text in memory,
            // and the k-th kept one is the k-th largest.
            for p in y.proponents {
                #expect(abs(all[p.index] - p.score) <= 2e-3 * scale, "\(name) text \(t) item \(p.index)")
            }
            for p in y.opponents { #expect(abs(all[p.index] - p.score) <= 2e-3 * scale) }
            let sorted = all.sorted(by: >)
            if let last = y.proponents.last {
                #expect(abs(last.score - sorted[y.proponents.count - 1]) <= 2e-3 * scale)
            }
            #expect(
                Set(x.proponents.prefix(2).map(\.index)) == Set(y.proponents.prefix(2).map(\.index)) || scale < 1e-9)
        }
    }

    @Test func mismatchedFilesAreRefused() throws {
        let (clf, train, file, kernel, _) = try Self.setup("proj-pntk")
        func message(_ body: () throws -> Any?) -> String {
            do {
                _ = try body()
                return ""
            } catch { return "\(error)" }
        }
        #expect(
            message {
                try StreamedAttribution(
                    classifier: clf, train: Array(train.dropLast()), trainFeatures: file, kernel: kernel, budget: 1,
                    lambda: 1)
            }
            .contains("other texts"))
        #expect(
            message {
                try StreamedAttribution(
                    classifier: clf, train: train, trainFeatures: file, kernel: .projTrntk, budget: 1, lambda: 1)
            }
            .contains("holds pntk features"))
        #expect(
            message {
                try StreamedAttribution(
                    classifier: clf, train: train, trainFeatures: file, kernel: .named("if-head")!, budget: 1, lambda: 1
                )
            }
            .contains("cannot be scored from a feature file"))
        let other = try Classifier(directory: fixture("tiny-model"), threads: 2)
        other.model.parameters[0] += 1
        #expect(
            message {
                try StreamedAttribution(
                    classifier: other, train: train, trainFeatures: file, kernel: kernel, budget: 1, lambda: 1)
            }
            .contains("another model"))
    }
}
