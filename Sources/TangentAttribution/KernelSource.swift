import Foundation
import TangentData
import TangentFeatures
import TangentModel
import TangentSafetensors
import TangentSurrogate
import TangentTensor

/// The training side of a kernel: what the surrogate is fitted on and queried with.
///
/// Two implementations: `ExactKernelSource` (the exact NTK from unprojected gradients, with
/// its per-layer parts) and `FeatureKernelSource` (products of stored feature vectors:
/// projected gradients, embeddings, loss gradients, influence-transformed features).
public protocol KernelSource: AnyObject {
    var kernel: SurrogateKernel { get }
    var trainCount: Int { get }
    /// Names the kernel's files in the cache (`SurrogateCache`).
    var stem: String { get }
    /// The train x train kernel the surrogate is fitted on.
    func gram() throws -> TrainingKernel
    /// The network's logits on the training texts [n, C].
    func trainLogits() throws -> [Float]
    /// Kernel rows of `texts`. Loss gradients (grad-cos, influence) and TRAK's margin
    /// gradients use the class indices `lossLabels` when given, else the network's
    /// predicted label (kernels spec). With `cached`, the query's features (or exact rows)
    /// are kept in the cache and reused.
    func query(
        _ texts: [LabeledText], source: String, cached: Bool, lossLabels: [Int]?,
        log: (String) -> Void, progress: (Int, Int) -> Void
    ) throws -> QueryKernel
    /// Exact kernels: per-layer parts of the training texts' self-kernels K(x_i, x_i).
    var selfParts: [(group: String, values: [Float])]? { get }
    /// What a reader must know to interpret the kernel's results (TracIn's checkpoints).
    var note: String? { get }
    /// Stored features and featurizer of the model under study (nil for exact kernels).
    var storedFeatures: (file: FeatureFile, featurizer: Featurizer)? { get }
    /// One influence transform per feature source (none without an influence kernel).
    var transforms: [InfluenceTransform] { get }
    /// NFT-K layer weights, and their fit when it ran in this process (nil unless the
    /// kernel is layer-weighted).
    var layerWeighting: (weights: [Double], fit: LayerWeighting.Result?)? { get }
}

/// The settings every kernel of a run shares.
public struct AttributionSetup {
    public var classifier: Classifier
    public var train: [LabeledText]
    public var projDim: Int
    public var seed: UInt64
    public var projector: ProjectorChoice
    public var cache: SurrogateCache
    public var selector: LambdaSelector
    public var threads: Int
    /// TracIn's checkpoints (nil: MODEL/checkpoints).
    public var checkpoints: URL?
    /// TRAK's other models.
    public var ensemble: [Classifier]
    /// false: refit the surrogate even if a cached one exists (the comparison does, to
    /// report the whole grid).
    public var useSurrogateCache: Bool
    /// Fit the surrogate on all training texts at every lambda of the grid, not only at the
    /// chosen one (a comparison report's per-lambda figures); by default, when the cache
    /// is bypassed.
    public var fitGrid: Bool
    /// The influence baselines' damping relative to their curvature's mean diagonal
    /// (if-head, if-proj, TRAK; EK-FAC: to each layer's mean corrected eigenvalue); nil:
    /// the method's default (`SurrogateKernel.defaultDamping`).
    public var damping: Double?
    /// EK-FAC's features are computed for each of these relative dampings in one pass (the
    /// rotation is shared); `damping` must be one of them.
    public var ekfacDampings: [Double] = [SurrogateKernel.ekfac.defaultDamping!]

    public init(
        classifier: Classifier, train: [LabeledText], projDim: Int, seed: UInt64, projector: ProjectorChoice = .default,
        cache: URL, selector: LambdaSelector = LambdaSelector(), threads: Int = Threads.cores, checkpoints: URL? = nil,
        ensemble: [Classifier] = [], useSurrogateCache: Bool = true
    ) {
        self.classifier = classifier
        self.train = train
        self.projDim = projDim
        self.seed = seed
        self.projector = projector
        self.cache = SurrogateCache(directory: cache)
        self.selector = selector
        self.threads = threads
        self.checkpoints = checkpoints
        self.ensemble = ensemble
        self.useSurrogateCache = useSurrogateCache
        fitGrid = !useSurrogateCache
    }

    /// The training side of `kernel` under these settings (features or the exact kernel
    /// computed or read from the cache).
    public func source(
        for kernel: SurrogateKernel, labels: [Int], log: (String) -> Void,
        progress: (Int, Int) -> Void
    ) throws -> KernelSource {
        if let kind = kernel.exact {
            return try ExactKernelSource(
                setup: self, kernel: kernel, kind: kind, labels: labels, log: log, progress: progress)
        }
        return try FeatureKernelSource(setup: self, kernel: kernel, labels: labels, log: log, progress: progress)
    }
}

/// One kernel's progress: stages labelled "KERNEL STAGE", its wall time, and whether any
/// of its features were computed rather than read from the cache.
public final class KernelProgress {
    public let kernel: SurrogateKernel
    public let started = Date()
    public private(set) var featurized = false
    private let report: (String, Int, Int) -> Void

    public init(kernel: SurrogateKernel, report: @escaping (String, Int, Int) -> Void) {
        self.kernel = kernel
        self.report = report
    }

    /// A progress callback for one stage of the kernel ("train", "test", ...); any
    /// progress means features were computed.
    public func progress(_ stage: String) -> (Int, Int) -> Void {
        { [self] done, total in
            featurized = true
            report("\(kernel.name) \(stage)", done, total)
        }
    }

    public var seconds: Double { Date().timeIntervalSince(started) }
}

/// One kernel's turn in `AttributionSetup.forEachKernel`: its engine and its progress.
public struct KernelRun {
    public let engine: AttributionEngine
    public let tracker: KernelProgress
    public var kernel: SurrogateKernel { tracker.kernel }
    public var featurized: Bool { tracker.featurized }
    public var seconds: Double { tracker.seconds }
    public func progress(_ stage: String) -> (Int, Int) -> Void { tracker.progress(stage) }
}

extension AttributionSetup {
    /// The per-kernel loop of `compare`, `poison` and `lds`: for each kernel, logs its name,
    /// fits its surrogate (TracIn's checkpoints and TRAK's ensemble only where the kernel
    /// uses them) and hands the run to `body`.
    public func forEachKernel<R>(
        _ kernels: [SurrogateKernel], log: (String) -> Void,
        progress: @escaping (String, Int, Int) -> Void,
        _ body: (KernelRun) throws -> R
    ) throws -> [R] {
        try kernels.map { k in
            log("== \(k.name)")
            var setup = self
            setup.checkpoints = k.checkpointSummed ? checkpoints : nil
            setup.ensemble = k.ensembled ? ensemble : []
            let tracker = KernelProgress(kernel: k, report: progress)
            let engine = try AttributionEngine(setup: setup, kernel: k, log: log, progress: tracker.progress("train"))
            return try body(KernelRun(engine: engine, tracker: tracker))
        }
    }
}
