import TangentFeatures

/// A kernel the surrogate can be fitted on, as named in the kernels spec (the raw value).
///
/// One case per kernel, so that every value names a kernel that exists; the family a
/// kernel belongs to and everything that follows from it (stored features,
/// normalization, which score a method attributes by) is said here, so that adding a
/// kernel means adding a case and its rows below.
public enum SurrogateKernel: String, Sendable, Hashable, CaseIterable {
    /// The exact NTKs from unprojected gradients (`ExactKernel`); `trntk-layers` weights
    /// trNTK's per-layer parts by w_l >= 0 fitted on the training texts (`LayerWeighting`).
    case trntk
    case pntkNorm = "pntk-norm"
    /// Randomly projected gradients, cosine-normalized.
    case projTrntk = "proj-trntk"
    case projPntk = "proj-pntk"
    /// Pooled embeddings: cosine-normalized, or raw (the conjugate kernel).
    case embedding, ck
    /// Loss gradients at the predicted label: at the final weights, cosine-normalized, or
    /// summed over the training checkpoints with sqrt(eta_k) (TracIn).
    case gradCos = "grad-cos"
    case tracin
    /// Stored features mapped through an influence transform, or TRAK's averaged over an
    /// ensemble of models.
    case ifHead = "if-head"
    case ifProj = "if-proj"
    case trak
    /// EK-FAC influence (kronfluence's curvature): projected loss gradients of the linear
    /// layers whitened by the Kronecker-factored eigenbasis (`EKFAC`), so that kernel
    /// products are g(x)^T (G + lambda)^-1 g(x').
    case ekfac
    case trntkLayers = "trntk-layers"

    /// Every kernel, in the order reports list them.
    public static var all: [SurrogateKernel] { allCases }

    public static func named(_ name: String) -> SurrogateKernel? { SurrogateKernel(rawValue: name) }

    public var name: String { rawValue }

    /// The exact NTK, for exact kernels.
    public var exact: NTKKind? {
        switch self {
        case .trntk, .trntkLayers: return .trntk
        case .pntkNorm: return .pntkNorm
        default: return nil
        }
    }

    /// NFT-K's layer-weighted exact kernel.
    public var layerWeighted: Bool { self == .trntkLayers }

    /// The influence transform the features go through, if any.
    public var influence: InfluenceTransform.Kind? {
        switch self {
        case .ifHead: return .head
        case .ifProj: return .projected
        case .trak: return .trak
        default: return nil
        }
    }

    /// The features stored for the kernel (exact kernels store none; `.trntk` names the
    /// gradients their exact computation takes).
    public var features: FeatureKind {
        switch self {
        case .trntk, .trntkLayers, .projTrntk, .ifProj, .trak: return .trntk
        case .pntkNorm, .projPntk: return .pntk
        case .embedding, .ck, .ifHead: return .embedding
        case .gradCos, .tracin: return .grad
        case .ekfac: return .ekfac
        }
    }

    /// Whether the surrogate sees the cosine-normalized kernel.
    public var normalized: Bool {
        switch self {
        case .trntk, .trntkLayers: return NTKKind.trntk.normalized
        case .pntkNorm: return NTKKind.pntkNorm.normalized
        case .projTrntk, .projPntk, .embedding, .gradCos: return true
        case .ck, .tracin, .ifHead, .ifProj, .trak, .ekfac: return false
        }
    }

    /// TracIn: features of every saved training checkpoint, scaled by sqrt(eta_k) and
    /// concatenated, so that kernel products sum eta_k <.,.> over checkpoints.
    public var checkpointSummed: Bool { self == .tracin }

    /// TRAK: features of every model of an ensemble, scaled by 1/sqrt(N) and concatenated,
    /// so that kernel products average over the models.
    public var ensembled: Bool { self == .trak }

    /// Whether the method's own attribution is its kernel value (loss-gradient kernels,
    /// influence functions, TRAK) rather than the surrogate's W[c, i] K(x, x_i).
    public var attributesByKernelValue: Bool {
        switch self {
        case .gradCos, .tracin, .ifHead, .ifProj, .trak, .ekfac: return true
        default: return false
        }
    }

    /// The exact NTK whose per-layer parts explain this kernel, if any.
    public var layerKind: NTKKind? {
        switch self {
        case .trntk, .pntkNorm, .trntkLayers: return exact
        case .projTrntk: return .trntk
        case .projPntk: return .pntkNorm
        default: return nil
        }
    }

    /// The damping an influence method uses unless told, relative to its curvature's scale:
    /// 1e-3 of the mean diagonal (if-head, if-proj, TRAK), kronfluence's 0.1 of each layer's
    /// mean corrected eigenvalue (EK-FAC); nil for methods without curvature.
    public var defaultDamping: Double? {
        if self == .ekfac { return 0.1 }
        return influence == nil ? nil : InfluenceTransform.defaultDamping
    }
}
