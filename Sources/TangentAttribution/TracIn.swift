import Foundation
import TangentModel
import TangentTraining

/// Saved training checkpoints (`train --keep-checkpoints`) for TracIn, which sums
/// eta_k <grad L(x; theta_k), grad L(x'; theta_k)> over checkpoints k (Pruthi et al.,
/// 2020). eta_k is the mean learning rate of the epoch that ended at checkpoint k: the
/// checkpoint stands for that epoch's steps, and the rate at its very last step would be
/// 0 for the final epoch of a schedule that decays to 0.
public struct TrainingCheckpoint: Sendable {
    public let url: URL
    public let epoch: Int
    public let learningRate: Double
}

public enum TracIn {
    /// The checkpoints in MODEL/checkpoints/epoch-K.safetensors, by epoch, each with the
    /// mean learning rate of its epoch under the schedule recorded in config.json (1 when
    /// the model directory does not record its training options).
    /// `directory` overrides MODEL/checkpoints.
    public static func checkpoints(of classifier: Classifier, directory: URL? = nil) throws -> [TrainingCheckpoint] {
        guard let dir = directory ?? classifier.directory?.appendingPathComponent("checkpoints"),
              let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { return [] }
        let epochs = names.compactMap { name -> Int? in
            guard name.hasPrefix("epoch-"), name.hasSuffix(".safetensors") else { return nil }
            return Int(name.dropFirst(6).dropLast(12))
        }.sorted()
        var schedule: LearningRateSchedule?
        var perEpoch = 0
        if let training = classifier.configJSON["training"],
           let options = try? JSONDecoder().decode(TrainingOptions.self, from: JSONSerialization.data(withJSONObject: training)),
           let texts = (classifier.configJSON["dataset"] as? [String: Any])?["train_texts"] as? Int {
            perEpoch = (texts + options.batchSize - 1) / options.batchSize
            let total = perEpoch * options.epochs
            schedule = LearningRateSchedule(peak: options.learningRate, warmupSteps: Int(Double(total) * options.warmupFraction),
                                            totalSteps: total, decay: options.decay)
        }
        return epochs.map { e in
            let eta = schedule.map { s in (0..<perEpoch).map { s.rate(at: (e - 1) * perEpoch + $0) }.reduce(0, +) / Double(perEpoch) } ?? 1
            return TrainingCheckpoint(url: dir.appendingPathComponent("epoch-\(e).safetensors"), epoch: e, learningRate: eta)
        }
    }

    /// The classifier with a checkpoint's weights.
    public static func load(_ checkpoint: TrainingCheckpoint, like classifier: Classifier, threads: Int) throws -> Classifier {
        let model = try TransformerClassifier<Float>(config: classifier.model.config, threads: threads)
        try ModelDirectory.loadWeights(model, from: checkpoint.url)
        return try Classifier(model: model, tokenizer: classifier.tokenizer, labels: classifier.labels)
    }
}
