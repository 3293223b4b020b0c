import Foundation

/// Architecture of a `TransformerClassifier`, stored as `config.json`. Coding keys are
/// the checkpoint's keys (model-format spec). Extra keys in the file are ignored.
public struct ModelConfig: Codable, Sendable, Equatable {
    public enum Pooling: String, Codable, Sendable, CaseIterable { case mean, cls }

    public var architecture: String = "TransformerClassifier"
    public var vocabSize: Int
    public var maxLen: Int
    public var dModel: Int
    public var nHeads: Int
    public var nLayers: Int
    public var dFF: Int
    public var nClasses: Int
    public var padID: Int = 0
    public var bosID: Int = 2
    public var normEps: Double = 1e-5
    public var activation: String = "gelu"
    public var pooling: Pooling = .mean

    enum CodingKeys: String, CodingKey {
        case architecture
        case vocabSize = "vocab_size", maxLen = "max_len", dModel = "d_model", nHeads = "n_heads"
        case nLayers = "n_layers", dFF = "d_ff", nClasses = "n_classes", padID = "pad_id", bosID = "bos_id"
        case normEps = "norm_eps", activation, pooling
    }

    public init(vocabSize: Int, maxLen: Int, dModel: Int, nHeads: Int, nLayers: Int, dFF: Int,
                nClasses: Int, pooling: Pooling = .mean) {
        self.vocabSize = vocabSize
        self.maxLen = maxLen
        self.dModel = dModel
        self.nHeads = nHeads
        self.nLayers = nLayers
        self.dFF = dFF
        self.nClasses = nClasses
        self.pooling = pooling
    }

    /// Width of one attention head.
    public var dHead: Int { dModel / nHeads }

    /// Checks that the numbers describe a model this toolkit can run; the message names the field.
    public func validate() throws {
        func fail(_ m: String) -> ModelError { ModelError("config: \(m)") }
        guard architecture == "TransformerClassifier" else { throw fail("architecture '\(architecture)' is not TransformerClassifier") }
        guard vocabSize > max(padID, bosID) else { throw fail("vocab_size \(vocabSize) must exceed pad_id and bos_id") }
        guard maxLen >= 2 else { throw fail("max_len \(maxLen) must be at least 2") }
        guard dModel > 0, nHeads > 0, dModel % nHeads == 0 else { throw fail("d_model \(dModel) must be a positive multiple of n_heads \(nHeads)") }
        guard nLayers >= 0 else { throw fail("n_layers must be non-negative") }
        guard dFF > 0 else { throw fail("d_ff must be positive") }
        guard nClasses >= 2 else { throw fail("n_classes \(nClasses) must be at least 2") }
        guard activation == "gelu" else { throw fail("activation '\(activation)' is not supported (only exact gelu)") }
        guard normEps > 0 else { throw fail("norm_eps must be positive") }
    }
}

/// A model file, configuration or input that cannot be used; the message says which and why.
public struct ModelError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
