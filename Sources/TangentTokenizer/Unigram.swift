import Foundation

/// The Unigram model of the `tokenizers` library, as transformers 5 runs it for ALBERT
/// (and DeBERTa-v2/v3): the best segmentation of a pre-tokenized word by the sum of its
/// pieces' scores (Viterbi), a character no piece starts with scored `min score - 10` as
/// unknown, consecutive unknowns fused into one.
public struct UnigramModel: Sendable {
    /// Pieces and their scores, in id order.
    public let pieces: [String]
    public let scores: [Double]
    /// The id of the unknown piece.
    public let unknownID: Int32
    /// Piece to id (a piece listed twice keeps its last id, as `tokenizers` does).
    public let index: [String: Int32]
    /// The longest piece, in Unicode scalars (what `tokenizers` calls chars).
    let longest: Int
    /// The score of an unknown character.
    let unknownScore: Double

    /// A model of `pieces` (piece, score) with `unknownID`; errors name `source`.
    public init(pieces: [(String, Double)], unknownID unk: Int, source: String) throws {
        guard !pieces.isEmpty, pieces.count <= 1 << 24 else { throw TokenizerError("\(source): a Unigram model needs 1 to 2^24 pieces") }
        guard pieces.indices.contains(unk) else {
            throw TokenizerError("\(source): 'unk_id' \(unk) is outside the \(pieces.count) pieces")
        }
        if let bad = pieces.firstIndex(where: { !$0.1.isFinite }) { throw TokenizerError("\(source): piece \(bad) has a score that is not a number") }
        self.pieces = pieces.map(\.0)
        scores = pieces.map(\.1)
        unknownID = Int32(unk)
        var index: [String: Int32] = [:]
        for (i, p) in pieces.enumerated() where !p.0.isEmpty { index[p.0] = Int32(i) }
        self.index = index
        longest = pieces.map { $0.0.unicodeScalars.count }.max() ?? 1
        unknownScore = (scores.min() ?? 0) - 10
    }

    /// The ids of one word (already normalized and pre-tokenized).
    public func ids(_ word: String) -> [Int32] {
        let s = Array(word.unicodeScalars)
        let n = s.count
        guard n > 0 else { return [] }
        // best[i]: the best path over s[0..<i]: its score, where its last piece starts, its id.
        var score = [Double](repeating: 0, count: n + 1)
        var start = [Int](repeating: -1, count: n + 1)
        var id = [Int32](repeating: 0, count: n + 1)
        func offer(_ end: Int, _ from: Int, _ candidate: Double, _ piece: Int32) {
            // Strictly better replaces: ties keep the first found, as `tokenizers`.
            if start[end] < 0 || candidate > score[end] {
                score[end] = candidate
                start[end] = from
                id[end] = piece
            }
        }
        var key = String.UnicodeScalarView()
        for i in 0..<n where i == 0 || start[i] >= 0 {
            let here = score[i]
            var single = false
            key.removeAll(keepingCapacity: true)
            for len in 1...min(longest, n - i) {
                key.append(s[i + len - 1])
                guard let p = index[String(key)] else { continue }
                offer(i + len, i, here + scores[Int(p)], p)
                if len == 1 { single = true }
            }
            if !single { offer(i + 1, i, here + unknownScore, unknownID) }
        }
        // Back from the end; unknown stretches fused, then looked up as one piece.
        var out: [Int32] = []
        var end = n
        var fusedFrom: Int?, fusedTo = 0
        func flush() {
            if let f = fusedFrom { out.append(index[String(String.UnicodeScalarView(s[f..<fusedTo]))] ?? unknownID) }
            fusedFrom = nil
        }
        while end > 0 {
            let from = start[end]
            if id[end] == unknownID {
                if fusedFrom == nil { fusedTo = end }
                fusedFrom = from
            } else {
                flush()
                out.append(index[String(String.UnicodeScalarView(s[from..<end]))] ?? unknownID)
            }
            end = from
        }
        flush()
        return out.reversed()
    }
}

