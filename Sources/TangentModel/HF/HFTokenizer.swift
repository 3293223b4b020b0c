import Foundation
import TangentIO
import TangentTokenizer

/// The tokenizer of a Hugging Face encoder directory, picked as `transformers` 5 picks it
/// for the model type: for BERT, WordPiece with the pieces of `tokenizer.json` when there
/// is one (else `vocab.txt`) and the normalization settings of `tokenizer_config.json`;
/// for XLM-R and CamemBERT, SentencePiece in fairseq's layout from a Unigram
/// `tokenizer.json` when there is one (else `sentencepiece.bpe.model`); for RoBERTa,
/// byte-level BPE from a BPE `tokenizer.json` (else `vocab.json` + `merges.txt`). Special and added
/// tokens written literally in a text are matched first, as transformers does. Its ids
/// must fit the model's embedding table.
public struct HFTokenizer {
    /// The tokenizer of the text between added tokens.
    public enum Base {
        case wordPiece(WordPieceTokenizer)
        case sentencePiece(FairseqSentencePiece)
        /// RoBERTa's byte-level BPE, with its `<s>` and `</s>` ids.
        case byteLevel(ByteLevelBPE, begin: Int32, end: Int32, padding: Int32)
        /// ALBERT's Unigram (`tokenizers`' pipeline), with its `[CLS]`, `[SEP]` and `<pad>` ids.
        case unigram(MetaspaceUnigram, begin: Int32, end: Int32, padding: Int32)
    }

    public let base: Base
    /// Special and added tokens matched in the raw text.
    public let added: AddedTokens
    /// The file the pieces were read from.
    public let source: String

    /// Loads the tokenizer in `directory` for `config`; errors name the file and why.
    public static func load(directory: URL, config: HFEncoderConfig) throws -> HFTokenizer {
        let json = file("tokenizer.json", in: directory)
        let tokenizerConfig = file("tokenizer_config.json", in: directory)
        let tokenizer: HFTokenizer
        if config.family == .modernbert {
            tokenizer = try asWritten(directory: directory)
        } else if config.family == .deberta {
            tokenizer = try debertaV2(directory: directory)
        } else if config.family == .albert {
            tokenizer = try albert(
                json: json, model: file("spiece.model", in: directory), config: tokenizerConfig, directory: directory)
        } else if !config.isRoberta {
            tokenizer = try wordPiece(json: json, tokenizerConfig: tokenizerConfig, directory: directory)
        } else {
            tokenizer = try roberta(
                json: json, tokenizerConfig: tokenizerConfig, directory: directory, modelType: config.modelType)
        }
        try check(tokenizer, fits: config, directory: directory)
        return tokenizer
    }

    /// BERT's WordPiece tokenizer: `tokenizer.json`, else `vocab.txt` (with tokenizer_config.json).
    static func wordPiece(json: URL?, tokenizerConfig: URL?, directory: URL) throws -> HFTokenizer {
        func file(_ name: String) -> URL? { HFTokenizer.file(name, in: directory) }
        let wordPiece: WordPieceTokenizer
        if let json {
            wordPiece = try WordPieceTokenizer(
                pieces: TokenizerJSON.wordPieces(json), config: tokenizerConfig, source: json.path)
        } else if let vocab = file("vocab.txt") {
            wordPiece = try WordPieceTokenizer(vocabulary: vocab, config: tokenizerConfig)
        } else {
            throw TokenizerError(
                "\(directory.path): no tokenizer.json or vocab.txt; a BERT model's WordPiece tokenizer is read from one of them (and tokenizer_config.json)"
            )
        }
        let added =
            try json.map {
                try TokenizerJSON.addedTokens(TokenizerJSON.read($0), size: wordPiece.pieces.count, source: $0.path)
            }
            ?? plain(
                namedTokens(tokenizerConfig, defaults: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) {
                    wordPiece.vocabulary[$0]
                })
        return HFTokenizer(
            base: .wordPiece(wordPiece), added: AddedTokens(stripping: added), source: wordPiece.source)
    }

