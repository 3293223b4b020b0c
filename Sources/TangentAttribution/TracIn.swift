import Foundation
import TangentData
import TangentModel
import TangentTraining

/// A saved training checkpoint (`train --keep-checkpoints`) for TracIn, which sums
/// eta_k <grad L(x; theta_k), grad L(x'; theta_k)> over checkpoints k (Pruthi et al.,
/// 2020), with eta_k from the checkpoint's training record.
public struct TrainingCheckpoint: Sendable {
    public let url: URL
    public let record: TrainingRecord
    public var epoch: Int { record.epoch }
    /// eta_k: the mean learning rate of the epoch that ended at this checkpoint.
    public var learningRate: Double { record.learningRate }
}

/// The checkpoints of one training run and how they relate to the model under study.
public struct CheckpointRun: Sendable {
    public let checkpoints: [TrainingCheckpoint]
    /// ||theta_final - theta_model|| / ||theta_model|| for the run's final-epoch checkpoint:
    /// 0 when the checkpoints are the model's own run, positive when they come from a
    /// retraining with the same recipe on other OpenBLAS kernels or thread counts; nil when
    /// the final epoch's checkpoint is not among them.
    public let finalWeightDistance: Double?

    /// One line for logs and reports.
    public var summary: String {
        guard let r = checkpoints.first?.record else { return "no checkpoints" }
        let rates = checkpoints.map { String(format: "%.2e", $0.learningRate) }.joined(separator: ", ")
        let origin: String
        switch finalWeightDistance {
        case nil: origin = "the final epoch's checkpoint is absent, so the run is identified by its recipe only"
        case 0?: origin = "the final checkpoint equals the model"
        case let d?:
            origin =
                "a retraining with the model's recipe (\(r.threads) threads); its final weights differ from the model's by a relative L2 distance of \(String(format: "%.3g", d))"
        }
        return
            "\(checkpoints.count) checkpoints (epochs \(checkpoints.map { String($0.epoch) }.joined(separator: ","))), learning rates \(rates); \(origin)"
    }
}

