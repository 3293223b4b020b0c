import Foundation

/// Tokens matched in the raw text before any normalization, as the `tokenizers` library
/// behind `transformers` matches its added and special tokens (`[CLS]`, `<mask>`, ...):
/// leftmost match first, the longest of those starting at one place. The text between
/// matches is tokenized on its own, each stretch as a whole text (so a SentencePiece
/// stretch gets its own word-start mark). `lstrip`/`rstrip` need no handling here: the
/// tokenizers that use this trim whitespace at the ends of every stretch anyway.
public struct AddedTokens: Sendable, Equatable {
    /// Each token's UTF-8 bytes and id, in the order given.
    public let tokens: [(bytes: [UInt8], id: Int32)]

    /// A stretch of text to tokenize, or a matched token's id.
    public enum Piece: Equatable, Sendable {
        case text(String)
        case token(Int32)
    }

    /// `tokens`: content and id; empty contents are ignored.
    public init(_ tokens: [(content: String, id: Int32)]) {
        self.tokens = tokens.filter { !$0.content.isEmpty }.map { (Array($0.content.utf8), $0.id) }
    }

    public static func == (a: AddedTokens, b: AddedTokens) -> Bool {
        a.tokens.count == b.tokens.count && zip(a.tokens, b.tokens).allSatisfy { $0.bytes == $1.bytes && $0.id == $1.id }
    }

    /// `text` cut at every match; stretches between matches are kept as they are.
    public func split(_ text: String) -> [Piece] {
        guard !tokens.isEmpty else { return [.text(text)] }
        let bytes = Array(text.utf8)
        var out: [Piece] = []
        var start = 0, i = 0
        while i < bytes.count {
            var best: (length: Int, id: Int32)?
            for t in tokens where t.bytes.count > (best?.length ?? 0) && i + t.bytes.count <= bytes.count && t.bytes[0] == bytes[i] {
                if bytes[i..<(i + t.bytes.count)].elementsEqual(t.bytes) { best = (t.bytes.count, t.id) }
            }
            guard let best else { i += 1; continue }
            // Matches start and end on whole characters (every token is valid UTF-8), so
            // the stretches between them are too.
            if i > start { out.append(.text(String(decoding: bytes[start..<i], as: UTF8.self))) }
            out.append(.token(best.id))
            i += best.length
            start = i
        }
        if start < bytes.count || out.isEmpty { out.append(.text(String(decoding: bytes[start...], as: UTF8.self))) }
        return out
    }

    /// Bytes that identify the set (feature and cache fingerprints).
    public var identity: Data {
        Data(tokens.map { "\($0.id)\u{1F}" + String(decoding: $0.bytes, as: UTF8.self) }.joined(separator: "\u{1E}").utf8)
    }
}
