import Foundation
import TangentTensor

/// The sizes that code outside a model needs to know about it.
public struct ModelShape: Sendable, Equatable {
    /// Classes (logits per text).
    public let classes: Int
    /// Width of the pooled embedding e(x).
    public let width: Int
    /// Width of a token row at the embedding output (the token table's rows): `width`,
    /// except in factorized embeddings (ELECTRA, ALBERT), narrower than the layers.
    public let tokenWidth: Int
    /// The longest text the model takes, in tokens (framing included).
    public let maxTokens: Int
    /// The id that `TokenBatch` drops as padding.
    public let padID: Int32

    public init(classes: Int, width: Int, maxTokens: Int, padID: Int32, tokenWidth: Int? = nil) {
        self.classes = classes
        self.width = width
        self.tokenWidth = tokenWidth ?? width
        self.maxTokens = maxTokens
        self.padID = padID
    }
}

/// A text classifier with a hand-written backward pass: what the gradient computer,
/// featurizer, trainer and attribution methods use, whatever the architecture.
///
/// Use: `forward` on a batch, then any number of backward calls with seeds on the
/// logits of that forward pass (seed[b, c] weighs text b's logit c). One call at a time
/// per instance. All parameters live in one flat vector in `layout` order; gradients
/// use the same layout.
///
/// The token table (`tokenTableIndex`) is large and sparse per text: per-example calls
/// never materialize it and return instead the gradient at each token's row of the
/// table (`embeddingRows`, N x width in packed token order), which callers scatter to
/// the rows of the tokens' ids.
public protocol ClassifierModel<Scalar>: AnyObject {
    associatedtype Scalar: BLASScalar
    /// The architecture's name as the registry knows it.
    var architecture: String { get }
    var shape: ModelShape { get }
    /// Bytes that describe the architecture and its settings (not the weights), for
    /// fingerprints of what the model computes.
    var configurationData: Data { get }
    var layout: ParameterLayout { get }
    /// All parameters, flat, in `layout` order.
    var parameters: UnsafeMutableBufferPointer<Scalar> { get }
    /// Number of shards (threads) a batch is split into.
    var threads: Int { get }
    /// The tensor whose per-text gradient is returned as token rows.
    var tokenTableIndex: Int { get }
    /// The order in which the streaming `perExampleGradients` hands a text's tensors to
    /// its sink (the token table excluded).
    var streamingOrder: [Int] { get }

    /// Runs the forward pass, keeping what the backward calls need, and returns logits
    /// [B, C] row-major. With `rowInvariant`, a text's logits, embeddings and gradients
    /// are the same bits whatever batch or thread count computes them. `dropout` is for
    /// training.
    func forward(_ batch: TokenBatch, dropout: DropoutConfig?, rowInvariant: Bool) throws -> [Scalar]
    /// Pooled embeddings e(x) [B, width] of the last forward pass: the classifier's input.
    func lastEmbeddings() -> [Scalar]
    /// Adds the gradient of sum_b,c seed[b,c] * logits[b,c] into `gradient` (layout order).
    func backward(seed: [Scalar], into gradient: UnsafeMutableBufferPointer<Scalar>)
    /// Per text b, the gradient over `subset` (compact layout) into
    /// `output[b * subset.count ..< (b+1) * subset.count]`, and the token rows if asked.
    func perExampleGradients(
        seed: [Scalar], subset: ParameterSubset, into output: UnsafeMutableBufferPointer<Scalar>,
        embeddingRows: UnsafeMutableBufferPointer<Scalar>?)
    /// The streaming form: `sink(tensor, text, gradient)` gets each tensor's gradient per
    /// text (valid during the call) in `streamingOrder`; texts may run concurrently.
    func perExampleGradients(
        seed: [Scalar], subset: ParameterSubset, embeddingRows: UnsafeMutableBufferPointer<Scalar>?,
        sink: (_ tensor: Int, _ text: Int, _ gradient: UnsafePointer<Scalar>) -> Void)
    /// One backward pass of sum_b,c seed[b,c] logits[b,c] that hands each linear layer
    /// whose weight is in `subset` to `visit` (`LinearRows`: the layer's inputs and output
    /// gradients per text, `firstText` the index of the rows' first text in the batch)
    /// instead of forming parameter gradients; calls from different shards may run
    /// concurrently. What EK-FAC's factors are computed from.
    func linearRows(
        seed: [Scalar], subset: ParameterSubset, visit: (_ rows: LinearRows<Scalar>, _ firstText: Int) -> Void)
    /// Bytes of activations one text of the longest length holds in a pass (an upper bound:
    /// what training keeps for the backward pass).
    var activationBytesPerText: Double { get }
    /// Frees the activations and scratch of past passes (see `ShardedPasses.releaseScratch`);
    /// a backward call needs a forward pass after it.
    func releaseScratch()
    /// Throws, saying the size, when training on batches of `batch` texts would not fit
    /// in this machine's memory (checked before anything is allocated).
    func checkTraining(batch: Int) throws
    /// Writes the directory's description of the model beside its weights: `config.json`
    /// (its architecture, `labels`, and the `extra` keys of the run that trained it) and
    /// any label file the architecture keeps; atomically, file by file.
    func saveConfiguration(labels: [String], extra: [String: Any], into directory: URL) throws
    /// A model of the same architecture and sizes with every parameter zero.
    func emptyCopy(threads: Int) throws -> Self
}

