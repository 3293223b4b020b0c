import Foundation
import TangentModel
import TangentSafetensors
import TangentTensor

/// Everything a resumed training run needs after a finished epoch: the weights, AdamW's
/// moments and step, and the finished epochs' history, in one file written in one rename
/// before the model files, so that a kill at any point leaves a consistent state.
public enum ResumeState {
    /// The file's name in a model directory while a run is unfinished.
    public static let fileName = "resume.safetensors"

    /// Writes the trainer's state after epoch `epoch` to `url`.
    public static func save(_ trainer: Trainer, epoch: Int, history: [EpochSummary], to url: URL) throws {
        let state = trainer.optimizerState
        let model = trainer.model
        var w = SafetensorsWriter()
        w.metadata = [
            "format": "tangent-resume-1", "epoch": String(epoch), "step": String(state.step),
            "history": String(decoding: try JSONEncoder().encode(history), as: UTF8.self),
        ]
        w.add("params", shape: [model.layout.count], float32: model.parameterArray)
        w.add("m", shape: [state.m.count], float32: state.m)
        w.add("v", shape: [state.v.count], float32: state.v)
        try w.write(to: url)
    }

    /// Restores the state in `url` into `model` and `trainer` (the weights of the last
    /// finished epoch: config.json and model.safetensors may lag one epoch behind when a
    /// run was killed while saving them) and returns the finished epochs' history.
    /// `directory` names the run in errors.
    public static func restore(
        from url: URL, into model: any ClassifierModel<Float>, trainer: Trainer, stepsPerEpoch: Int,
        directory: String
    ) throws -> [EpochSummary] {
        let state: SafetensorsFile
        do { state = try SafetensorsFile(url: url) } catch {
            throw TrainingError(
                "\(directory): cannot resume: the state of the last finished epoch is missing or damaged (\(error)); retrain with --overwrite"
            )
        }
        guard state.metadata["format"] == "tangent-resume-1", let step = Int(state.metadata["step"] ?? ""),
            let history = try? JSONDecoder().decode(
                [EpochSummary].self, from: Data((state.metadata["history"] ?? "").utf8)),
            step == history.count * stepsPerEpoch
        else {
            throw TrainingError(
                "\(url.path): not a resumable state of this run (\(stepsPerEpoch) steps per epoch); retrain with --overwrite"
            )
        }
        let n = model.layout.count
        model.setParameters(try state.float32("params", shape: [n]))
        try trainer.restore(m: try state.float32("m", shape: [n]), v: try state.float32("v", shape: [n]), step: step)
        return history
    }
}

/// A training run into a model directory, epoch by epoch. After each finished epoch, in
/// this order: the resume state (until the last epoch), the epoch's checkpoint with its
/// training record (when kept; before the model files, so a resumed run never lacks a
/// finished epoch's checkpoint), then the model with its config.json; the resume state
/// goes once the run is complete.
public struct TrainingRun {
    public let classifier: Classifier
    public let directory: URL
    public let options: TrainingOptions
    public let keepCheckpoints: Bool
    /// What the training record says of the data and machine.
    public let trainTexts: Int
    public let dataFingerprint: String
    public let threads: Int
    /// Weights above this many bytes are saved in shards (Hugging Face directories).
    public let maxShardBytes: Int?

    public init(
        classifier: Classifier, directory: URL, options: TrainingOptions, keepCheckpoints: Bool, trainTexts: Int,
        dataFingerprint: String, threads: Int, maxShardBytes: Int? = nil
    ) {
        self.classifier = classifier
        self.directory = directory
        self.options = options
        self.keepCheckpoints = keepCheckpoints
        self.trainTexts = trainTexts
        self.dataFingerprint = dataFingerprint
        self.threads = threads
        self.maxShardBytes = maxShardBytes
    }

    public var resumeStateURL: URL { directory.appendingPathComponent(ResumeState.fileName) }

    /// Saves what epoch `summary.epoch` finished; `extra` is config.json's content beyond
    /// the architecture.
    public func finishEpoch(_ summary: EpochSummary, trainer: Trainer, history: [EpochSummary], extra: [String: Any])
        throws
    {
        let model = classifier.model
        let final = summary.epoch == options.epochs
        if !final { try ResumeState.save(trainer, epoch: summary.epoch, history: history, to: resumeStateURL) }
        if keepCheckpoints {
            let record = TrainingRecord(
                epoch: summary.epoch, options: options, trainTexts: trainTexts, dataFingerprint: dataFingerprint,
                model: classifier.model, labels: classifier.labels.names, threads: threads)
            try record.writeCheckpoint(
                model,
                to: directory.appendingPathComponent(
                    "\(ModelDirectory.checkpointsDirectory)/epoch-\(summary.epoch).safetensors"))
        }
        try classifier.save(to: directory, extra: extra, maxShardBytes: maxShardBytes)
        if final { unlink(resumeStateURL.path) }
    }
}