public enum TracIn {
    /// The checkpoints in MODEL/checkpoints/epoch-K.safetensors (or `directory`), by epoch.
    ///
    /// Every checkpoint must carry a training record (there is no default learning rate),
    /// all must come from one run, and that run must be the model's: the same architecture
    /// and labels, and, where the model's config.json records them, the same training
    /// options, number of texts and data fingerprint. A model that records no training run
    /// is accepted only with its own final checkpoint. Throws, naming the file and field.
    public static func checkpoints(of classifier: Classifier, directory: URL? = nil) throws -> CheckpointRun {
        guard let dir = directory ?? classifier.directory?.appendingPathComponent(ModelDirectory.checkpointsDirectory)
        else {
            return CheckpointRun(checkpoints: [], finalWeightDistance: nil)
        }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir.path) } catch {
            if directory != nil {
                throw DataError("\(dir.path): cannot list checkpoints: \((error as NSError).localizedDescription)")
            }
            return CheckpointRun(checkpoints: [], finalWeightDistance: nil)
        }
        let epochs = names.compactMap { name -> Int? in
            guard name.hasPrefix("epoch-"), name.hasSuffix(".safetensors") else { return nil }
            return Int(name.dropFirst(6).dropLast(12))
        }.sorted()
        let checkpoints = try epochs.map { e in
            let url = dir.appendingPathComponent("epoch-\(e).safetensors")
            let record = try TrainingRecord.read(from: url)
            guard record.epoch == e else {
                throw DataError("\(url.path): its training record says epoch \(record.epoch)")
            }
            return TrainingCheckpoint(url: url, record: record)
        }
        guard let first = checkpoints.first else { return CheckpointRun(checkpoints: [], finalWeightDistance: nil) }
        for c in checkpoints.dropFirst() {
            let d = first.record.differences(from: c.record)
            guard d.isEmpty else {
                throw DataError(
                    "\(dir.path): epoch-\(first.epoch) and epoch-\(c.epoch) come from different training runs (\(d.joined(separator: ", ")))"
                )
            }
        }
        try check(first.record, from: dir, belongsTo: classifier)
        var distance: Double?
        if let last = checkpoints.last, last.epoch == last.record.options.epochs {
            distance = try weightDistance(last, classifier)
        }
        if try RecordedTraining(configJSON: classifier.configJSON, source: configSource(classifier)).options == nil,
            distance != 0
        {
            throw DataError(
                "\(dir.path): cannot tell that these checkpoints belong to \(classifier.directory?.path ?? "the model"): "
                    + "its config.json records no training run, and "
                    + (distance == nil
                        ? "the final epoch's checkpoint is missing"
                        : "its weights differ from the final checkpoint's"))
        }
        return CheckpointRun(checkpoints: checkpoints, finalWeightDistance: distance)
    }

    /// TRAK's ensemble from training checkpoints (`--ensemble N`): the N - 1 latest epochs
    /// before the final one (which is the model itself), checked and loaded like TracIn's.
    public static func ensemble(of classifier: Classifier, directory: URL?, count: Int, threads: Int) throws
        -> [Classifier]
    {
        guard count > 1 else { return [] }
        let run = try checkpoints(of: classifier, directory: directory)
        let earlier = run.checkpoints.filter { $0.epoch < $0.record.options.epochs }.sorted { $0.epoch > $1.epoch }
        guard earlier.count >= count - 1 else {
            let dir =
                directory?.path ?? classifier.directory.map {
                    $0.appendingPathComponent(ModelDirectory.checkpointsDirectory).path
                } ?? "the model"
            throw DataError(
                "\(dir): an ensemble of \(count) models needs \(count - 1) checkpoints before the final epoch, but there \(earlier.count == 1 ? "is" : "are") \(earlier.count)"
            )
        }
        return try earlier.prefix(count - 1).map { try load($0, like: classifier, threads: threads) }
    }

    /// The model's own record of its training (config.json) must agree with the checkpoints'.
    static func check(_ record: TrainingRecord, from dir: URL, belongsTo classifier: Classifier) throws {
        let model = classifier.directory?.path ?? "the model"
        var differences: [String] = []
        if !record.describes(classifier.model) { differences.append("architecture") }
        if record.labels != classifier.labels.names {
            differences.append("labels (\(record.labels) vs \(classifier.labels.names))")
        }
        let recorded = try RecordedTraining(configJSON: classifier.configJSON, source: configSource(classifier))
        if let options = recorded.options, options != record.options { differences.append("training options") }
        if let n = recorded.trainTexts, n != record.trainTexts {
            differences.append("number of training texts (\(record.trainTexts) vs \(n))")
        }
        if let f = recorded.dataFingerprint, f != record.dataFingerprint { differences.append("training data") }
        guard differences.isEmpty else {
            throw DataError(
                "\(dir.path): the checkpoints are not of \(model)'s training run: they differ in \(differences.joined(separator: ", "))"
            )
        }
    }

    static func configSource(_ classifier: Classifier) -> String {
        classifier.directory.map { $0.appendingPathComponent("config.json").path } ?? "the model's config.json"
    }

    static func weightDistance(_ checkpoint: TrainingCheckpoint, _ classifier: Classifier) throws -> Double {
        let final = try load(checkpoint, like: classifier, threads: 1)
        var diff = 0.0
        var norm = 0.0
        withExtendedLifetime(final) {
            let c = final.model.parameters
            let m = classifier.model.parameters
            for i in 0..<m.count {
                let d = Double(c[i]) - Double(m[i])
                diff += d * d
                norm += Double(m[i]) * Double(m[i])
            }
        }
        return diff == 0 ? 0 : (diff / max(norm, .leastNormalMagnitude)).squareRoot()
    }

    /// The classifier with a checkpoint's weights.
    public static func load(_ checkpoint: TrainingCheckpoint, like classifier: Classifier, threads: Int) throws
        -> Classifier
    {
        let model = try classifier.model.emptyCopy(threads: threads)
        try ModelDirectory.loadWeights(model, from: checkpoint.url)
        return try Classifier(model: model, encoder: classifier.encoder, labels: classifier.labels)
    }
}
