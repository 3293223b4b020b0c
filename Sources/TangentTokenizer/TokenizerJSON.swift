import Foundation
import TangentIO

/// The `tokenizer.json` of the `tokenizers` library for XLM-R-style models: a `Unigram`
/// model (pieces and scores in fairseq's id order: `<s>`, `<pad>`, `</s>`, `<unk>`, the
/// pieces, `<mask>`) behind a `Precompiled` normalizer (SentencePiece's normalization
/// table, base64). transformers 5 saves XLM-R and CamemBERT tokenizers in this form
/// only. It is rebuilt here as the SentencePiece model it came from (same pieces, scores
/// and table, XLM-R's layout), so that the C++ library normalizes exactly as before.
public enum TokenizerJSON {
    /// The XLM-R tokenizer in `url` (a `tokenizer.json`).
    public static func fairseqSentencePiece(_ url: URL) throws -> FairseqSentencePiece {
        let path = url.path
        func fail(_ field: String, _ why: String) -> TokenizerError { TokenizerError("\(path): \(field) \(why)") }
        guard let data = try? WholeFile.read(url) else { throw TokenizerError("\(path): cannot read the file") }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TokenizerError("\(path): not a JSON object")
        }
        guard let model = json["model"] as? [String: Any] else { throw fail("'model'", "is missing") }
        guard model["type"] as? String == "Unigram" else {
            throw fail(
                "'model.type'",
                "is \(model["type"] ?? "missing"); only Unigram (XLM-R, CamemBERT) tokenizers load from tokenizer.json alone"
            )
        }
        guard let vocab = model["vocab"] as? [[Any]], vocab.count >= 6, vocab.count <= 1 << 24 else {
            throw fail("'model.vocab'", "is not a list of 6 to 2^24 [piece, score] pairs")
        }
        var entries: [(piece: String, score: Float)] = []
        entries.reserveCapacity(vocab.count)
        for (i, e) in vocab.enumerated() {
            guard e.count == 2, let p = e[0] as? String, let s = (e[1] as? NSNumber)?.doubleValue, s.isFinite else {
                throw fail("'model.vocab'[\(i)]", "is not a [piece, score] pair")
            }
            entries.append((p, Float(s)))
        }
        let head = entries.prefix(4).map(\.piece)
        guard head == ["<s>", "<pad>", "</s>", "<unk>"], (model["unk_id"] as? Int) == 3, entries.last?.piece == "<mask>"
        else {
            throw fail(
                "'model.vocab'",
                "does not have fairseq's layout (<s>, <pad>, </s>, <unk> first with unk_id 3, <mask> last): \(head), unk_id \(model["unk_id"] ?? "none")"
            )
        }
        if model["byte_fallback"] as? Bool == true {
            throw fail("'model.byte_fallback'", "is true, which XLM-R's tokenizers never use")
        }
        // transformers' XLMRobertaTokenizer rebuilds its pipeline from its own definition:
        // the file's Precompiled table (bare, or inside a Sequence, as the hub's real
        // XLM-R files have it beside a Replace of runs of spaces, which it leaves out), then
        // WhitespaceSplit and Metaspace. The SentencePiece normalizer rebuilt here does the same.
        guard let charsmap = precompiledCharsmap(json["normalizer"]) else {
            throw fail(
                "'normalizer'",
                "holds no Precompiled normalizer with a base64 precompiled_charsmap (bare or in a Sequence)")
        }
        // SentencePiece's layout for XLM-R: <unk> 0, <s> 1, </s> 2, then the pieces (fairseq id - 1).
        var pieces: [(String, Float, Int)] = [("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3)]
        pieces += entries[4..<(entries.count - 1)].map { ($0.piece, $0.score, 1) }
        let proto = modelProto(pieces: pieces, charsmap: charsmap)
        return try FairseqSentencePiece(model: Tokenizer(serializedModel: proto, source: path))
    }

    /// The charsmap of a `Precompiled` normalizer, bare or the one inside a `Sequence`.
    static func precompiledCharsmap(_ normalizer: Any?) -> Data? {
        guard let n = normalizer as? [String: Any] else { return nil }
        switch n["type"] as? String {
        case "Precompiled":
            return (n["precompiled_charsmap"] as? String).flatMap { Data(base64Encoded: $0) }
        case "Sequence":
            let found = ((n["normalizers"] as? [Any]) ?? []).compactMap(precompiledCharsmap)
            return found.count == 1 ? found[0] : nil
        default:
            return nil
        }
    }

    /// The parsed `tokenizer.json` at `url`; errors name the file.
    public static func read(_ url: URL) throws -> [String: Any] {
        guard let data = try? WholeFile.read(url) else { throw TokenizerError("\(url.path): cannot read the file") }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TokenizerError("\(url.path): not a JSON object")
        }
        return json
    }

