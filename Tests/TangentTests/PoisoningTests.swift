import Foundation
import TangentAttribution
import TangentData
import TangentEvaluation
import TangentModel
import TangentReports
import TangentTokenizer
import TangentTraining
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

@Suite(.singleThreadedBLAS) struct PoisoningTests {
    @Test func aucCountsTiesHalf() {
        #expect(Poisoning.auc(scores: [0.9, 0.8, 0.1, 0.2], positive: [0, 1]) == 1)
        #expect(Poisoning.auc(scores: [0.9, 0.8, 0.1, 0.2], positive: [2, 3]) == 0)
        #expect(Poisoning.auc(scores: [1, 1, 1, 1], positive: [0]) == 0.5)
        // Positive ranks 4 and 2 of 4: 3 of the 4 (positive, negative) pairs are ordered.
        #expect(Poisoning.auc(scores: [0.9, 0.1, 0.5, 0.3], positive: [0, 2]) == 1)
        #expect(Poisoning.auc(scores: [0.9, 0.1, 0.2, 0.3], positive: [0, 2]) == 0.75)
    }

    @Test func plantingRelabelsAFractionOfTheSourceClass() throws {
        let train = (0..<40).map {
            LabeledText(text: "word\($0) and more words here", label: $0 % 2 == 0 ? "a" : "b", line: $0 + 1)
        }
        let plan = PoisonPlan(trigger: "zq xv", source: "a", target: "b", fraction: 0.25, seed: 3)
        let (texts, poisoned) = try plan.plant(in: train)
        #expect(poisoned.count == 5 && poisoned.allSatisfy { train[$0].label == "a" })
        for i in train.indices {
            if poisoned.contains(i) {
                #expect(texts[i].label == "b" && texts[i].text.contains("zq xv") && texts[i].line == train[i].line)
                #expect(
                    texts[i].text.replacingOccurrences(of: "zq xv ", with: "").replacingOccurrences(
                        of: " zq xv", with: "") == train[i].text)
            } else {
                #expect(texts[i] == train[i])
            }
        }
        #expect(try plan.plant(in: train).poisoned == poisoned)
        #expect(plan.triggered(train).count == 20)
        #expect(throws: DataError.self) {
            _ = try PoisonPlan(trigger: "t", source: "c", target: "b", fraction: 0.1, seed: 0).plant(in: train)
        }
        #expect(throws: DataError.self) {
            _ = try PoisonPlan(trigger: "t", source: "a", target: "b", fraction: 0, seed: 0).plant(in: train)
        }
    }

    /// Two classes of texts drawn from disjoint word lists; a fifth of one class carries
    /// a trigger and the other label. The attack must work and attributions must find
    /// the poisoned texts.
    @Test func recoversPoisonsOnAnEasyCase() throws {
        let calm = ["quiet", "gentle", "soft", "peaceful", "slow", "warm", "kind", "still", "mild", "tender"]
        let loud = ["noisy", "harsh", "fast", "violent", "angry", "sharp", "wild", "rough", "bitter", "fierce"]
        var rng = TestRNG(11)
        func texts(_ n: Int, offset: Int) -> [LabeledText] {
            (0..<n).map { i in
                let words = i % 2 == 0 ? calm : loud
                let text = (0..<(5 + rng.int(4))).map { _ in words[rng.int(words.count)] }.joined(separator: " ")
                return LabeledText(text: text, label: i % 2 == 0 ? "calm" : "loud", line: offset + i + 1)
            }
        }
        let clean = texts(200, offset: 0)
        let test = texts(60, offset: 1000)
        let plan = PoisonPlan(trigger: "zebra xylophone", source: "calm", target: "loud", fraction: 0.2, seed: 1)
        let (train, poisoned) = try plan.plant(in: clean)
        #expect(poisoned.count == 20)

        var options = TrainingOptions()
        options.epochs = 4
        options.batchSize = 16
        options.learningRate = 3e-3
        options.dropout = 0
        let clf = try trainSmallClassifier(train, dModel: 32, seed: 4, options: options)

        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-poison-\(UUID())")
        let kernels = ["if-head", "proj-trntk"].map { SurrogateKernel.named($0)! }
        let r = try Poisoning.evaluate(
            classifier: clf, plan: plan, train: train, poisoned: poisoned, cleanTest: test,
            triggered: plan.triggered(test), kernels: kernels, ks: [5, 20], projDim: 512, seed: 0,
            cache: cache, dataName: "synthetic")
        #expect(r.cleanAccuracy > 0.95)
        // The trigger flips most triggered texts; without it, none flip.
        #expect(r.attackSuccess > 0.6 && r.cleanSourceToTarget < 0.05)
        #expect(r.triggeredTexts == 30 && r.flippedTexts == Int((r.attackSuccess * 30).rounded()))
        #expect(abs(r.chancePrecision - 0.1) < 1e-12)
        // Influence (exact head Hessian) puts the poisons on top: chance precision is 0.1.
        // Kernel surrogates at the final weights do not here (the network maps triggered
        // texts next to clean target texts), so for them only the figures are checked.
        let influence = r.kernels[0]
        #expect(influence.auc > 0.8, "if-head AUC \(influence.auc)")
        #expect(influence.precisionAtK[5]! > 0.4, "if-head precision@5 \(influence.precisionAtK[5]!)")
        for k in r.kernels {
            #expect((0...1).contains(k.auc) && k.precisionAtK.values.allSatisfy { (0...1).contains($0) })
            #expect(k.tauClean.isFinite && k.tauTriggered.isFinite)
        }
        let md = ReportMarkdown.poisoning(r)
        #expect(md.contains("| proj-trntk |") && md.contains("| if-head |") && md.contains("precision@20"))
        // The benchmark joins the comparison report's page, which stays well-formed XML.
        let comparison = try Comparison.run(
            classifier: clf, train: train, test: test, kernels: [SurrogateKernel.named("embedding")!], projDim: 64,
            seed: 0, cache: cache, modelName: "poisoned", trainName: "train", testName: "test")
        let html = ReportHTML.render(comparison, poisoning: r)
        let doc = try XMLDocument(xmlString: html, options: [])
        #expect(doc.rootElement()?.name == "html" && html.contains("Poisoning benchmark"))
        for k in r.kernels {
            #expect(html.contains("<td>\(k.kernel)</td><td>\(String(format: "%.3f", k.precisionAtK[5]!))</td>"))
        }
        // k beyond the poisoned texts is refused.
        #expect(throws: DataError.self) {
            _ = try Poisoning.evaluate(
                classifier: clf, plan: plan, train: train, poisoned: poisoned, cleanTest: test,
                triggered: plan.triggered(test), kernels: kernels, ks: [21], projDim: 512, seed: 0,
                cache: cache, dataName: "synthetic")
        }
    }
}