extension ClassifierModel {
    /// Bytes of activations a prediction batch may hold: `logits(sequences:)` takes fewer
    /// texts per batch than asked when they would need more.
    public static var predictionBudget: Double { 512 * 1_048_576 }

    @discardableResult
    public func forward(_ batch: TokenBatch, rowInvariant: Bool = false) throws -> [Scalar] {
        try forward(batch, dropout: nil, rowInvariant: rowInvariant)
    }

    /// Logits [count, C] of token sequences, in batches of at most `batchSize` (fewer when a
    /// batch's activations would exceed `predictionBudget`): the network's one prediction
    /// path (`Classifier.logits`, `predict`, `evaluate` and the trainer's test pass).
    /// Row-invariant, so a text's logits are the same bits whichever texts share its batch,
    /// and the same as the featurizer and gradient computer store. `check(logits, first)`
    /// sees each batch's logits (its first text's index) before they are kept. The
    /// activations are freed at the end (`releaseScratch`): `lastEmbeddings` and `backward`
    /// need a `forward` after it.
    public func logits(
        sequences: [[Int32]], batchSize: Int = 256,
        check: (_ logits: [Scalar], _ first: Int) throws -> Void = { _, _ in }
    ) throws -> [Scalar] {
        precondition(batchSize >= 1, "batch size must be positive")
        defer { releaseScratch() }
        let step = min(batchSize, max(1, Int(Self.predictionBudget / max(1, activationBytesPerText))))
        var out: [Scalar] = []
        out.reserveCapacity(sequences.count * shape.classes)
        var start = 0
        while start < sequences.count {
            let end = min(sequences.count, start + step)
            let z = try forward(
                TokenBatch(sequences: Array(sequences[start..<end]), padID: shape.padID), rowInvariant: true)
            try check(z, start)
            out += z
            start = end
        }
        return out
    }

    public func perExampleGradients(
        seed: [Scalar], subset: ParameterSubset, into output: UnsafeMutableBufferPointer<Scalar>
    ) {
        perExampleGradients(seed: seed, subset: subset, into: output, embeddingRows: nil)
    }

    /// Copies `values` (in layout order) into the parameters.
    public func setParameters(_ values: [Scalar]) {
        precondition(values.count == layout.count, "expected \(layout.count) parameters, got \(values.count)")
        _ = parameters.update(fromContentsOf: values)
    }

    /// The parameters as an array.
    public var parameterArray: [Scalar] { Array(parameters) }
}