    /// The byte-level BPE of a RoBERTa `tokenizer.json` (parsed, read from `path`) (a `BPE` model behind a `ByteLevel`
    /// pre-tokenizer, as transformers 5 saves RoBERTa tokenizers and the hub serves them):
    /// its vocabulary and merges (`"a b"` strings or `[a, b]` pairs). The rest of the
    /// pipeline is not read: transformers' RobertaTokenizer rebuilds it (ByteLevel with
    /// `add_prefix_space` from `tokenizer_config.json`, whatever the file says), and so
    /// does the caller.
    public static func byteLevelBPE(_ json: [String: Any], source path: String, addPrefixSpace: Bool) throws
        -> ByteLevelBPE
    {
        func fail(_ field: String, _ why: String) -> TokenizerError { TokenizerError("\(path): \(field) \(why)") }
        guard let model = json["model"] as? [String: Any] else { throw fail("'model'", "is missing") }
        guard model["type"] as? String == "BPE" else {
            throw fail("'model.type'", "is \(model["type"] ?? "missing"), not BPE")
        }
        // Byte-level BPE pieces spell bytes with GPT-2's table; another BPE (with a
        // Metaspace or Whitespace pre-tokenizer) would not find its pieces.
        func byteLevel(_ p: Any?) -> Bool {
            guard let p = p as? [String: Any] else { return false }
            if p["type"] as? String == "ByteLevel" { return true }
            return p["type"] as? String == "Sequence"
                && ((p["pretokenizers"] as? [Any]) ?? []).contains(where: byteLevel)
        }
        guard byteLevel(json["pre_tokenizer"]) else {
            throw fail(
                "'pre_tokenizer'", "is not ByteLevel; only byte-level BPE (RoBERTa, GPT-2) tokenizers are supported")
        }
        guard let vocab = model["vocab"] as? [String: Any], !vocab.isEmpty, vocab.count <= 1 << 24 else {
            throw fail("'model.vocab'", "is not an object of 1 to 2^24 pieces and their ids")
        }
        var vocabulary: [String: Int32] = [:]
        for (piece, value) in vocab {
            guard let id = JSONField.integer(value), (0..<vocab.count).contains(id) else {
                throw fail("'model.vocab'['\(piece)']", "is \(value), not an id from 0 to \(vocab.count - 1)")
            }
            vocabulary[piece] = Int32(id)
        }
        guard let list = model["merges"] as? [Any], list.count <= 1 << 24 else {
            throw fail("'model.merges'", "is not a list")
        }
        let merges: [(String, String)] = try list.enumerated().map { i, m in
            if let pair = m as? [Any], pair.count == 2, let a = pair[0] as? String, let b = pair[1] as? String,
                !a.isEmpty, !b.isEmpty
            {
                return (a, b)
            }
            if let line = m as? String {
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                if parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty {
                    return (String(parts[0]), String(parts[1]))
                }
            }
            throw fail("'model.merges'[\(i)]", "is not a pair of pieces (\"a b\" or [\"a\", \"b\"])")
        }
        return ByteLevelBPE(vocabulary: vocabulary, merges: merges, addPrefixSpace: addPrefixSpace, source: path)
    }

    /// ALBERT's tokenizer from its `tokenizer.json` (a `Unigram` model: `[piece, score]`
    /// pairs and `unk_id`; the `Precompiled` table of its normalizer when it has one), with
    /// the pipeline transformers' AlbertTokenizer rebuilds around it from the settings of
    /// `tokenizer_config.json` (see `MetaspaceUnigram`).
    public static func albert(
        _ json: [String: Any], source path: String, lowercase: Bool, keepAccents: Bool,
        addPrefixSpace: Bool
    ) throws -> MetaspaceUnigram {
        let (pieces, unkID) = try unigramVocabulary(json, source: path)
        guard let unk = unkID else { throw TokenizerError("\(path): 'model.unk_id' is missing or not a whole number") }
        let charsmap = precompiledCharsmap(json["normalizer"])
        return try MetaspaceUnigram(
            model: UnigramModel(pieces: pieces, unknownID: unk, source: path),
            steps: albertSteps(lowercase: lowercase, keepAccents: keepAccents, charsmap: charsmap != nil),
            charsmap: charsmap, splitWhitespace: true, prepend: addPrefixSpace ? .always : .never, source: path)
    }

