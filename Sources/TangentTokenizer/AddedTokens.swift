import Foundation

/// Tokens matched in the raw text before any normalization, as the `tokenizers` library
/// behind `transformers` matches its added and special tokens (`[CLS]`, `<mask>`, ...):
/// leftmost match first, the longest of those starting at one place. The text between
/// matches is tokenized on its own, each stretch as a whole text (so a SentencePiece
/// stretch gets its own word-start mark). A token with `lstrip` (`rstrip`) takes the
/// whitespace before (after) it with it, as RoBERTa's `<mask>` does.
public struct AddedTokens: Sendable, Equatable {
    /// Each token's UTF-8 bytes, id and whitespace stripping, in the order given.
    public let tokens: [(bytes: [UInt8], id: Int32, lstrip: Bool, rstrip: Bool)]

    /// A stretch of text to tokenize, or a matched token's id.
    public enum Piece: Equatable, Sendable {
        case text(String)
        case token(Int32)
    }

    /// `tokens`: content and id; empty contents are ignored.
    public init(_ tokens: [(content: String, id: Int32)]) {
        self.init(stripping: tokens.map { ($0.content, $0.id, false, false) })
    }

    /// `tokens` with their `lstrip` and `rstrip` flags.
    public init(stripping tokens: [(content: String, id: Int32, lstrip: Bool, rstrip: Bool)]) {
        self.tokens = tokens.filter { !$0.content.isEmpty }.map {
            (Array($0.content.utf8), $0.id, $0.lstrip, $0.rstrip)
        }
    }

    public static func == (a: AddedTokens, b: AddedTokens) -> Bool {
        a.tokens.count == b.tokens.count
            && zip(a.tokens, b.tokens).allSatisfy {
                $0.bytes == $1.bytes && $0.id == $1.id && $0.lstrip == $1.lstrip && $0.rstrip == $1.rstrip
            }
    }

    /// `text` cut at every match; stretches between matches are kept as they are.
    public func split(_ text: String) -> [Piece] {
        guard !tokens.isEmpty else { return [.text(text)] }
        let bytes = Array(text.utf8)
        var out: [Piece] = []
        var start = 0
        var i = 0
        while i < bytes.count {
            var best: (length: Int, id: Int32, lstrip: Bool, rstrip: Bool)?
            for t in tokens
            where t.bytes.count > (best?.length ?? 0) && i + t.bytes.count <= bytes.count && t.bytes[0] == bytes[i] {
                if bytes[i..<(i + t.bytes.count)].elementsEqual(t.bytes) {
                    best = (t.bytes.count, t.id, t.lstrip, t.rstrip)
                }
            }
            guard let best else {
                i += 1
                continue
            }
            // Matches start and end on whole characters (every token is valid UTF-8), so
            // the stretches between them are too.
            var before = String(decoding: bytes[start..<i], as: UTF8.self)
            if best.lstrip {
                before = String(
                    String.UnicodeScalarView(
                        before.unicodeScalars.reversed().drop { $0.properties.isWhitespace }.reversed()))
            }
            if !before.isEmpty { out.append(.text(before)) }
            out.append(.token(best.id))
            i += best.length
            if best.rstrip {
                let rest = String(decoding: bytes[i...], as: UTF8.self)
                let skipped = rest.unicodeScalars.prefix { $0.properties.isWhitespace }
                i += String(String.UnicodeScalarView(skipped)).utf8.count
            }
            start = i
        }
        if start < bytes.count || out.isEmpty { out.append(.text(String(decoding: bytes[start...], as: UTF8.self))) }
        return out
    }

    /// Bytes that identify the set (feature and cache fingerprints).
    public var identity: Data {
        Data(
            tokens.map {
                "\($0.id)\u{1F}" + String(decoding: $0.bytes, as: UTF8.self) + ($0.lstrip ? "\u{1F}l" : "")
                    + ($0.rstrip ? "\u{1F}r" : "")
            }
            .joined(separator: "\u{1E}").utf8)
    }
}
