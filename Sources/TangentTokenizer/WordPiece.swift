import Foundation
import TangentIO

/// BERT's WordPiece tokenizer, as `transformers` (its `tokenizers` backend) tokenizes:
/// the BERT normalizer, the BERT pre-tokenizer, greedy longest-match-first word pieces
/// with `##` continuations, and `[CLS] ... [SEP]` framing.
///
/// Normalization, in the backend's order: drop NUL, U+FFFD and control characters and
/// turn whitespace into spaces; put spaces around CJK ideographs; strip accents (NFD,
/// then drop nonspacing marks) when `stripAccents`, which defaults to `lowercase`; then
/// lower-case character by character. Pre-tokenization splits on whitespace (dropped)
/// and isolates every punctuation character (Unicode P*, and ASCII symbols). A word of
/// more than `maxInputCharacters` characters, or one that does not split into vocabulary
/// pieces, is `[UNK]`.
public struct WordPieceTokenizer: Sendable {
    /// Piece to id, in `vocab.txt` order.
    public let vocabulary: [String: Int32]
    public let pieces: [String]
    public let lowercase: Bool
    public let stripAccents: Bool
    public let splitChinese: Bool
    public let maxInputCharacters = 100
    public let unknown: Int32, classifier: Int32, separator: Int32, padding: Int32
    /// Where the vocabulary came from (errors name it).
    public let source: String

    /// Reads `vocab.txt` (one piece per line, id = line number from 0) and, when given,
    /// `tokenizer_config.json` (`do_lower_case`, `strip_accents`, `tokenize_chinese_chars`
    /// and the special tokens' strings).
    public init(vocabulary url: URL, config configURL: URL? = nil) throws {
        let text: String
        do {
            guard let s = String(data: try WholeFile.read(url), encoding: .utf8) else {
                throw TokenizerError("\(url.path): not UTF-8 text")
            }
            text = s
        } catch let e as TokenizerError {
            throw e
        } catch {
            throw TokenizerError("\(url.path): cannot read the WordPiece vocabulary (\(error))")
        }
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        let pieces = lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
        try self.init(pieces: pieces, config: configURL, source: url.path)
    }

    /// A vocabulary given as its pieces in id order (from `vocab.txt` or the WordPiece model
    /// of a `tokenizer.json`, `source`), with `tokenizer_config.json`'s settings. A repeated
    /// piece keeps its last id, as transformers' vocabulary does.
    public init(pieces: [String], config configURL: URL?, source: String) throws {
        let config = try WordPieceTokenizer.readConfig(configURL)
        guard !pieces.isEmpty, pieces.count <= Int(Int32.max) else {
            throw TokenizerError("\(source): the vocabulary is empty")
        }
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(pieces.count)
        for (i, p) in pieces.enumerated() { vocabulary[p] = Int32(i) }
        func special(_ key: String, _ fallback: String) throws -> Int32 {
            let name = (config[key] as? String) ?? ((config[key] as? [String: Any])?["content"] as? String) ?? fallback
            guard let id = vocabulary[name] else {
                throw TokenizerError("\(source): the special token \(name) (\(key)) is not in the vocabulary")
            }
            return id
        }
        // transformers refuses these fields when they are not booleans; so does this.
        func flag(_ key: String) throws -> Bool? {
            guard let value = config[key], !(value is NSNull) else { return nil }
            guard let b = JSONField.boolean(value) else {
                throw TokenizerError(
                    "\(configURL?.path ?? source): '\(key)' is \(JSONField.typeName(value)) (\(value)), not true or false"
                )
            }
            return b
        }
        self.vocabulary = vocabulary
        self.pieces = pieces
        lowercase = try flag("do_lower_case") ?? true
        stripAccents = try flag("strip_accents") ?? lowercase
        splitChinese = try flag("tokenize_chinese_chars") ?? true
        unknown = try special("unk_token", "[UNK]")
        classifier = try special("cls_token", "[CLS]")
        separator = try special("sep_token", "[SEP]")
        padding = try special("pad_token", "[PAD]")
        self.source = source
    }

