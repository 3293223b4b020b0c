import Foundation

/// One training text's attribution to a prediction.
public struct AttributedText: Sendable, Codable {
    /// Index in the training file's order, and its line.
    public let index: Int
    public let line: Int
    public let text: String
    public let label: String
    /// W[c, i] * K(x, x_i) for the predicted class c.
    public let score: Double
    /// K(x, x_i).
    public let kernel: Double
    /// Each layer group's part of the exact per-layer NTK between x and x_i, signed, as a
    /// share of the sum of the parts' absolute values (so the shares' magnitudes add to 1
    /// and stay readable when parts cancel), when the kernel is an NTK.
    public let layerShares: [String: Double]?

    public init(
        index: Int, line: Int, text: String, label: String, score: Double, kernel: Double,
        layerShares: [String: Double]?
    ) {
        self.index = index
        self.line = line
        self.text = text
        self.label = label
        self.score = score
        self.kernel = kernel
        self.layerShares = layerShares
    }

    /// Signed shares of the sum of absolute values (all 0 when every part is 0).
    package static func shares(_ parts: [(String, Double)]) -> [String: Double] {
        let scale = parts.reduce(0) { $0 + abs($1.1) }
        return Dictionary(uniqueKeysWithValues: parts.map { ($0.0, scale == 0 ? 0 : $0.1 / scale) })
    }
}

/// Why the model predicted what it did, in terms of training texts.
public struct Explanation: Sendable, Codable {
    public let text: String
    public let label: String
    public let probability: Double
    /// The surrogate's probability of the same class.
    public let surrogateProbability: Double
    public let proponents: [AttributedText]
    public let opponents: [AttributedText]
}
