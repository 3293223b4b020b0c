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
        guard !pieces.isEmpty, pieces.count <= 1 << 24 else {
            throw TokenizerError("\(source): a Unigram model needs 1 to 2^24 pieces")
        }
        guard pieces.indices.contains(unk) else {
            throw TokenizerError("\(source): 'unk_id' \(unk) is outside the \(pieces.count) pieces")
        }
        if let bad = pieces.firstIndex(where: { !$0.1.isFinite }) {
            throw TokenizerError("\(source): piece \(bad) has a score that is not a number")
        }
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
        var fusedFrom: Int?
        var fusedTo = 0
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

/// A SentencePiece-style tokenizer as `tokenizers` assembles it for ALBERT and
/// DeBERTa-v2/v3: a sequence of normalizers, then (ALBERT) whitespace splitting, `▁` in
/// place of spaces and before the text or each word (Metaspace), and a Unigram model per
/// piece between `▁`s. Added tokens matched after normalization (`normalized: true`, as
/// DeBERTa's `[UNK]`) are split off the normalized text.
public struct MetaspaceUnigram {
    /// One normalizer of the sequence, applied in order.
    public enum Step: Equatable, Sendable {
        /// A literal replacement (ALBERT's ``` `` ``` and `''` to `"`).
        case replace(String, String)
        /// NFKD, then combining marks removed (ALBERT unless `keep_accents`).
        case stripAccents
        /// Each character lowercased, without context (Rust's `char::to_lowercase`).
        case lowercase
        /// SentencePiece's precompiled table (the `Precompiled` normalizer), through the library.
        case precompiled
        /// Trailing whitespace removed (`Strip(left: false, right: true)`).
        case stripRight
        /// Runs of two or more spaces made one (`Replace(Regex(" {2,}"), " ")`).
        case collapseSpaces
        /// Runs of whitespace and single newlines, returns and tabs made one space
        /// (`Replace(Regex("\\s{2,}|[\\n\\r\\t]"), " ")`).
        case collapseWhitespace
        /// Canonical composition.
        case nfc
    }
    /// When `▁` goes in front (Metaspace's `prepend_scheme`).
    public enum Prepend: String, Sendable { case always, first, never }

    public let model: UnigramModel
    public let steps: [Step]
    /// The table of `.precompiled`.
    public let charsmap: Data?
    let normalizer: Tokenizer?
    /// Whether the text is split at whitespace before Metaspace (ALBERT's WhitespaceSplit).
    public let splitWhitespace: Bool
    public let prepend: Prepend
    /// Added tokens matched in the normalized text.
    public let normalizedTokens: AddedTokens

    public init(
        model: UnigramModel, steps: [Step], charsmap: Data?, splitWhitespace: Bool, prepend: Prepend,
        normalizedTokens: AddedTokens = AddedTokens([]), source: String
    ) throws {
        self.model = model
        self.steps = steps
        self.charsmap = charsmap
        self.splitWhitespace = splitWhitespace
        self.prepend = prepend
        self.normalizedTokens = normalizedTokens
        if steps.contains(.precompiled) {
            guard let charsmap else { throw TokenizerError("\(source): a Precompiled normalizer without its table") }
            // A model of two pieces (the library wants a normal one) whose normalizer is the
            // table alone: no prefix, spaces kept.
            let proto = TokenizerJSON.modelProto(
                pieces: [("<unk>", 0, 2), ("x", 0, 1)], charsmap: charsmap, layout: .normalizerOnly)
            normalizer = try Tokenizer(serializedModel: proto, source: source)
        } else {
            normalizer = nil
        }
    }

    static func isWhitespace(_ u: Unicode.Scalar) -> Bool { u.properties.isWhitespace }

