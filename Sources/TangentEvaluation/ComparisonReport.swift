import Foundation
import TangentFeatures

// The report schema of `tangent compare`: what report.json holds, read back by the
// report renderers and by `compare --lds`.

/// One lambda of the regularization grid: the selector's out-of-fold figures on the
/// training texts, and the tau its surrogate (fitted on all training texts) reaches on
/// the test texts.
public struct GridPoint: Sendable, Codable {
    public let lambda: Double
    /// Out-of-fold, on the training texts (see `LambdaSelector`).
    public let networkTau: Double
    public let networkCrossEntropy: Double
    public let labelCrossEntropy: Double
    /// On the test texts.
    public let tau: Double
    /// Reports made before k-fold selection: the loss on one held-out tenth (their
    /// out-of-fold figures are NaN, and their grid fits used nine tenths of the texts).
    public var heldOutLoss: Double? = nil

    public init(lambda: Double, networkTau: Double, networkCrossEntropy: Double, labelCrossEntropy: Double, tau: Double)
    {
        self.lambda = lambda
        self.networkTau = networkTau
        self.networkCrossEntropy = networkCrossEntropy
        self.labelCrossEntropy = labelCrossEntropy
        self.tau = tau
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        lambda = try c.decode(Double.self, forKey: .lambda)
        tau = try c.decode(Double.self, forKey: .tau)
        heldOutLoss = try c.decodeIfPresent(Double.self, forKey: .heldOutLoss)
        // An older report has the held-out loss instead of the out-of-fold figures.
        let old = heldOutLoss != nil
        networkTau = old ? .nan : try c.decode(Double.self, forKey: .networkTau)
        networkCrossEntropy = old ? .nan : try c.decode(Double.self, forKey: .networkCrossEntropy)
        labelCrossEntropy = old ? .nan : try c.decode(Double.self, forKey: .labelCrossEntropy)
    }
}

/// Faithfulness of one kernel's surrogate to the network on the test texts.
public struct KernelReport: Sendable, Codable {
    public let kernel: String
    /// The chosen lambda (see `selection`) and the fit's solver state.
    public let lambda: Double
    public let iterations: Int
    public let converged: Bool
    /// Kendall tau-b between surrogate and network log-odds of the compared class
    /// (class 1 for two classes, the true label otherwise), over all test texts.
    public let tau: Double
    /// The paper's variant: tau over probabilities, texts where either probability is
    /// exactly 0 or 1 in float dropped; and how many texts it kept.
    public let tauProbability: Double
    public let tauProbabilityTexts: Int
    /// Test accuracy of the surrogate minus that of the network.
    public let tad: Double
    public let surrogateAccuracy: Double
    /// Share of test texts where surrogate and network predict the same label.
    public let agreement: Double
    public let grid: [GridPoint]
    /// Best tau over the grid: what a rule that looked at the test texts would reach.
    public let bestGridTau: Double
    /// The selector's criterion (`LambdaSelector.Criterion`) and folds, e.g. "network-tau, 5 folds".
    public var selection: String? = nil
    /// Wall time of this kernel (featurization, fits, measurement) and the process's peak
    /// memory so far; with cached features the time excludes featurization.
    public let seconds: Double
    public let peakMemoryMiB: Double
    /// Whether training and test features came from the cache.
    public let featuresCached: Bool
    /// Per test text: the surrogate's and the network's log-odds of the compared class.
    public let surrogateLogOdds: [Double]
    public let networkLogOdds: [Double]
    /// Exact NTKs: each layer group's share of the kernel (NFT-K decomposition).
    public var layerShares: [LayerShare]? = nil
    /// With several models: this kernel's figures on each (the other fields describe the first).
    public var replicates: Replicates? = nil
    /// What a reader must know to interpret the row (TracIn: which checkpoints were summed).
    public var note: String? = nil
}

/// One kernel's tau and TAD on several models of the same data (e.g. training seeds).
public struct Replicates: Sendable, Codable {
    public let models: [String]
    public let tau: [Double]
    public let tad: [Double]
    public var tauMean: Double { Replicates.mean(tau) }
    public var tauSD: Double { Replicates.sd(tau) }
    public var tadMean: Double { Replicates.mean(tad) }
    public var tadSD: Double { Replicates.sd(tad) }
    static func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(v.count) }
    /// Sample standard deviation (0 for a single model).
    static func sd(_ v: [Double]) -> Double {
        guard v.count > 1 else { return 0 }
        let m = mean(v)
        return (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count - 1)).squareRoot()
    }
}

/// One layer group's share of an exact NTK (its part over the whole), three ways.
public struct LayerShare: Sendable, Codable {
    public let group: String
    /// Over all test x train pairs: sum of the group's part / sum of the kernel.
    public let pairs: Double
    /// Over each test text's 10 strongest proponents (for its predicted class), averaged.
    public let topProponents: Double
    /// Over the training texts' self-kernels K(x_i, x_i).
    public let selfKernel: Double
}

/// A comparison of kernels on one model and data set.
public struct ComparisonReport: Sendable, Codable {
    public let model: String
    public let train: String
    public let test: String
    public let trainTexts: Int
    public let testTexts: Int
    public let classes: [String]
    public let projDim: Int
    public let seed: UInt64
    /// The projector of the projected kernels (`ProjectorChoice.tag`); reports written
    /// before sketches existed used Rademacher and do not say so.
    public var projector: String? = nil
    /// The projector's tag, old reports' Rademacher included.
    public var projectorTag: String { projector ?? ProjectorChoice.rademacher.tag }
    public let networkTestAccuracy: Double
    public var kernels: [KernelReport]
    /// How far projected kernels are from the exact ones, for several K.
    public var projectionError: [ProjectionErrorPoint]? = nil
    /// The linear datamodeling score of each method, from an LDS run on the same training texts.
    public var lds: LDSReport? = nil
}

/// Relative Frobenius error ||K_proj - K_exact|| / ||K_exact|| of a projected kernel's
/// normalized test x train block, on a subset of the texts.
public struct ProjectionErrorPoint: Sendable, Codable {
    public let kernel: String
    public let projDim: Int
    public let relativeError: Double
    public let trainTexts: Int
    public let testTexts: Int
    /// The projector's tag (nil in reports from before sketches: Rademacher).
    public var projector: String? = nil
    /// Projection seeds the error is the root mean square over (nil: one).
    public var seeds: Int? = nil

    /// The kernel with its projector, as plots and tables name the curve.
    public var label: String { kernel + " (" + (projector ?? ProjectorChoice.rademacher.tag) + ")" }
}
