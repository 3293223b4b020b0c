import Foundation
import Tangent
import TangentEvaluation
import Testing

/// The library's entry point does what the CLI does: `explain` is the engine's
/// explanation, `audit` the audit's ranking, on the same cached surrogate.
@Suite(.singleThreadedBLAS) struct AttributorTests {
    @Test func explainAndAuditThroughTheEntryPoint() throws {
        let model = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let train = Array(try DatasetReader().read(fixture("train-sample.jsonl")).prefix(80))
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-attributor-\(UUID())")
        defer { try? FileManager.default.removeItem(at: cache) }
        let attributor = try Attributor(model: model, training: train, kernel: .projTrntk, projDim: 256, cache: cache)
        let one = try attributor.explain("a wonderful, warm film", top: 4)
        let both = try attributor.engine.explain(["a wonderful, warm film", "dull"], top: 4)
        #expect(one.label == both[0].label && one.proponents.map(\.index) == both[0].proponents.map(\.index))
        #expect(one.proponents.count == 4 && one.proponents.allSatisfy { $0.score > 0 })
        let suspects = try attributor.audit(top: 5)
        #expect(suspects.map(\.rank) == [1, 2, 3, 4, 5])
        let scores = suspects.map { $0.scores[AuditMethod.surrogateOutOfFold.rawValue]! }
        #expect(zip(scores, scores.dropFirst()).allSatisfy { $0 >= $1 })
        #expect(suspects.allSatisfy { train[$0.index].text == $0.text && train[$0.index].label == $0.label })
        // The audit's scores over every text rank the same suspects first.
        let all = try Audit.run(
            setup: attributor.setup, kernel: .projTrntk, methods: [.surrogateOutOfFold], top: 80, modelName: "m",
            trainName: "t"
        ).scores[0]
        #expect(Array(Audit.ranking(all).prefix(5)) == suspects.map(\.index))
    }
}
