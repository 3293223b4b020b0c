import Foundation
import TangentIO

/// GPT-2's byte-level BPE, as the `tokenizers` library behind `transformers` runs it for
/// GPT-2 and RoBERTa: the text split by GPT-2's pre-tokenizer pattern (contractions,
/// letters, numbers, other symbols, each optionally after one space; runs of whitespace),
/// every piece's UTF-8 bytes mapped to printable characters (GPT-2's byte-to-unicode
/// table), then merged pair by pair in the order of the merges list, and looked up in the
/// vocabulary. Framing and special tokens are the caller's (see `HFTokenizer`).
public struct ByteLevelBPE: Sendable {
    /// Piece to id.
    public let vocabulary: [String: Int32]
    /// Merge rank of each pair, keyed by the two pieces joined with a space.
    let ranks: [String: Int]
    /// The merges in rank order (the tokenizer's identity).
    public let mergeList: [(String, String)]
    /// Whether a space is put before a text that does not start with one (`add_prefix_space`).
    public let addPrefixSpace: Bool
    /// Where it was read from (errors name it).
    public let source: String

    /// GPT-2's table from bytes to the characters that stand for them in pieces.
    static let byteCharacters: [String] = {
        var bytes = Array(33...126) + Array(161...172) + Array(174...255)
        var codes = bytes
        var extra = 0
        for b in 0...255 where !bytes.contains(b) {
            bytes.append(b)
            codes.append(256 + extra)
            extra += 1
        }
        var table = [String](repeating: "", count: 256)
        for (b, c) in zip(bytes, codes) { table[b] = String(Character(Unicode.Scalar(UInt32(c))!)) }
        return table
    }()

    /// A tokenizer of `vocabulary` (piece to id) and `merges` (in rank order).
    public init(vocabulary: [String: Int32], merges: [(String, String)], addPrefixSpace: Bool, source: String) {
        self.vocabulary = vocabulary
        var ranks: [String: Int] = [:]
        for (r, m) in merges.enumerated() where ranks[m.0 + " " + m.1] == nil { ranks[m.0 + " " + m.1] = r }
        self.ranks = ranks
        self.mergeList = merges
        self.addPrefixSpace = addPrefixSpace
        self.source = source
    }

    /// Reads `vocab.json` (piece to id) and `merges.txt` (one `a b` pair per line after an
    /// optional `#version` line); errors name the file and line.
    public static func load(vocabulary url: URL, merges mergesURL: URL, addPrefixSpace: Bool) throws -> ByteLevelBPE {
        guard let data = try? WholeFile.read(url),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any], !json.isEmpty,
            json.count <= 1 << 24
        else {
            throw TokenizerError("\(url.path): not a JSON object of 1 to 2^24 pieces and their ids")
        }
        var vocabulary: [String: Int32] = [:]
        for (piece, value) in json {
            guard let id = JSONField.integer(value), (0..<json.count).contains(id) else {
                throw TokenizerError("\(url.path): '\(piece)' has id \(value), not an id from 0 to \(json.count - 1)")
            }
            vocabulary[piece] = Int32(id)
        }
        guard let text = (try? WholeFile.read(mergesURL)).flatMap({ String(data: $0, encoding: .utf8) }) else {
            throw TokenizerError("\(mergesURL.path): cannot read it as UTF-8 text")
        }
        var merges: [(String, String)] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let l = line.hasSuffix("\r") ? line.dropLast() : line[...]
            if l.isEmpty || (n == 0 && l.hasPrefix("#version")) { continue }
            let parts = l.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw TokenizerError("\(mergesURL.path): line \(n + 1) is not two pieces separated by one space")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        return ByteLevelBPE(vocabulary: vocabulary, merges: merges, addPrefixSpace: addPrefixSpace, source: url.path)
    }

    /// The ids of `text`'s pieces; a piece outside the vocabulary is an error naming it.
    public func ids(_ text: String) throws -> [Int32] {
        var out: [Int32] = []
        let prepared = addPrefixSpace && !(text.unicodeScalars.first.map { $0 == " " } ?? true) ? " " + text : text
        for word in ByteLevelBPE.preTokenize(prepared) {
            for piece in merge(word) {
                guard let id = vocabulary[piece] else {
                    throw TokenizerError(
                        "\(source): the piece '\(piece)' is not in the vocabulary (a byte-level vocabulary holds every byte)"
                    )
                }
                out.append(id)
            }
        }
        return out
    }

    /// The pieces of one pre-tokenized word: its bytes as characters, merged by rank.
    func merge(_ word: String) -> [String] {
        var symbols = Array(word.utf8).map { ByteLevelBPE.byteCharacters[Int($0)] }
        while symbols.count > 1 {
            var best: (rank: Int, at: Int)?
            for i in 0..<(symbols.count - 1) {
                if let r = ranks[symbols[i] + " " + symbols[i + 1]], r < (best?.rank ?? Int.max) { best = (r, i) }
            }
            guard let best else { break }
            // Every occurrence of the best pair, left to right.
            let (a, b) = (symbols[best.at], symbols[best.at + 1])
            var merged: [String] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == a && symbols[i + 1] == b {
                    merged.append(a + b)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        return symbols
    }

    /// GPT-2's pattern, `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
    /// matched by hand over Unicode scalars (letters and numbers by general category,
    /// whitespace by the White_Space property).
    static func preTokenize(_ text: String) -> [String] {
        let s = Array(text.unicodeScalars)
        let n = s.count
        func letter(_ u: Unicode.Scalar) -> Bool {
            switch u.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
            default: return false
            }
        }
        func number(_ u: Unicode.Scalar) -> Bool {
            switch u.properties.generalCategory {
            case .decimalNumber, .letterNumber, .otherNumber: return true
            default: return false
            }
        }
        func space(_ u: Unicode.Scalar) -> Bool { u.properties.isWhitespace }
        func other(_ u: Unicode.Scalar) -> Bool { !space(u) && !letter(u) && !number(u) }
        var out: [String] = []
        func emit(_ a: Int, _ b: Int) { out.append(String(String.UnicodeScalarView(s[a..<b]))) }
        var i = 0
        while i < n {
            // Contractions, lower case only, as GPT-2's pattern has them.
            if s[i] == "'" && i + 1 < n {
                if i + 2 < n, ["re", "ve", "ll"].contains(String(String.UnicodeScalarView(s[(i + 1)...(i + 2)]))) {
                    emit(i, i + 3)
                    i += 3
                    continue
                }
                if ["s", "t", "m", "d"].contains(String(s[i + 1])) {
                    emit(i, i + 2)
                    i += 2
                    continue
                }
            }
            // An optional space, then a run of one class.
            let start = i
            var j = i
            if s[j] == " " && j + 1 < n && !space(s[j + 1]) { j += 1 }
            if !space(s[j]) {
                let cls: (Unicode.Scalar) -> Bool = letter(s[j]) ? letter : number(s[j]) ? number : other
                while j < n && cls(s[j]) { j += 1 }
                emit(start, j)
                i = j
                continue
            }
            // Whitespace: the run, less its last character when something follows it.
            var k = i
            while k < n && space(s[k]) { k += 1 }
            if k < n && k - i > 1 { k -= 1 }
            emit(i, k)
            i = k
        }
        return out
    }
}
