import Foundation
import TangentData
import TangentModel
import TangentTokenizer
import TangentTraining
import Testing

@Suite(.singleThreadedBLAS) struct TrainingTests {
    /// Movie-snippets texts shipped with the test fixtures' tokenizer.
    func encodedSubset(_ n: Int, config: ModelConfig, tokenizer: Tokenizer) throws -> (EncodedSet, LabelSet) {
        let rows = try DatasetReader().read(fixture("train-sample.jsonl")).prefix(n)
        let labels = try LabelSet(collecting: Array(rows))
        let seqs = try rows.map { try TextEncoding.encode($0.text, tokenizer: tokenizer, config: config) }
        return (
            EncodedSet(sequences: seqs, labels: try labels.indices(of: Array(rows), source: "train-sample")), labels
        )
    }

    @Test func oneShortEpochLowersTheLoss() throws {
        let tok = try Tokenizer(contentsOf: fixture("tokenizer-600.model"))
        let config = ModelConfig(
            vocabSize: tok.vocabSize, maxLen: 32, dModel: 32, nHeads: 4, nLayers: 2, dFF: 64, nClasses: 2)
        let (set, _) = try encodedSubset(400, config: config, tokenizer: tok)
        let model = try TransformerClassifier<Float>.initialized(config: config, seed: 3, threads: 2)
        let before = try Trainer.evaluate(model, set).loss
        var options = TrainingOptions()
        options.epochs = 1
        options.batchSize = 16
        options.learningRate = 2e-3
        let trainer = try Trainer(model: model, options: options)
        let summary = try trainer.train(set, test: nil)
        let after = try Trainer.evaluate(model, set).loss
        #expect(after < before - 0.02, "loss before \(before), after \(after)")
        #expect(summary[0].trainLoss.isFinite)
    }

    @Test func trainingIsReproducibleFromTheSeed() throws {
        let tok = try Tokenizer(contentsOf: fixture("tokenizer-600.model"))
        let config = ModelConfig(
            vocabSize: tok.vocabSize, maxLen: 24, dModel: 16, nHeads: 2, nLayers: 1, dFF: 32, nClasses: 2)
        let (set, _) = try encodedSubset(96, config: config, tokenizer: tok)
        var runs: [[Float]] = []
        for _ in 0..<2 {
            let model = try TransformerClassifier<Float>.initialized(config: config, seed: 5, threads: 2)
            var options = TrainingOptions()
            options.epochs = 1
            options.batchSize = 16
            options.seed = 9
            _ = try Trainer(model: model, options: options).train(set, test: nil)
            runs.append(model.parameterArray)
        }
        #expect(runs[0] == runs[1])
    }

    @Test func divergingTrainingStopsWithAMessageBeforeUpdating() throws {
        let tok = try Tokenizer(contentsOf: fixture("tokenizer-600.model"))
        let config = ModelConfig(
            vocabSize: tok.vocabSize, maxLen: 24, dModel: 16, nHeads: 2, nLayers: 1, dFF: 32, nClasses: 2)
        let (set, _) = try encodedSubset(64, config: config, tokenizer: tok)
        let model = try TransformerClassifier<Float>.initialized(config: config, seed: 5, threads: 2)
        var options = TrainingOptions()
        options.epochs = 3
        options.batchSize = 8
        options.learningRate = 1e36
        options.warmupFraction = 0
        options.clipNorm = 0
        var epochsSaved = 0
        let error = #expect(throws: TrainingError.self) {
            _ = try Trainer(model: model, options: options).train(set, test: nil, onEpochEnd: { _ in epochsSaved += 1 })
        }
        #expect(error?.description.contains("became") == true)
        #expect(epochsSaved < 3)
        // Parameters hold the last finite update.
        #expect(model.parameterArray.allSatisfy { $0.isFinite })
    }

    @Test func metricsAndSchedule() {
        let r = ClassificationReport(labels: ["a", "b"], truth: [0, 0, 1, 1, 1], predicted: [0, 1, 1, 1, 0])
        #expect(r.accuracy == 0.6)
        #expect(r.precision(0) == 0.5 && r.recall(1) == 2.0 / 3.0)
        #expect(r.formatted().contains("confusion matrix"))
        let s = LearningRateSchedule(peak: 1, warmupSteps: 10, totalSteps: 110, decay: .linear)
        #expect(s.rate(at: 0) == 0.1 && s.rate(at: 9) == 1 && abs(s.rate(at: 60) - 0.5) < 1e-12)
    }
}