    /// ALBERT's tokenizer from its `spiece.model`, as transformers converts it: the pieces,
    /// scores, unknown id and normalization table of the SentencePiece model.
    public static func albert(model url: URL, lowercase: Bool, keepAccents: Bool, addPrefixSpace: Bool) throws
        -> MetaspaceUnigram
    {
        let (pieces, unknownID, charsmap) = try unigram(model: url)
        return try MetaspaceUnigram(
            model: UnigramModel(pieces: pieces, unknownID: unknownID, source: url.path),
            steps: albertSteps(lowercase: lowercase, keepAccents: keepAccents, charsmap: charsmap != nil),
            charsmap: charsmap, splitWhitespace: true, prepend: addPrefixSpace ? .always : .never, source: url.path)
    }

    /// The pieces, scores, unknown id and normalization table of a SentencePiece model, as
    /// transformers converts one.
    public static func unigram(model url: URL) throws -> (pieces: [(String, Double)], unknownID: Int, charsmap: Data?) {
        let sp = try Tokenizer(contentsOf: url)
        let pieces = (0..<sp.vocabSize).map { (sp.piece(Int32($0)) ?? "", Double(sp.score(Int32($0)))) }
        var charsmap: Data?
        let bytes = [UInt8](sp.serializedModel)
        // ModelProto field 3 is the normalizer spec; its field 2 the table.
        if let top = ProtoFields(bytes), let spec = top.lengthDelimited.first(where: { $0.0 == 3 })?.1 {
            let specBytes = Array(bytes[spec])
            if let map = ProtoFields(specBytes)?.lengthDelimited.first(where: { $0.0 == 2 })?.1, !map.isEmpty {
                charsmap = Data(specBytes[map])
            }
        }
        return (pieces, Int(sp.unkID), charsmap)
    }

    /// DeBERTa-v2/v3's tokenizer from its `tokenizer.json` (a `Unigram` model; the
    /// `Precompiled` table of its normalizer when it has one), with the pipeline
    /// transformers' DebertaV2Tokenizer rebuilds around it: [lowercase,] the table, trailing
    /// whitespace stripped and runs of spaces made one (without a table: whitespace runs
    /// and newlines made one space, NFC, trailing whitespace stripped); no whitespace split;
    /// Metaspace with `▁` before the text (`always`) or its first piece (`first`).
    /// `unknown` is `unk_token`: its id is where the vocabulary lists it with score 0, else 1.
    public static func debertaV2(
        _ json: [String: Any], source path: String, lowercase: Bool, addPrefixSpace: Bool,
        unknown: String
    ) throws -> MetaspaceUnigram {
        let (pieces, _) = try unigramVocabulary(json, source: path)
        let unk = pieces.firstIndex { $0.0 == unknown && $0.1 == 0 } ?? 1
        let charsmap = precompiledCharsmap(json["normalizer"])
        let steps: [MetaspaceUnigram.Step] =
            (lowercase ? [.lowercase] : [])
            + (charsmap != nil
                ? [.precompiled, .stripRight, .collapseSpaces] : [.collapseWhitespace, .nfc, .stripRight])
        let entries = try addedTokenEntries(json, size: 1 << 24, source: path)
        let normalized = AddedTokens(
            stripping: entries.filter(\.normalized).map { ($0.content, $0.id, $0.lstrip, $0.rstrip) })
        return try MetaspaceUnigram(
            model: UnigramModel(pieces: pieces, unknownID: unk, source: path), steps: steps, charsmap: charsmap,
            splitWhitespace: false, prepend: addPrefixSpace ? .always : .first, normalizedTokens: normalized,
            source: path)
    }

