import TangentKernels

/// A kernel the surrogate can be fitted on, as named in the kernels spec.
///
/// Each case says where the kernel's values come from; everything else (stored features,
/// normalization, which score a method attributes by) follows from the case, here, so that
/// adding a kernel means adding a row to `catalog` (and a case only for a new family).
public enum SurrogateKernel: Sendable, Hashable {
    /// The exact NTK from unprojected gradients (`ExactKernel`); with `layerWeighted`, its
    /// per-layer parts weighted by w_l >= 0 fitted on the training texts (`LayerWeighting`).
    case exact(NTKKind, layerWeighted: Bool)
    /// Randomly projected gradients, cosine-normalized (`proj-trntk`, `proj-pntk`).
    case projected(FeatureKind)
    /// Pooled embeddings: cosine-normalized (`embedding`) or raw (the conjugate kernel `ck`).
    case embedding(normalized: Bool)
    /// Loss gradients at the predicted label: at the final weights, cosine-normalized
    /// (`grad-cos`), or summed over the training checkpoints with sqrt(eta_k) (`tracin`).
    case lossGradient(checkpoints: Bool)
    /// Stored features mapped through an influence transform (`if-head`, `if-proj`) or
    /// TRAK's, averaged over an ensemble of models (`trak`).
    case influence(InfluenceTransform.Kind)

    /// Every kernel by its name, in the order reports list them.
    public static let catalog: [(name: String, kernel: SurrogateKernel)] = [
        ("trntk", .exact(.trntk, layerWeighted: false)),
        ("pntk-norm", .exact(.pntkNorm, layerWeighted: false)),
        ("proj-trntk", .projected(.trntk)),
        ("proj-pntk", .projected(.pntk)),
        ("embedding", .embedding(normalized: true)),
        ("ck", .embedding(normalized: false)),
        ("grad-cos", .lossGradient(checkpoints: false)),
        ("tracin", .lossGradient(checkpoints: true)),
        ("if-head", .influence(.head)),
        ("if-proj", .influence(.projected)),
        ("trak", .influence(.trak)),
        ("trntk-layers", .exact(.trntk, layerWeighted: true)),
    ]

    public static var all: [SurrogateKernel] { catalog.map(\.kernel) }

    public static func named(_ name: String) -> SurrogateKernel? {
        catalog.first { $0.name == name }?.kernel
    }

    public var name: String { SurrogateKernel.catalog.first { $0.kernel == self }!.name }

    /// The features stored for the kernel (exact kernels store none; `.trntk` names the
    /// gradients their exact computation takes).
    public var features: FeatureKind {
        switch self {
        case .exact(let kind, _): return kind == .trntk || kind == .trntk0 ? .trntk : .pntk
        case .projected(let f): return f
        case .embedding: return .embedding
        case .lossGradient: return .grad
        case .influence(let kind): return kind == .head ? .embedding : .trntk
        }
    }

    /// Whether the surrogate sees the cosine-normalized kernel.
    public var normalized: Bool {
        switch self {
        case .exact(let kind, _): return kind.normalized
        case .projected: return true
        case .embedding(let normalized): return normalized
        case .lossGradient(let checkpoints): return !checkpoints
        case .influence: return false
        }
    }

    /// The exact NTK, for exact kernels.
    public var exact: NTKKind? {
        if case .exact(let kind, _) = self { return kind }
        return nil
    }

    public var layerWeighted: Bool {
        if case .exact(_, let weighted) = self { return weighted }
        return false
    }

    /// The influence transform the features go through, if any.
    public var influence: InfluenceTransform.Kind? {
        if case .influence(let kind) = self { return kind }
        return nil
    }

    /// TracIn: features of every saved training checkpoint, scaled by sqrt(eta_k) and
    /// concatenated, so that kernel products sum eta_k <.,.> over checkpoints.
    public var checkpointSummed: Bool { self == .lossGradient(checkpoints: true) }

    /// TRAK: features of every model of an ensemble, scaled by 1/sqrt(N) and concatenated,
    /// so that kernel products average over the models.
    public var ensembled: Bool { self == .influence(.trak) }

    /// Whether the method's own attribution is its kernel value (loss-gradient kernels,
    /// influence functions, TRAK) rather than the surrogate's W[c, i] K(x, x_i).
    public var attributesByKernelValue: Bool {
        switch self {
        case .lossGradient, .influence: return true
        default: return false
        }
    }

    /// The exact NTK whose per-layer parts explain this kernel, if any.
    public var layerKind: NTKKind? {
        switch self {
        case .exact(let kind, _): return kind
        case .projected(let f): return f == .trntk ? .trntk : .pntkNorm
        default: return nil
        }
    }
}
