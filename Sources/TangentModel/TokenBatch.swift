/// Texts as token ids, packed one after another without padding.
///
/// `ids[offsets[b] ..< offsets[b+1]]` are text b's tokens and `positions` their
/// positions in the (conceptually padded) input. Tokens equal to the pad id are
/// dropped on construction, which is exactly what the spec's padding mask does.
public struct TokenBatch: Sendable, Equatable {
    public private(set) var ids: [Int32] = []
    public private(set) var positions: [Int32] = []
    public private(set) var offsets: [Int] = [0]

    /// Number of texts.
    public var count: Int { offsets.count - 1 }
    /// Number of (unmasked) tokens over all texts.
    public var tokenCount: Int { ids.count }
    /// Token range of each text.
    public var ranges: [Range<Int>] { (0..<count).map { offsets[$0]..<offsets[$0 + 1] } }

    /// Packs `sequences` (each as the model sees it, BOS first), dropping pad tokens.
    public init(sequences: [[Int32]], padID: Int32 = 0) {
        for s in sequences {
            for (pos, id) in s.enumerated() where id != padID {
                ids.append(id)
                positions.append(Int32(pos))
            }
            offsets.append(ids.count)
        }
    }

    private init(ids: [Int32], positions: [Int32], offsets: [Int]) {
        self.ids = ids
        self.positions = positions
        self.offsets = offsets
    }

    /// Texts `range` as their own batch.
    public func slice(_ range: Range<Int>) -> TokenBatch {
        let lo = offsets[range.lowerBound]
        let hi = offsets[range.upperBound]
        return TokenBatch(
            ids: Array(ids[lo..<hi]), positions: Array(positions[lo..<hi]),
            offsets: offsets[range.lowerBound...range.upperBound].map { $0 - lo })
    }

    /// Checks every id and position against the model; the message names the text and token.
    public func validate(for config: ModelConfig) throws {
        for b in 0..<count {
            guard offsets[b + 1] > offsets[b] else { throw ModelError("text \(b) has no tokens") }
            for t in offsets[b]..<offsets[b + 1] {
                guard ids[t] >= 0, Int(ids[t]) < config.vocabSize else {
                    throw ModelError(
                        "text \(b): token id \(ids[t]) is outside the vocabulary of \(config.vocabSize); the tokenizer does not match the model"
                    )
                }
                guard Int(positions[t]) < config.maxLen else {
                    throw ModelError("text \(b): position \(positions[t]) exceeds max_len \(config.maxLen)")
                }
            }
        }
    }
}