/// A SentencePiece-style tokenizer as `tokenizers` assembles it for ALBERT: a sequence of
/// normalizers (literal replacements, NFKD with combining marks removed, lowercasing per
/// character, SentencePiece's precompiled table), whitespace splitting, `▁` before each
/// word (Metaspace), and a Unigram model per word.
public struct MetaspaceUnigram {
    public let model: UnigramModel
    /// Literal replacements, in order, before anything else (ALBERT's ``` `` ``` and `''` to `"`).
    public let replacements: [(String, String)]
    /// NFKD, then combining marks removed (`keep_accents` false).
    public let stripAccents: Bool
    /// Each character lowercased (`do_lower_case`).
    public let lowercase: Bool
    /// SentencePiece's precompiled normalization table, applied last (the `Precompiled`
    /// normalizer), through the SentencePiece library.
    public let charsmap: Data?
    let normalizer: Tokenizer?
    /// Whether each word gets `▁` in front (Metaspace `prepend_scheme` `always`; `never` otherwise).
    public let prependSpace: Bool

    public init(model: UnigramModel, replacements: [(String, String)], stripAccents: Bool, lowercase: Bool, charsmap: Data?,
                prependSpace: Bool, source: String) throws {
        self.model = model
        self.replacements = replacements
        self.stripAccents = stripAccents
        self.lowercase = lowercase
        self.charsmap = charsmap
        self.prependSpace = prependSpace
        if let charsmap {
            // A model of two pieces (the library wants a normal one) whose normalizer is the
            // table alone: no prefix, spaces kept.
            let proto = TokenizerJSON.modelProto(pieces: [("<unk>", 0, 2), ("x", 0, 1)], charsmap: charsmap, layout: .normalizerOnly)
            normalizer = try Tokenizer(serializedModel: proto, source: source)
        } else {
            normalizer = nil
        }
    }

    /// The normalized text (before splitting into words).
    public func normalize(_ text: String) throws -> String {
        var t = text
        for (a, b) in replacements { t = t.replacingOccurrences(of: a, with: b) }
        if stripAccents {
            var out = String.UnicodeScalarView()
            for u in t.decomposedStringWithCompatibilityMapping.unicodeScalars {
                switch u.properties.generalCategory {
                case .nonspacingMark, .spacingMark, .enclosingMark: continue
                default: out.append(u)
                }
            }
            t = String(out)
        }
        if lowercase {
            // Character by character, without context (no final-sigma rule), as Rust's char::to_lowercase.
            var out = String.UnicodeScalarView()
            for u in t.unicodeScalars { out.append(contentsOf: u.properties.lowercaseMapping.unicodeScalars) }
            t = String(out)
        }
        if let normalizer { t = try normalizer.normalized(t) }
        return t
    }

    /// The ids of `text` (no framing).
    public func ids(_ text: String) throws -> [Int32] {
        var out: [Int32] = []
        let words = try normalize(text).unicodeScalars.split(whereSeparator: { $0.properties.isWhitespace })
        for w in words {
            var word = String(String.UnicodeScalarView(w))
            if prependSpace, !word.hasPrefix("▁") { word = "▁" + word }
            // Metaspace splits before each `▁`, keeping it with what follows.
            var piece = String.UnicodeScalarView()
            for u in word.unicodeScalars {
                if u == "▁", !piece.isEmpty {
                    out += model.ids(String(piece))
                    piece.removeAll()
                }
                piece.append(u)
            }
            out += model.ids(String(piece))
        }
        return out
    }

    /// Bytes that identify it: pieces, scores, settings and table.
    public var identity: Data {
        var d = Data((["metaspace-unigram", "unk \(model.unknownID)", "accents \(stripAccents)", "lower \(lowercase)", "prefix \(prependSpace)"]
                      + replacements.map { "replace \($0.0) \($0.1)" }).joined(separator: "\n").utf8)
        for (p, s) in zip(model.pieces, model.scores) { d += Data("\n\(p)\t\(s)".utf8) }
        if let charsmap { d += Data("\ncharsmap\n".utf8) + charsmap }
        return d
    }
}