    /// The normalized text.
    public func normalize(_ text: String) throws -> String {
        var t = text
        for step in steps {
            switch step {
            case .replace(let a, let b): t = t.replacingOccurrences(of: a, with: b)
            case .stripAccents:
                var out = String.UnicodeScalarView()
                for u in t.decomposedStringWithCompatibilityMapping.unicodeScalars {
                    switch u.properties.generalCategory {
                    case .nonspacingMark, .spacingMark, .enclosingMark: continue
                    default: out.append(u)
                    }
                }
                t = String(out)
            case .lowercase:
                var out = String.UnicodeScalarView()
                for u in t.unicodeScalars { out.append(contentsOf: u.properties.lowercaseMapping.unicodeScalars) }
                t = String(out)
            case .precompiled: t = try normalizer!.normalized(t)
            case .stripRight:
                var u = Array(t.unicodeScalars)
                while let last = u.last, Self.isWhitespace(last) { u.removeLast() }
                t = String(String.UnicodeScalarView(u))
            case .collapseSpaces: t = collapse(t, run: { $0 == " " }, single: { _ in false })
            case .collapseWhitespace:
                t = collapse(t, run: Self.isWhitespace, single: { $0 == "\n" || $0 == "\r" || $0 == "\t" })
            case .nfc: t = t.precomposedStringWithCanonicalMapping
            }
        }
        return t
    }

    /// Runs of two or more scalars of `run`, and single scalars of `single`, each made one space.
    private func collapse(_ t: String, run: (Unicode.Scalar) -> Bool, single: (Unicode.Scalar) -> Bool) -> String {
        let u = Array(t.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < u.count {
            var j = i
            while j < u.count, run(u[j]) { j += 1 }
            if j - i >= 2 {
                out.append(" ")
                i = j
            } else {
                out.append(single(u[i]) ? " " : u[i])
                i += 1
            }
        }
        return String(out)
    }

    /// The ids of `text` (no framing); `atStart` when it begins the whole text (Metaspace's
    /// `first` scheme puts `▁` only there).
    public func ids(_ text: String, atStart: Bool = true) throws -> [Int32] {
        var out: [Int32] = []
        var first = atStart
        for part in normalizedTokens.split(try normalize(text)) {
            switch part {
            case .token(let id): out.append(id)
            case .text(let t):
                let chunks: [String] =
                    splitWhitespace
                    ? t.unicodeScalars.split(whereSeparator: Self.isWhitespace).map {
                        String(String.UnicodeScalarView($0))
                    } : [t]
                for chunk in chunks { out += metaspace(chunk, first: first) }
            }
            first = false
        }
        return out
    }

    /// Spaces as `▁`, `▁` in front as the scheme says, pieces split before each `▁`.
    private func metaspace(_ chunk: String, first: Bool) -> [Int32] {
        // Nothing is put in front of an empty text (a space that normalization stripped).
        if chunk.isEmpty { return [] }
        var word = chunk.replacingOccurrences(of: " ", with: "▁")
        if prepend == .always || (prepend == .first && first), !word.hasPrefix("▁") { word = "▁" + word }
        var out: [Int32] = []
        var piece = String.UnicodeScalarView()
        for u in word.unicodeScalars {
            if u == "▁", !piece.isEmpty {
                out += model.ids(String(piece))
                piece.removeAll()
            }
            piece.append(u)
        }
        return out + model.ids(String(piece))
    }

    /// Bytes that identify it: pieces, scores, settings and table.
    public var identity: Data {
        var d = Data(
            (["metaspace-unigram", "unk \(model.unknownID)", "split \(splitWhitespace)", "prepend \(prepend.rawValue)"]
                + steps.map { "\($0)" }).joined(separator: "\n").utf8)
        for (p, s) in zip(model.pieces, model.scores) { d += Data("\n\(p)\t\(s)".utf8) }
        if let charsmap { d += Data("\ncharsmap\n".utf8) + charsmap }
        if !normalizedTokens.tokens.isEmpty { d += Data("\nnormalized added\n".utf8) + normalizedTokens.identity }
        return d
    }
}
