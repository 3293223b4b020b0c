import Foundation
import TangentIO
import TangentTensor

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
        case vocabSize = "vocab_size"
        case maxLen = "max_len"
        case dModel = "d_model"
        case nHeads = "n_heads"
        case nLayers = "n_layers"
        case dFF = "d_ff"
        case nClasses = "n_classes"
        case padID = "pad_id"
        case bosID = "bos_id"
        case normEps = "norm_eps"
        case activation, pooling
    }

    public init(
        vocabSize: Int, maxLen: Int, dModel: Int, nHeads: Int, nLayers: Int, dFF: Int,
        nClasses: Int, pooling: Pooling = .mean
    ) {
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

    /// Parameters of the architecture, counted in Double so that an absurd configuration
    /// (d_model 2^62) gives a huge number instead of an overflow trap.
    public var parameterEstimate: Double {
        let V = Double(vocabSize)
        let T = Double(maxLen)
        let D = Double(dModel)
        let F = Double(dFF)
        let L = Double(nLayers)
        let C = Double(nClasses)
        return V * D + T * D + L * (4 * D * D + 2 * D * F + 9 * D + F) + 2 * D + C * D + C
    }

    /// Bytes of activations one text of max_len tokens keeps for the backward pass, roughly:
    /// per block the residual stream, normalizations, q/k/v, attention probabilities and
    /// the feed-forward hidden layer.
    public var activationBytesPerText: Double {
        let T = Double(maxLen)
        let D = Double(dModel)
        let F = Double(dFF)
        let L = Double(nLayers)
        let H = Double(nHeads)
        return 4 * T * (L * (12 * D + 2 * F + H * T) + 4 * D)
    }

    /// Bytes that training with `batch` texts per step holds at least: parameters,
    /// gradients and AdamW's two moments, plus one batch's activations.
    public func trainingBytes(batch: Int) -> Double {
        4 * 4 * parameterEstimate + Double(batch) * activationBytesPerText
    }

    /// The largest value any size field may take: sizes are multiplied together and
    /// converted to 32-bit token ids, so each stays far below Int32's range.
    public static let maximumDimension = 1 << 24

    /// Checks that the numbers describe a model this toolkit can run, and that it fits in
    /// `memory` bytes (the machine's, by default); the message names the field and size.
    public func validate(memory: UInt64 = ProcessInfo.processInfo.physicalMemory) throws {
        func fail(_ m: String) -> ModelError { ModelError("config: \(m)") }
        let limit = ModelConfig.maximumDimension
        for (name, value) in [
            ("vocab_size", vocabSize), ("max_len", maxLen), ("d_model", dModel), ("n_heads", nHeads),
            ("n_layers", nLayers), ("d_ff", dFF), ("n_classes", nClasses), ("pad_id", padID), ("bos_id", bosID),
        ]
        where value > limit || value < 0 {
            throw fail("\(name) \(value) is outside 0...\(limit)")
        }
        guard architecture == "TransformerClassifier" else {
            throw fail("architecture '\(architecture)' is not TransformerClassifier")
        }
        guard vocabSize > max(padID, bosID) else { throw fail("vocab_size \(vocabSize) must exceed pad_id and bos_id") }
        guard maxLen >= 2 else { throw fail("max_len \(maxLen) must be at least 2") }
        guard dModel > 0, nHeads > 0, dModel % nHeads == 0 else {
            throw fail("d_model \(dModel) must be a positive multiple of n_heads \(nHeads)")
        }
        guard nLayers >= 0 else { throw fail("n_layers must be non-negative") }
        guard dFF > 0 else { throw fail("d_ff must be positive") }
        guard nClasses >= 2 else { throw fail("n_classes \(nClasses) must be at least 2") }
        guard activation == "gelu" else { throw fail("activation '\(activation)' is not supported (only exact gelu)") }
        guard normEps > 0, normEps.isFinite else { throw fail("norm_eps must be positive") }
        // The weights in Float, twice (model and a loading buffer), must fit in memory.
        let weights = 8 * parameterEstimate
        guard weights < Double(memory) * 0.8 else {
            throw fail(
                String(
                    format:
                        "vocab_size %ld, max_len %ld, d_model %ld, n_layers %ld, d_ff %ld make %.3g parameters (%@ of weights), which do not fit in this machine's %@ of memory",
                    vocabSize, maxLen, dModel, nLayers, dFF, parameterEstimate, ByteSize.describe(weights),
                    ByteSize.describe(Double(memory))))
        }
    }

    /// Refuses a training batch whose parameters, optimizer state and activations need more
    /// than 80% of `memory`; `option` names the setting at fault.
    public func checkTraining(
        batch: Int, memory: UInt64 = ProcessInfo.processInfo.physicalMemory, option: String = "--batch-size"
    ) throws {
        let need = trainingBytes(batch: batch)
        guard need < Double(memory) * 0.8 else {
            throw ModelError(
                String(
                    format:
                        "%@ %ld: training batches of %ld texts of up to %ld tokens would need about %@ (parameters, optimizer state and one batch's activations), more than this machine's %@ allows; lower %@ or max_len",
                    option, batch, batch, maxLen, ByteSize.describe(need), ByteSize.describe(Double(memory)), option))
        }
    }
}

/// A model file, configuration or input that cannot be used; the message says which and why.
public struct ModelError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
