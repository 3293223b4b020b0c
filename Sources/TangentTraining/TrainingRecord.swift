import Foundation
import TangentData
import TangentModel
import TangentSafetensors
import TangentTensor

/// What a training checkpoint is a checkpoint of, saved in its safetensors metadata.
///
/// TracIn weights checkpoint k by the learning rate of the epoch that ended there, and
/// must know that the checkpoints belong to the model under study. Both come from this
/// record, not from the model directory: checkpoints regenerated on another CPU (training
/// is bit-reproducible only on the same OpenBLAS kernels and thread count) are still
/// recognised as a run of the same recipe.
public struct TrainingRecord: Codable, Sendable, Equatable {
    /// The metadata key of the record in a checkpoint file.
    public static let metadataKey = "training_record"
    public static let currentFormat = "tangent-training-record-1"

    public var format: String = TrainingRecord.currentFormat
    /// The epoch that ended at this checkpoint (1-based).
    public var epoch: Int
    public var options: TrainingOptions
    public var trainTexts: Int
    public var stepsPerEpoch: Int
    /// Fingerprint of the training texts and labels in training order.
    public var dataFingerprint: String
    /// Mean learning rate of each epoch 1...epochs under the run's schedule.
    public var epochLearningRates: [Double]
    /// tangent's own architecture, when the run trained one of its models.
    public var model: ModelConfig?
    /// Any other architecture: the fingerprint of its configuration (`ClassifierModel.configurationData`).
    public var architecture: String?
    public var labels: [String]
    public var threads: Int

    enum CodingKeys: String, CodingKey {
        case format, epoch, options
        case trainTexts = "train_texts"
        case stepsPerEpoch = "steps_per_epoch"
        case dataFingerprint = "data_fingerprint"
        case epochLearningRates = "epoch_learning_rates"
        case model, architecture, labels, threads
    }

    /// The record of the checkpoint after `epoch` of a run with these settings.
    public init(
        epoch: Int, options: TrainingOptions, trainTexts: Int, dataFingerprint: String,
        model: any ClassifierModel<Float>,
        labels: [String], threads: Int
    ) {
        self.epoch = epoch
        self.options = options
        self.trainTexts = trainTexts
        self.stepsPerEpoch = (trainTexts + options.batchSize - 1) / options.batchSize
        self.dataFingerprint = dataFingerprint
        self.model = (model as? TransformerClassifier<Float>)?.config
        self.architecture = self.model == nil ? TrainingRecord.architecture(of: model) : nil
        self.labels = labels
        self.threads = threads
        let schedule = LearningRateSchedule(options: options, stepsPerEpoch: stepsPerEpoch)
        let perEpoch = stepsPerEpoch
        epochLearningRates = (0..<options.epochs).map { e in
            (0..<perEpoch).map { schedule.rate(at: e * perEpoch + $0) }.reduce(0, +) / Double(perEpoch)
        }
    }

    /// The `architecture` field for a model other than tangent's own.
    public static func architecture(of model: any ClassifierModel<Float>) -> String {
        model.architecture + " " + fingerprint(model.configurationData)
    }

    /// Whether the record's architecture is `model`'s.
    public func describes(_ model: any ClassifierModel<Float>) -> Bool {
        if let m = model as? TransformerClassifier<Float> { return self.model == m.config && architecture == nil }
        return self.model == nil && architecture == TrainingRecord.architecture(of: model)
    }

    /// The learning rate TracIn gives this checkpoint: the mean rate of its epoch (the
    /// checkpoint stands for that epoch's steps; the rate at the very last step would be 0
    /// for the final epoch of a schedule that decays to 0).
    public var learningRate: Double { epochLearningRates[epoch - 1] }

    /// Fields in which `other` is a different run (the epoch aside), described for an
    /// error message; empty when both checkpoints come from one run.
    public func differences(from other: TrainingRecord) -> [String] {
        var out: [String] = []
        if options != other.options { out.append("training options") }
        if trainTexts != other.trainTexts { out.append("training texts (\(trainTexts) vs \(other.trainTexts))") }
        if dataFingerprint != other.dataFingerprint { out.append("training data") }
        if model != other.model || architecture != other.architecture { out.append("architecture") }
        if labels != other.labels { out.append("labels (\(labels) vs \(other.labels))") }
        return out
    }

