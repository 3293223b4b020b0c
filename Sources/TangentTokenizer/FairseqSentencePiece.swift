import Foundation

/// XLM-R and CamemBERT tokenization from their `sentencepiece.bpe.model`, as
/// `transformers`' XLMRobertaTokenizer does: the model's normalization (by the
/// SentencePiece library), the unigram segmentation of highest score (`UnigramSegmenter`),
/// ids in fairseq's layout (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, every other piece its
/// SentencePiece id plus one, `<mask>` last), framed `<s> ... </s>` and truncated to
/// `maxLength`.
public struct FairseqSentencePiece {
    public let model: Tokenizer
    let segmenter: UnigramSegmenter
    public static let begin: Int32 = 0, padding: Int32 = 1, end: Int32 = 2, unknown: Int32 = 3

    /// `model` must have XLM-R's layout: `<unk>` 0, `<s>` 1, `</s>` 2.
    public init(model: Tokenizer) throws {
        guard model.unkID == 0, model.bosID == 1, model.eosID == 2 else {
            throw TokenizerError(
                "\(model.source): not in XLM-R's layout (unk_id \(model.unkID), bos_id \(model.bosID), eos_id \(model.eosID); expected 0, 1, 2), so fairseq's ids would be wrong"
            )
        }
        self.model = model
        let ids = (0..<Int32(model.vocabSize))
        segmenter = UnigramSegmenter(
            pieces: ids.map { model.isNormal($0) ? model.piece($0) : nil }, scores: ids.map(model.score),
            unknown: model.unkID)
    }

    /// Ids in the model's embedding table: fairseq's four, the pieces shifted by one, and `<mask>`.
    public var vocabSize: Int { model.vocabSize + 2 }
    public var mask: Int32 { Int32(model.vocabSize + 1) }

    public func encode(_ text: String, maxLength: Int = 512) throws -> [Int32] {
        [FairseqSentencePiece.begin] + (try ids(text)).prefix(max(0, maxLength - 2)) + [FairseqSentencePiece.end]
    }

    /// The fairseq ids of `text`'s pieces, unframed.
    public func ids(_ text: String) throws -> [Int32] {
        segmenter.segment(try model.normalized(text)).map { $0 == model.unkID ? FairseqSentencePiece.unknown : $0 + 1 }
    }
}

/// The unigram segmentation of highest total score of a normalized text, as the
/// `tokenizers` library (behind `transformers`) finds it: a lattice over characters,
/// each position reached by the best path so far, candidates taken by start position
/// and then by length, a later candidate winning only with a strictly higher score (so
/// of equal-scoring paths the one whose last piece starts earliest wins; the SentencePiece
/// C++ library of Debian breaks such ties otherwise). A character no piece covers is the
/// unknown piece, scored 10 below the lowest piece; consecutive unknown pieces fuse.
struct UnigramSegmenter {
    let ids: [String: Int32]
    let scores: [Double]
    let unknown: Int32
    let unknownScore: Double
    let longest: Int

    /// `pieces[i]`: id i's piece, nil for pieces that are never matched (control, unknown, unused).
    init(pieces: [String?], scores: [Float], unknown: Int32) {
        var ids: [String: Int32] = [:]
        for (i, p) in pieces.enumerated() { if let p, ids[p] == nil { ids[p] = Int32(i) } }
        self.ids = ids
        self.scores = scores.map(Double.init)
        self.unknown = unknown
        unknownScore = (scores.min().map(Double.init) ?? 0) - 10
        longest = ids.keys.map(\.unicodeScalars.count).max() ?? 1
    }

    func segment(_ text: String) -> [Int32] {
        let chars = Array(text.unicodeScalars)
        let n = chars.count
        guard n > 0 else { return [] }
        // best[e]: the best path's score to position e, the start of its last piece and that piece.
        var best = [(score: Double, start: Int, id: Int32)?](repeating: nil, count: n + 1)
        best[0] = (0, 0, -1)
        for start in 0..<n {
            guard let here = best[start]?.score else { continue }
            var single = false
            for length in 1...min(longest, n - start) {
                guard let id = ids[String(String.UnicodeScalarView(chars[start..<(start + length)]))] else { continue }
                let candidate = here + scores[Int(id)]
                if best[start + length] == nil || candidate > best[start + length]!.score {
                    best[start + length] = (candidate, start, id)
                }
                if length == 1 { single = true }
            }
            if !single {
                let candidate = here + unknownScore
                if best[start + 1] == nil || candidate > best[start + 1]!.score {
                    best[start + 1] = (candidate, start, unknown)
                }
            }
        }
        var out: [Int32] = []
        var end = n
        while end > 0, let node = best[end] {
            if !(node.id == unknown && out.last == unknown) { out.append(node.id) }
            end = node.start
        }
        return out.reversed()
    }
}