    /// The `[piece, score]` pairs and `unk_id` of a `Unigram` model.
    static func unigramVocabulary(_ json: [String: Any], source path: String) throws -> (
        pieces: [(String, Double)], unknownID: Int?
    ) {
        func fail(_ field: String, _ why: String) -> TokenizerError { TokenizerError("\(path): \(field) \(why)") }
        guard let model = json["model"] as? [String: Any] else { throw fail("'model'", "is missing") }
        guard model["type"] as? String == "Unigram" else {
            throw fail("'model.type'", "is \(model["type"] ?? "missing"), not Unigram")
        }
        guard let vocab = model["vocab"] as? [[Any]], !vocab.isEmpty, vocab.count <= 1 << 24 else {
            throw fail("'model.vocab'", "is not a list of 1 to 2^24 [piece, score] pairs")
        }
        let pieces: [(String, Double)] = try vocab.enumerated().map { i, e in
            guard e.count == 2, let p = e[0] as? String, let s = JSONField.number(e[1]), s.isFinite else {
                throw fail("'model.vocab'[\(i)]", "is not a [piece, score] pair")
            }
            return (p, s)
        }
        if JSONField.boolean(model["byte_fallback"]) == true {
            throw fail("'model.byte_fallback'", "is true, which tangent's Unigram does not do")
        }
        return (pieces, JSONField.integer(model["unk_id"]))
    }

    /// AlbertTokenizer's normalizers.
    static func albertSteps(lowercase: Bool, keepAccents: Bool, charsmap: Bool) -> [MetaspaceUnigram.Step] {
        [.replace("``", "\""), .replace("''", "\"")] + (keepAccents ? [] : [.stripAccents])
            + (lowercase ? [.lowercase] : [])
            + (charsmap ? [.precompiled] : [])
    }