    /// `tokenizer_config.json` as an object (empty when there is none).
    static func readConfig(_ url: URL?) throws -> [String: Any] {
        guard let url, FileManager.default.fileExists(atPath: url.path) else { return [:] }
        guard let data = try? WholeFile.read(url),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            throw TokenizerError("\(url.path): not a JSON object")
        }
        return json
    }

    /// Token ids of `text`: `[CLS]`, its word pieces cut so that the whole is at most
    /// `maxLength`, `[SEP]`.
    public func encode(_ text: String, maxLength: Int = 512) -> [Int32] {
        [classifier] + ids(text).prefix(max(0, maxLength - 2)) + [separator]
    }

    /// The ids of `text`'s word pieces, unframed.
    public func ids(_ text: String) -> [Int32] {
        wordPieces(text).map { vocabulary[$0] ?? unknown }
    }

    /// The word pieces of `text` (`[UNK]` for a word that does not split).
    public func wordPieces(_ text: String) -> [String] {
        words(normalized(text)).flatMap(split)
    }

    /// The normalized text, as unicode scalars.
    func normalized(_ text: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.unicodeScalars.count)
        for u in text.unicodeScalars {
            if u.value == 0 || u.value == 0xFFFD || WordPieceTokenizer.isControl(u) { continue }
            if WordPieceTokenizer.isWhitespace(u) {
                out.append(" ")
            } else if splitChinese && WordPieceTokenizer.isCJK(u) {
                out += [" ", u, " "]
            } else {
                out.append(u)
            }
        }
        if stripAccents {
            let decomposed = String(String.UnicodeScalarView(out)).decomposedStringWithCanonicalMapping.unicodeScalars
            out = decomposed.filter { $0.properties.generalCategory != .nonspacingMark }
        }
        if lowercase {
            out = out.flatMap { $0.properties.lowercaseMapping.unicodeScalars }
        }
        return out
    }

    /// Words: whitespace-separated runs, with every punctuation character a word of its own.
    func words(_ scalars: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var words: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        for u in scalars {
            if WordPieceTokenizer.isWhitespace(u) {
                if !current.isEmpty {
                    words.append(current)
                    current = []
                }
            } else if WordPieceTokenizer.isPunctuation(u) {
                if !current.isEmpty {
                    words.append(current)
                    current = []
                }
                words.append([u])
            } else {
                current.append(u)
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    /// Greedy longest-match-first pieces of one word.
    func split(_ word: [Unicode.Scalar]) -> [String] {
        guard word.count <= maxInputCharacters else { return [pieces[Int(unknown)]] }
        var out: [String] = []
        var start = 0
        while start < word.count {
            var end = word.count
            var found: String?
            while start < end {
                var piece = String(String.UnicodeScalarView(word[start..<end]))
                if start > 0 { piece = "##" + piece }
                if vocabulary[piece] != nil {
                    found = piece
                    break
                }
                end -= 1
            }
            guard let found else { return [pieces[Int(unknown)]] }
            out.append(found)
            start = end
        }
        return out
    }

    static func isWhitespace(_ u: Unicode.Scalar) -> Bool {
        u == " " || u == "\t" || u == "\n" || u == "\r" || u.properties.generalCategory == .spaceSeparator
    }

    static func isControl(_ u: Unicode.Scalar) -> Bool {
        if u == "\t" || u == "\n" || u == "\r" { return false }
        switch u.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    static func isPunctuation(_ u: Unicode.Scalar) -> Bool {
        let v = u.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) {
            return true
        }
        switch u.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
            .finalPunctuation, .otherPunctuation:
            return true
        default: return false
        }
    }

    static func isCJK(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
            0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default: return false
        }
    }
}