    /// Writes a checkpoint: the model's weights in the spec's layout, with this record.
    public func writeCheckpoint(_ model: any ClassifierModel<Float>, to url: URL) throws {
        let json = String(decoding: try JSONEncoder.sorted.encode(self), as: UTF8.self)
        try ModelDirectory.saveWeights(
            model, to: url, metadata: [TrainingRecord.metadataKey: json, "epoch": String(epoch)])
    }

    /// The record of a checkpoint file. Throws, naming the file, when there is none (a
    /// checkpoint written before records existed, or by another tool), when it is damaged,
    /// or when it contradicts itself.
    public static func read(from url: URL) throws -> TrainingRecord {
        let file = try SafetensorsFile(url: url)
        guard let json = file.metadata[metadataKey] else {
            throw TrainingError(
                "\(url.path): no training record in the checkpoint's metadata, so its learning rate and run are unknown; "
                    + "regenerate the checkpoints with `tangent train --keep-checkpoints`")
        }
        let record: TrainingRecord
        do {
            record = try JSONDecoder().decode(TrainingRecord.self, from: Data(json.utf8))
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw TrainingError(
                "\(url.path): training record: missing field '\((ctx.codingPath + [key]).map(\.stringValue).joined(separator: "."))'"
            )
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx), let
            DecodingError.dataCorrupted(ctx)
        {
            let field = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            throw TrainingError(
                "\(url.path): training record: " + (field.isEmpty ? "not valid JSON" : "field '\(field)' is invalid"))
        }
        guard record.format == currentFormat else {
            throw TrainingError(
                "\(url.path): training record of format '\(record.format)'; this tangent reads \(currentFormat)")
        }
        guard record.options.epochs >= 1, record.epochLearningRates.count == record.options.epochs,
            (1...record.options.epochs).contains(record.epoch)
        else {
            throw TrainingError(
                "\(url.path): training record is inconsistent (epoch \(record.epoch) of \(record.options.epochs), "
                    + "\(record.epochLearningRates.count) learning rates)")
        }
        if let bad = record.epochLearningRates.firstIndex(where: { !($0.isFinite && $0 >= 0) }) {
            throw TrainingError(
                "\(url.path): training record field 'epoch_learning_rates' has \(record.epochLearningRates[bad]) for epoch \(bad + 1); learning rates are finite and not negative"
            )
        }
        if !(record.options.learningRate.isFinite && record.options.learningRate > 0) {
            throw TrainingError(
                "\(url.path): training record field 'options.learning_rate' is \(record.options.learningRate); it must be positive"
            )
        }
        return record
    }
}

extension LearningRateSchedule {
    /// The schedule a training run with `options` follows.
    public init(options: TrainingOptions, stepsPerEpoch: Int) {
        let total = stepsPerEpoch * options.epochs
        self.init(
            peak: options.learningRate, warmupSteps: Int(Double(total) * options.warmupFraction),
            totalSteps: total, decay: options.decay)
    }
}

/// What a model directory's config.json records about the run that trained it (written by
/// `tangent train`, `poison` and `lds`): typed, so that TracIn, resumption and recipes read
/// one structure instead of untyped JSON.
public struct RecordedTraining: Sendable, Equatable {
    /// The run's options (`"training"`), nil when the model records no run.
    public var options: TrainingOptions?
    /// Number and fingerprint of the training texts (`"dataset"."train_texts"`, `"train_fingerprint"`).
    public var trainTexts: Int?
    public var dataFingerprint: String?
    /// Threads the run used (bit-identical results need the same count).
    public var threads: Int?

    /// Reads the record from a parsed config.json. Throws, naming the field, when
    /// `"training"` is present but not a valid set of options.
    public init(configJSON json: [String: Any], source: String) throws {
        if let recorded = json["training"] {
            do {
                options = try JSONDecoder().decode(
                    TrainingOptions.self, from: JSONSerialization.data(withJSONObject: recorded))
            } catch {
                throw DataError("\(source): field 'training' is not a valid set of training options (\(error))")
            }
        }
        trainTexts = (json["dataset"] as? [String: Any])?["train_texts"] as? Int
        dataFingerprint = json["train_fingerprint"] as? String
        threads = json["threads"] as? Int
    }
}