    /// The RoBERTa family's tokenizer (RoBERTa, XLM-R, CamemBERT): tokenizer.json (byte-level
    /// BPE or fairseq's SentencePiece), vocab.json + merges.txt, or sentencepiece.bpe.model.
    static func roberta(json: URL?, tokenizerConfig: URL?, directory: URL, modelType: String) throws -> HFTokenizer {
        func file(_ name: String) -> URL? { HFTokenizer.file(name, in: directory) }
        if let json, let parsed = try Optional(TokenizerJSON.read(json)),
            (parsed["model"] as? [String: Any])?["type"] as? String == "BPE"
        {
            // RoBERTa's tokenizer.json: its vocabulary, merges and added tokens; the prefix
            // space as tokenizer_config.json says (RobertaTokenizer's rule).
            let bpe = try TokenizerJSON.byteLevelBPE(
                parsed, source: json.path, addPrefixSpace: try addPrefixSpace(tokenizerConfig))
            let added = try TokenizerJSON.addedTokens(parsed, size: bpe.vocabulary.count, source: json.path)
            return try byteLevel(bpe, added: added, source: json)
        } else if let json {
            let sp = try TokenizerJSON.fairseqSentencePiece(json)
            let added = try TokenizerJSON.addedTokens(TokenizerJSON.read(json), size: sp.vocabSize, source: json.path)
            return HFTokenizer(base: .sentencePiece(sp), added: AddedTokens(stripping: added), source: json.path)
        } else if let vocab = file("vocab.json"), let merges = file("merges.txt") {
            // RoBERTa's tokenizer files (RobertaTokenizer: its five specials).
            let bpe = try ByteLevelBPE.load(
                vocabulary: vocab, merges: merges, addPrefixSpace: try addPrefixSpace(tokenizerConfig))
            let added = try namedTokens(tokenizerConfig, defaults: ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]) {
                bpe.vocabulary[$0]
            }
            return try byteLevel(bpe, added: plain(added), source: vocab)
        } else if let model = file("sentencepiece.bpe.model") {
            let sp = try FairseqSentencePiece(model: Tokenizer(contentsOf: model))
            // transformers' XLMRobertaTokenizer: fairseq's four, then <mask> last.
            let fairseq: [String: Int32] = [
                "<s>": FairseqSentencePiece.begin, "<pad>": FairseqSentencePiece.padding,
                "</s>": FairseqSentencePiece.end, "<unk>": FairseqSentencePiece.unknown, "<mask>": sp.mask,
            ]
            let added = try namedTokens(tokenizerConfig, defaults: ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]) {
                fairseq[$0]
            }
            return HFTokenizer(base: .sentencePiece(sp), added: AddedTokens(added), source: model.path)
        } else if file("vocab.json") != nil || file("merges.txt") != nil {
            throw TokenizerError(
                "\(directory.path): a byte-level BPE tokenizer needs both vocab.json and merges.txt; one is missing")
        } else {
            throw TokenizerError(
                "\(directory.path): no tokenizer (tokenizer.json, vocab.json + merges.txt, or sentencepiece.bpe.model) for model type \(modelType)"
            )
        }
    }

    /// Refuses a tokenizer that is not the model's: another padding id than config.json's,
    /// or more ids than the embedding table has rows.
    static func check(_ tokenizer: HFTokenizer, fits config: HFEncoderConfig, directory: URL) throws {
        // RoBERTa-family positions count from the model's padding id, and transformers
        // gives a padding token in the text the padding position: with two different ids
        // the positions would differ from transformers'.
        if config.padTokenIDGiven, Int(tokenizer.padID) != config.padTokenID {
            throw TokenizerError(
                "\(directory.appendingPathComponent("config.json").path): 'pad_token_id' is \(config.padTokenID) but the tokenizer's padding token (\(tokenizer.source)) has id \(tokenizer.padID); the tokenizer is not this model's, or the config is damaged"
            )
        }
        guard tokenizer.size <= config.vocabSize else {
            throw TokenizerError(
                "\(tokenizer.source): \(tokenizer.size) token ids do not fit the model's 'vocab_size' \(config.vocabSize) (config.json): the tokenizer is not this model's"
            )
        }
    }

    /// `name` in `directory`, if it exists.
    static func file(_ name: String, in directory: URL) -> URL? {
        let u = directory.appendingPathComponent(name)
        return FileManager.default.fileExists(atPath: u.path) ? u : nil
    }

    /// ALBERT's tokenizer: `tokenizer.json` when there is one, else `spiece.model`, with
    /// `do_lower_case` (default true), `keep_accents` (false) and `add_prefix_space` (true)
    /// from `tokenizer_config.json`, as AlbertTokenizer; framed `[CLS] … [SEP]`.
    static func albert(json: URL?, model: URL?, config: URL?, directory: URL) throws -> HFTokenizer {
        let settings = try flags(config, ["do_lower_case": true, "keep_accents": false, "add_prefix_space": true])
        let pipeline: MetaspaceUnigram
        let added: [(content: String, id: Int32, lstrip: Bool, rstrip: Bool)]
        let source: URL
        if let json {
            let parsed = try TokenizerJSON.read(json)
            pipeline = try TokenizerJSON.albert(
                parsed, source: json.path, lowercase: settings["do_lower_case"]!,
                keepAccents: settings["keep_accents"]!, addPrefixSpace: settings["add_prefix_space"]!)
            added = try TokenizerJSON.addedTokens(parsed, size: pipeline.model.pieces.count, source: json.path)
            source = json
        } else if let model {
            pipeline = try TokenizerJSON.albert(
                model: model, lowercase: settings["do_lower_case"]!, keepAccents: settings["keep_accents"]!,
                addPrefixSpace: settings["add_prefix_space"]!)
            added = plain(
                try namedTokens(config, defaults: ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]) {
                    pipeline.model.index[$0]
                })
            source = model
        } else {
            throw TokenizerError(
                "\(directory.path): no tokenizer.json or spiece.model; an ALBERT model's tokenizer is read from one of them"
            )
        }
        func id(_ piece: String) throws -> Int32 { try special(piece, in: pipeline.model.index, source: source) }
        return HFTokenizer(
            base: .unigram(pipeline, begin: try id("[CLS]"), end: try id("[SEP]"), padding: try id("<pad>")),
            added: AddedTokens(stripping: added), source: source.path)
    }

    /// DeBERTa-v2/v3's tokenizer: `tokenizer.json` when there is one, else `spm.model`,
    /// with `do_lower_case` (default false), `add_prefix_space` (true) and `unk_token` from
    /// `tokenizer_config.json`, as DebertaV2Tokenizer; framed `[CLS] … [SEP]`. Added tokens
    /// come from `tokenizer.json`, else `added_tokens_decoder` (DeBERTa-v3's `[MASK]` sits
    /// after the SentencePiece pieces).
    public static func debertaV2(directory: URL) throws -> HFTokenizer {
        func file(_ name: String) -> URL? {
            let u = directory.appendingPathComponent(name)
            return FileManager.default.fileExists(atPath: u.path) ? u : nil
        }
        let config = file("tokenizer_config.json")
        let settings = try flags(config, ["do_lower_case": false, "add_prefix_space": true, "split_by_punct": false])
        if settings["split_by_punct"]! {
            throw TokenizerError(
                "\(config!.path): 'split_by_punct' is true; only DeBERTa's default (false) is supported")
        }
        let configJSON =
            (config.flatMap { try? WholeFile.read($0) }).flatMap {
                try? JSONSerialization.jsonObject(with: $0) as? [String: Any]
            } ?? [:]
        func content(_ v: Any?) -> String? { (v as? String) ?? ((v as? [String: Any])?["content"] as? String) }
        let unknown = content(configJSON["unk_token"]) ?? "[UNK]"
        let pipeline: MetaspaceUnigram
        let added: [(content: String, id: Int32, lstrip: Bool, rstrip: Bool)]
        let source: URL
        if let json = file("tokenizer.json") {
            let parsed = try TokenizerJSON.read(json)
            pipeline = try TokenizerJSON.debertaV2(
                parsed, source: json.path, lowercase: settings["do_lower_case"]!,
                addPrefixSpace: settings["add_prefix_space"]!, unknown: unknown)
            added = try TokenizerJSON.addedTokenEntries(parsed, size: 1 << 24, source: json.path).filter {
                !$0.normalized
            }
            .map { ($0.content, $0.id, $0.lstrip, $0.rstrip) }
            source = json
        } else if let model = file("spm.model") {
            let base = try TokenizerJSON.unigram(model: model)
            let unk = base.pieces.firstIndex { $0.0 == unknown && $0.1 == 0 } ?? 1
            let steps: [MetaspaceUnigram.Step] =
                (settings["do_lower_case"]! ? [.lowercase] : [])
                + (base.charsmap != nil
                    ? [.precompiled, .stripRight, .collapseSpaces] : [.collapseWhitespace, .nfc, .stripRight])
            let decoder = try addedTokensDecoder(configJSON, source: config?.path ?? "tokenizer_config.json")
            pipeline = try MetaspaceUnigram(
                model: UnigramModel(pieces: base.pieces, unknownID: unk, source: model.path), steps: steps,
                charsmap: base.charsmap, splitWhitespace: false,
                prepend: settings["add_prefix_space"]! ? .always : .first,
                normalizedTokens: AddedTokens(
                    stripping: decoder.filter(\.normalized).map { ($0.content, $0.id, $0.lstrip, $0.rstrip) }),
                source: model.path)
            added =
                decoder.filter { !$0.normalized }.map { ($0.content, $0.id, $0.lstrip, $0.rstrip) }
                + namedSpecials(configJSON, pieces: base.pieces.map(\.0), decoded: Set(decoder.map(\.content)))
            source = model
        } else {
            throw TokenizerError(
                "\(directory.path): no tokenizer.json or spm.model; a DeBERTa model's tokenizer is read from one of them"
            )
        }
        func id(_ piece: String) throws -> Int32 { try special(piece, in: pipeline.model.index, source: source) }
        return HFTokenizer(
            base: .unigram(pipeline, begin: try id("[CLS]"), end: try id("[SEP]"), padding: try id("[PAD]")),
            added: AddedTokens(stripping: added), source: source.path)
    }

    /// The special tokens `tokenizer_config.json` names (`bos_token` … `mask_token`, then
    /// `extra_special_tokens`) that `added_tokens_decoder` does not list, matched in the raw
    /// text as transformers registers them: with their piece's id, or appended after the
    /// pieces in that order when no piece has them (a DeBERTa-v3 `spm.model` has no
    /// `[MASK]`; a tokenizer_config.json transformers 5 wrote has no `added_tokens_decoder`).
    static func namedSpecials(_ config: [String: Any], pieces: [String], decoded: Set<String>)
        -> [(content: String, id: Int32, lstrip: Bool, rstrip: Bool)]
    {
        func content(_ v: Any?) -> String? { (v as? String) ?? ((v as? [String: Any])?["content"] as? String) }
        var names = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]
            .compactMap { content(config[$0]) }
        names += (config["extra_special_tokens"] as? [Any] ?? []).compactMap(content)
        var seen = decoded
        var out: [(content: String, id: Int32, lstrip: Bool, rstrip: Bool)] = []
        var next = Int32(pieces.count)
        for name in names where !name.isEmpty && seen.insert(name).inserted {
            if let i = pieces.firstIndex(of: name) {
                out.append((name, Int32(i), false, false))
            } else {
                out.append((name, next, false, false))
                next += 1
            }
        }
        return out
    }

    /// A byte-level BPE `tokenizer.json` run as written (see
    /// `TokenizerJSON.byteLevelAsWritten`), as transformers 5 runs ModernBERT's; the padding
    /// token is `tokenizer_config.json`'s `pad_token` (default `[PAD]`).
    public static func asWritten(directory: URL) throws -> HFTokenizer {
        let json = directory.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: json.path) else {
            throw TokenizerError(
                "\(directory.path): no tokenizer.json; this model's tokenizer is read from it as written")
        }
        let parsed = try TokenizerJSON.read(json)
        let (bpe, begin, end) = try TokenizerJSON.byteLevelAsWritten(parsed, source: json.path)
        let added = try TokenizerJSON.addedTokens(parsed, size: 1 << 24, source: json.path)
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        let config =
            (try? WholeFile.read(configURL)).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            ?? [:]
        let padName =
            (config["pad_token"] as? String) ?? ((config["pad_token"] as? [String: Any])?["content"] as? String)
            ?? "[PAD]"
        guard let padding = added.first(where: { $0.content == padName })?.id ?? bpe.vocabulary[padName] else {
            throw TokenizerError("\(json.path): the padding token \(padName) is neither an added token nor a piece")
        }
        return HFTokenizer(
            base: .byteLevel(bpe, begin: begin, end: end, padding: padding), added: AddedTokens(stripping: added),
            source: json.path)
    }

    /// `added_tokens_decoder` of `tokenizer_config.json`: id to token, with its flags.
    static func addedTokensDecoder(_ json: [String: Any], source: String) throws
        -> [(content: String, id: Int32, lstrip: Bool, rstrip: Bool, normalized: Bool)]
    {
        guard let raw = json["added_tokens_decoder"], !(raw is NSNull) else { return [] }
        guard let decoder = raw as? [String: Any] else {
            throw TokenizerError("\(source): 'added_tokens_decoder' is not an object")
        }
        return try decoder.keys.sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }.map { key in
            func fail(_ why: String) -> TokenizerError {
                TokenizerError("\(source): 'added_tokens_decoder'['\(key)'] \(why)")
            }
            guard let id = Int32(key), id >= 0, id < 1 << 24 else { throw fail("is not keyed by a token id") }
            guard let e = decoder[key] as? [String: Any], let content = e["content"] as? String, !content.isEmpty else {
                throw fail("has no 'content'")
            }
            func flag(_ k: String) throws -> Bool {
                guard let v = e[k], !(v is NSNull) else { return false }
                guard let b = JSONField.boolean(v) else {
                    throw fail("'\(k)' is \(JSONField.typeName(v)), not true or false")
                }
                return b
            }
            if try flag("single_word") { throw fail("('\(content)') is single_word, which tangent does not match") }
            return (content, id, try flag("lstrip"), try flag("rstrip"), try flag("normalized"))
        }
    }

    /// Boolean settings of `tokenizer_config.json`, each its default when absent; a value
    /// that is not true or false is an error naming the field.
    static func flags(_ url: URL?, _ defaults: [String: Bool]) throws -> [String: Bool] {
        guard let url, let data = try? WholeFile.read(url),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            return defaults
        }
        var out = defaults
        for key in defaults.keys {
            guard let v = json[key], !(v is NSNull) else { continue }
            guard let b = JSONField.boolean(v) else {
                throw TokenizerError("\(url.path): '\(key)' is \(JSONField.typeName(v)) (\(v)), not true or false")
            }
            out[key] = b
        }
        return out
    }

    /// A byte-level BPE framed by its `<s>` and `</s>`, padded with `<pad>`.
    static func byteLevel(
        _ bpe: ByteLevelBPE, added: [(content: String, id: Int32, lstrip: Bool, rstrip: Bool)], source: URL
    ) throws -> HFTokenizer {
        func id(_ piece: String) throws -> Int32 { try special(piece, in: bpe.vocabulary, source: source) }
        return HFTokenizer(
            base: .byteLevel(bpe, begin: try id("<s>"), end: try id("</s>"), padding: try id("<pad>")),
            added: AddedTokens(stripping: added), source: source.path)
    }

    /// The id of a framing or padding token, which the vocabulary must hold.
    static func special(_ piece: String, in vocabulary: [String: Int32], source: URL) throws -> Int32 {
        guard let i = vocabulary[piece] else {
            throw TokenizerError("\(source.path): the special token \(piece) is not in the vocabulary")
        }
        return i
    }

    /// Tokens matched as written, without taking the whitespace beside them.
    static func plain(_ tokens: [(content: String, id: Int32)]) -> [(
        content: String, id: Int32, lstrip: Bool, rstrip: Bool
    )] {
        tokens.map { ($0.content, $0.id, false, false) }
    }

    /// `add_prefix_space` of `tokenizer_config.json` (false when absent, as RobertaTokenizer).
    static func addPrefixSpace(_ url: URL?) throws -> Bool {
        try flags(url, ["add_prefix_space": false])["add_prefix_space"]!
    }

    /// The special tokens a tokenizer without `tokenizer.json` matches in text: the
    /// `defaults` of its class, the ones `tokenizer_config.json` names (`cls_token`, ...,
    /// `additional_special_tokens`, `added_tokens_decoder`), each with its id (`id(content)`;
    /// names without one are left out).
    static func namedTokens(_ url: URL?, defaults: [String], id: (String) -> Int32?) throws -> [(
        content: String, id: Int32
    )] {
        var names = defaults
        if let url {
            guard let data = try? WholeFile.read(url),
                let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else {
                throw TokenizerError("\(url.path): not a JSON object")
            }
            func content(_ v: Any?) -> String? { (v as? String) ?? ((v as? [String: Any])?["content"] as? String) }
            for key in ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] {
                if let c = content(json[key]) { names.append(c) }
            }
            for key in ["additional_special_tokens", "extra_special_tokens"] {
                names += ((json[key] as? [Any]) ?? []).compactMap(content)
            }
            names += ((json["added_tokens_decoder"] as? [String: Any]) ?? [:]).values.compactMap(content)
        }
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }.compactMap { n in id(n).map { (n, $0) } }
    }

    /// Token ids of `text`: added tokens matched, the text between them tokenized, framed
    /// (`[CLS] … [SEP]` or `<s> … </s>`) and truncated to `maxLength`.
    public func encode(_ text: String, maxLength: Int) throws -> [Int32] {
        var ids: [Int32] = []
        for piece in added.split(text) {
            switch piece {
            case .token(let id): ids.append(id)
            case .text(let s): ids += try baseIDs(s)
            }
        }
        let body = ids.prefix(max(0, maxLength - 2))
        switch base {
        case .wordPiece(let t): return [t.classifier] + body + [t.separator]
        case .sentencePiece: return [FairseqSentencePiece.begin] + body + [FairseqSentencePiece.end]
        case .byteLevel(_, let begin, let end, _), .unigram(_, let begin, let end, _): return [begin] + body + [end]
        }
    }

    private func baseIDs(_ text: String) throws -> [Int32] {
        switch base {
        case .wordPiece(let t): return t.ids(text)
        case .sentencePiece(let t): return try t.ids(text)
        case .byteLevel(let t, _, _, _): return try t.ids(text)
        case .unigram(let t, _, _, _): return try t.ids(text)
        }
    }

    /// The padding token's id.
    public var padID: Int32 {
        switch base {
        case .wordPiece(let t): return t.padding
        case .sentencePiece: return FairseqSentencePiece.padding
        case .byteLevel(_, _, _, let padding), .unigram(_, _, _, let padding): return padding
        }
    }

    /// The piece of `id` (nil outside the vocabulary).
    public func piece(_ id: Int32) -> String? {
        switch base {
        case .wordPiece(let t): return t.pieces.indices.contains(Int(id)) ? t.pieces[Int(id)] : nil
        case .sentencePiece(let t):
            let fairseq: [Int32: String] = [
                FairseqSentencePiece.begin: "<s>", FairseqSentencePiece.padding: "<pad>",
                FairseqSentencePiece.end: "</s>", FairseqSentencePiece.unknown: "<unk>", t.mask: "<mask>",
            ]
            return fairseq[id] ?? t.model.piece(id - 1)
        case .byteLevel(let t, _, _, _): return t.vocabulary.first { $0.value == id }?.key
        case .unigram(let t, _, _, _): return t.model.pieces.indices.contains(Int(id)) ? t.model.pieces[Int(id)] : nil
        }
    }

    /// How many ids the tokenizer can produce (added tokens beyond the pieces included).
    public var size: Int { max(baseSize, Int(added.tokens.map(\.id).max() ?? -1) + 1) }

    private var baseSize: Int {
        switch base {
        case .wordPiece(let t): return t.pieces.count
        case .sentencePiece(let t): return t.vocabSize
        case .byteLevel(let t, _, _, _): return t.vocabulary.count
        case .unigram(let t, _, _, _): return t.model.pieces.count
        }
    }

    /// Bytes that identify the tokenizer: its pieces and normalization settings, or the
    /// SentencePiece model, and the added tokens.
    public var identity: Data {
        var d: Data
        switch base {
        case .wordPiece(let t):
            d = Data(
                (["wordpiece", "lower \(t.lowercase)", "accents \(t.stripAccents)", "cjk \(t.splitChinese)"] + t.pieces)
                    .joined(separator: "\n").utf8)
        case .sentencePiece(let t): d = t.model.serializedModel
        case .byteLevel(let t, _, _, _):
            d = Data(
                (["byte-level-bpe", "prefix \(t.addPrefixSpace)"]
                    + t.vocabulary.sorted { $0.value < $1.value }.map(\.key)
                    + t.mergeList.map { $0.0 + " " + $0.1 }).joined(separator: "\n").utf8)
        case .unigram(let t, _, _, _): d = t.identity
        }
        if !added.tokens.isEmpty { d += Data("\nadded\n".utf8) + added.identity }
        return d
    }
}
