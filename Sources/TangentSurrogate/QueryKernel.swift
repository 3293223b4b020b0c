import Foundation

/// Kernel rows of query texts against the training texts, with the network's logits.
public struct QueryKernel: Sendable {
    /// K(x, X_train) [m, n], as the surrogate uses it (normalized when the kernel is).
    public let rows: [Float]
    /// The network's logits [m, C].
    public let logits: [Float]
    /// Exact kernels: the per-layer parts of `rows` (they add up to it).
    public let parts: [(group: String, values: [Float])]?
    /// TRAK: the scores [m, n], the rows with each model's 1 - p_{y_i}(x_i) applied.
    public var scores: [Float]? = nil

    public init(rows: [Float], logits: [Float], parts: [(group: String, values: [Float])]?, scores: [Float]? = nil) {
        self.rows = rows
        self.logits = logits
        self.parts = parts
        self.scores = scores
    }
}