    /// A byte-level BPE `tokenizer.json` run as written, as transformers 5 runs the files of
    /// models without a tokenizer class of their own (TokenizersBackend: ModernBERT's): no
    /// normalizer, a `ByteLevel` pre-tokenizer (GPT-2's pattern) with the file's
    /// `add_prefix_space`, the BPE model's vocabulary and merges, and the framing of the
    /// post-processor (`TemplateProcessing` `[X] $A [Y]`, or `RobertaProcessing` /
    /// `BertProcessing`). Anything the reader would run differently is refused by field.
    public static func byteLevelAsWritten(_ json: [String: Any], source path: String) throws -> (
        bpe: ByteLevelBPE, begin: Int32, end: Int32
    ) {
        func fail(_ field: String, _ why: String) -> TokenizerError { TokenizerError("\(path): \(field) \(why)") }
        if let n = json["normalizer"], !(n is NSNull) {
            throw fail("'normalizer'", "is set; only byte-level files without one are read as written")
        }
        var byteLevel = json["pre_tokenizer"] as? [String: Any]
        if byteLevel?["type"] as? String == "Sequence", let list = byteLevel?["pretokenizers"] as? [[String: Any]],
            list.count == 1
        {
            byteLevel = list[0]
        }
        guard let pre = byteLevel, pre["type"] as? String == "ByteLevel" else {
            throw fail("'pre_tokenizer'", "is not a ByteLevel pre-tokenizer")
        }
        if let r = pre["use_regex"], JSONField.boolean(r) != true {
            throw fail("'pre_tokenizer.use_regex'", "is \(r); only GPT-2's pattern (true) is supported")
        }
        guard let prefix = pre["add_prefix_space"].map(JSONField.boolean) ?? false else {
            throw fail("'pre_tokenizer.add_prefix_space'", "is not true or false")
        }
        guard let model = json["model"] as? [String: Any] else { throw fail("'model'", "is missing") }
        for key in ["dropout", "continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key], !(v is NSNull), (v as? String) != "" {
                throw fail("'model.\(key)'", "is \(v); only BPE without it is supported")
            }
        }
        for key in ["byte_fallback", "ignore_merges"] where JSONField.boolean(model[key]) == true {
            throw fail("'model.\(key)'", "is true; only BPE without it is supported")
        }
        let bpe = try byteLevelBPE(json, source: path, addPrefixSpace: prefix)
        let added = try addedTokenEntries(json, size: 1 << 24, source: path)
        func id(_ token: String, _ field: String) throws -> Int32 {
            if let a = added.first(where: { $0.content == token }) { return a.id }
            guard let i = bpe.vocabulary[token] else {
                throw fail(field, "names '\(token)', which is neither an added token nor a piece")
            }
            return i
        }
        guard let post = json["post_processor"] as? [String: Any] else {
            throw fail("'post_processor'", "is missing; the framing of a text ([CLS] ... [SEP]) is read from it")
        }
        switch post["type"] as? String {
        case "TemplateProcessing":
            // [SpecialToken X, Sequence A, SpecialToken Y], each special one id.
            guard let single = post["single"] as? [[String: Any]], single.count == 3,
                let x = (single[0]["SpecialToken"] as? [String: Any])?["id"] as? String, single[1]["Sequence"] != nil,
                let y = (single[2]["SpecialToken"] as? [String: Any])?["id"] as? String
            else {
                throw fail(
                    "'post_processor.single'",
                    "is not [special token, $A, special token]; only that framing is supported")
            }
            let specials = post["special_tokens"] as? [String: Any] ?? [:]
            func special(_ name: String) throws -> Int32 {
                guard let ids = (specials[name] as? [String: Any])?["ids"] as? [Any], ids.count == 1,
                    let i = JSONField.integer(ids[0])
                else {
                    throw fail("'post_processor.special_tokens'['\(name)']", "is not one token id")
                }
                return Int32(i)
            }
            return (bpe, try special(x), try special(y))
        case "RobertaProcessing", "BertProcessing":
            guard let cls = post["cls"] as? [Any], cls.count == 2, let c = JSONField.integer(cls[1]),
                let sep = post["sep"] as? [Any], sep.count == 2, let e = JSONField.integer(sep[1])
            else {
                throw fail("'post_processor'", "lacks its [token, id] 'cls' and 'sep'")
            }
            _ = try id(cls[0] as? String ?? "", "'post_processor.cls'")
            return (bpe, Int32(c), Int32(e))
        default:
            throw fail(
                "'post_processor.type'",
                "is \(post["type"] ?? "missing"); TemplateProcessing, RobertaProcessing and BertProcessing are supported"
            )
        }
    }

    /// The pieces, in id order, of the `WordPiece` model of a BERT `tokenizer.json` (what
    /// transformers 5 reads in place of `vocab.txt`, and the only file it saves). Its
    /// normalizer's settings are not read: transformers' BertTokenizer rebuilds the
    /// normalizer from `tokenizer_config.json`, as `WordPieceTokenizer` does.
    public static func wordPieces(_ url: URL) throws -> [String] {
        let path = url.path
        func fail(_ field: String, _ why: String) -> TokenizerError { TokenizerError("\(path): \(field) \(why)") }
        let json = try read(url)
        guard let model = json["model"] as? [String: Any] else { throw fail("'model'", "is missing") }
        guard model["type"] as? String == "WordPiece" else {
            throw fail("'model.type'", "is \(model["type"] ?? "missing"); a BERT tokenizer.json has a WordPiece model")
        }
        if let prefix = model["continuing_subword_prefix"], prefix as? String != "##" {
            throw fail("'model.continuing_subword_prefix'", "is \(prefix); only BERT's '##' is supported")
        }
        if let limit = model["max_input_chars_per_word"], JSONField.integer(limit) != 100 {
            throw fail("'model.max_input_chars_per_word'", "is \(limit); only BERT's 100 is supported")
        }
        guard let vocab = model["vocab"] as? [String: Any], !vocab.isEmpty, vocab.count <= 1 << 24 else {
            throw fail("'model.vocab'", "is not an object of 1 to 2^24 pieces and their ids")
        }
        var pieces = [String?](repeating: nil, count: vocab.count)
        for (piece, value) in vocab {
            guard let id = JSONField.integer(value), (0..<vocab.count).contains(id) else {
                throw fail("'model.vocab'['\(piece)']", "is \(value), not an id from 0 to \(vocab.count - 1)")
            }
            guard pieces[id] == nil else {
                throw fail("'model.vocab'", "gives id \(id) to both '\(pieces[id]!)' and '\(piece)'")
            }
            pieces[id] = piece
        }
        return pieces.map { $0! }
    }

    /// The `added_tokens` of a `tokenizer.json` (content, id, and whether it takes the
    /// whitespace before or after it: `lstrip`, `rstrip`, as RoBERTa's and XLM-R's `<mask>`),
    /// which the text is split at before tokenization (see `AddedTokens`). Ids must fit
    /// `size`; tokens matched only within words (`single_word`) or after normalization
    /// (`normalized`) are refused, since they are matched differently.
    public static func addedTokens(_ json: [String: Any], size: Int, source: String) throws
        -> [(content: String, id: Int32, lstrip: Bool, rstrip: Bool)]
    {
        try addedTokenEntries(json, size: size, source: source).map { e in
            if e.normalized {
                throw TokenizerError(
                    "\(source): 'added_tokens' ('\(e.content)') is matched after normalization (normalized: true), which tangent does only for Unigram tokenizers (ALBERT, DeBERTa)"
                )
            }
            return (e.content, e.id, e.lstrip, e.rstrip)
        }
    }

    /// Every entry of `added_tokens`, with whether it is matched after normalization.
    public static func addedTokenEntries(_ json: [String: Any], size: Int, source: String) throws
        -> [(content: String, id: Int32, lstrip: Bool, rstrip: Bool, normalized: Bool)]
    {
        guard let list = json["added_tokens"] else { return [] }
        guard let entries = list as? [[String: Any]] else {
            throw TokenizerError("\(source): 'added_tokens' is not a list of objects")
        }
        return try entries.enumerated().map { i, e in
            func fail(_ why: String) -> TokenizerError { TokenizerError("\(source): 'added_tokens'[\(i)] \(why)") }
            guard let content = e["content"] as? String, !content.isEmpty else { throw fail("has no 'content'") }
            guard let id = JSONField.integer(e["id"]), (0..<size).contains(id) else {
                throw fail("('\(content)') has id \(e["id"] ?? "none"), outside the vocabulary of \(size)")
            }
            if JSONField.boolean(e["single_word"]) == true {
                throw fail("('\(content)') is single_word, which tangent does not match")
            }
            func flag(_ key: String) throws -> Bool {
                guard let v = e[key], !(v is NSNull) else { return false }
                guard let b = JSONField.boolean(v) else {
                    throw fail("('\(content)') '\(key)' is \(JSONField.typeName(v)), not true or false")
                }
                return b
            }
            return (content, Int32(id), try flag("lstrip"), try flag("rstrip"), try flag("normalized"))
        }
    }

    /// A SentencePiece ModelProto: `pieces` (piece, score, type: 1 normal, 2 unknown,
    /// 3 control), a unigram trainer spec in XLM-R's layout (no pad), and a normalizer of
    /// the precompiled table that adds the dummy prefix, removes extra whitespace and
    /// escapes whitespace (the Metaspace and WhitespaceSplit steps of tokenizer.json).
    /// What a rebuilt SentencePiece model is for.
    enum ProtoLayout {
        /// XLM-R's tokenizer: unknown 0, `<s>` 1, `</s>` 2, no padding; the table, a dummy
        /// prefix, runs of spaces removed, spaces escaped.
        case xlmr
        /// The table alone (`normalized` only): no prefix, spaces kept as they are.
        case normalizerOnly
    }

    static func modelProto(pieces: [(String, Float, Int)], charsmap: Data, layout: ProtoLayout = .xlmr) -> Data {
        var model = ProtoWriter()
        for (piece, score, type) in pieces {
            var p = ProtoWriter()
            p.bytes(1, Data(piece.utf8))
            p.float(2, score)
            p.varint(3, UInt64(type))
            model.bytes(1, p.data)
        }
        var trainer = ProtoWriter()
        trainer.varint(3, 1)  // UNIGRAM
        trainer.varint(4, UInt64(pieces.count))
        let xlmr = layout == .xlmr
        trainer.varint(40, 0)
        trainer.varint(41, xlmr ? 1 : UInt64(bitPattern: -1))
        trainer.varint(42, xlmr ? 2 : UInt64(bitPattern: -1))
        trainer.varint(43, UInt64(bitPattern: -1))
        model.bytes(2, trainer.data)
        var normalizer = ProtoWriter()
        normalizer.bytes(1, Data("nmt_nfkc".utf8))
        normalizer.bytes(2, charsmap)
        normalizer.varint(3, xlmr ? 1 : 0)
        normalizer.varint(4, xlmr ? 1 : 0)
        normalizer.varint(5, xlmr ? 1 : 0)
        model.bytes(3, normalizer.data)
        return model.data
    }
}

/// The few protobuf encodings a ModelProto needs: varints, fixed32 floats and
/// length-delimited fields.
struct ProtoWriter {
    var data = Data()

    private mutating func raw(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            data.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        data.append(UInt8(v))
    }

    mutating func varint(_ field: Int, _ v: UInt64) {
        raw(UInt64(field << 3))
        raw(v)
    }

    mutating func float(_ field: Int, _ v: Float) {
        raw(UInt64(field << 3 | 5))
        withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) }
    }

    mutating func bytes(_ field: Int, _ v: Data) {
        raw(UInt64(field << 3 | 2))
        raw(UInt64(v.count))
        data.append(v)
    }
}
