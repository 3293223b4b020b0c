@_exported import Foundation
@_exported import TangentAttribution
@_exported import TangentData
@_exported import TangentEvaluation
@_exported import TangentFeatures
@_exported import TangentModel
@_exported import TangentSurrogate
@_exported import TangentTensor

/// Which training texts made the model say this? The library's entry point: a model, its
/// training texts, a kernel, then `explain`.
///
/// ```swift
/// import Tangent
///
/// let model = try Classifier(directory: URL(fileURLWithPath: "models/movie-snippets"))
/// let train = try DatasetReader().read(URL(fileURLWithPath: "data/movie-snippets/train.jsonl"))
/// let attributor = try Attributor(model: model, training: train, kernel: .projTrntk)
/// let explanation = try attributor.explain("a tedious, overlong mess", top: 5)
/// ```
///
/// Creating one featurizes the training texts and fits the kernel surrogate (the lambda
/// chosen by 5-fold cross-validation on the training texts), as `tangent attribute` does,
/// with both kept in `cache` so that the next `Attributor` of the same model, texts and
/// settings starts at once. The threads are set up here: batches are split over `threads`
/// cores by the toolkit and BLAS runs single-threaded inside each part (the process-wide
/// BLAS setting the `tangent` CLI also makes).
public final class Attributor {
    /// The model whose predictions are explained.
    public let model: Classifier
    /// The fitted surrogate and its kernel (for what `explain` does not show: the chosen
    /// lambda, the out-of-fold figures, per-class kernel rows).
    public let engine: AttributionEngine
    /// The model, training texts and settings the surrogate was fitted with.
    public let setup: AttributionSetup

    /// Where features and fitted surrogates are kept when no cache is given:
    /// `$XDG_CACHE_HOME/tangent/features`, else `~/.cache/tangent/features`. Entries are
    /// named by the model's weights, the texts and the settings, so sharing it is safe.
    public static var defaultCache: URL {
        let base =
            ProcessInfo.processInfo.environment["XDG_CACHE_HOME"].flatMap {
                $0.isEmpty ? nil : URL(fileURLWithPath: $0)
            }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return base.appendingPathComponent("tangent/features")
    }

    /// Fits the surrogate of `kernel` on `training` (texts with labels of `model`).
    /// - Parameters:
    ///   - model: the classifier whose predictions are explained.
    ///   - training: its training texts, each with one of the model's labels.
    ///   - kernel: the kernel of the surrogate (default: the projected trace-NTK).
    ///   - projDim: K, the dimension of projected kernels' features (4096 as the CLI).
    ///   - seed: the projection's and the cross-validation's seed.
    ///   - cache: see `defaultCache`.
    ///   - threads: cores to use (default: all).
    ///   - log: what the CLI prints on stderr (the lambda selection, cache use).
    public init(
        model: Classifier, training: [LabeledText], kernel: SurrogateKernel = .projTrntk, projDim: Int = 4096,
        seed: UInt64 = 0, cache: URL? = nil, threads: Int = Threads.cores, log: (String) -> Void = { _ in }
    ) throws {
        BLASThreads.set(1)
        self.model = model
        setup = AttributionSetup(
            classifier: model, train: training, projDim: projDim, seed: seed, cache: cache ?? Attributor.defaultCache,
            threads: threads)
        engine = try AttributionEngine(setup: setup, kernel: kernel, log: log)
    }

    /// Explains the model's prediction of `text`: its label and probability, the
    /// surrogate's, and the `top` training texts on each side (proponents push toward the
    /// predicted label, opponents away), each with its score.
    /// - Parameters:
    ///   - text: the text whose prediction is explained.
    ///   - top: training texts listed on each side.
    public func explain(_ text: String, top: Int = 10) throws -> Explanation {
        try explain([text], top: top)[0]
    }

    /// The `top` training texts whose labels are most likely wrong, as `tangent audit`
    /// ranks them: by `method` (default: the surrogate's out-of-fold loss of the text's
    /// label), each with the label the surrogate gives it and the training texts that
    /// most support that label.
    /// - Parameters:
    ///   - top: suspects listed, most suspect first.
    ///   - method: the score that ranks them.
    public func audit(top: Int = 10, method: AuditMethod = .surrogateOutOfFold) throws -> [AuditSuspect] {
        try Audit.run(
            setup: setup, kernel: engine.kernel, methods: [method], top: top,
            modelName: model.directory?.path ?? "(in memory)", trainName: "training texts"
        ).report.suspects
    }

    /// `explain` of several texts at once (one pass over the model).
    /// - Parameters:
    ///   - texts: the texts whose predictions are explained.
    ///   - top: training texts listed on each side.
    public func explain(_ texts: [String], top: Int = 10) throws -> [Explanation] {
        try engine.explain(texts, top: top)
    }
}
