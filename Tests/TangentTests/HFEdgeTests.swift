import Foundation
import TangentIO
import Testing

@testable import TangentModel
@testable import TangentTokenizer

/// Where a Hugging Face directory is unusual, tangent does what `transformers` does
/// (scripts/make_hf_edge_fixtures.py wrote what transformers gave).
@Suite struct HFEdgeTests {
    static func json(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: fixture(path))) as! [String: Any]
    }

    /// Special tokens written in a text ([CLS], <mask>, a literal padding token, ...) get
    /// their own ids, and the logits match, padding positions included.
    @Test(arguments: ["bert", "xlmr"])
    func literalSpecialTokensMatchTransformers(name: String) throws {
        let model = try BertClassifier<Float>.load(directory: fixture(name == "bert" ? "hf-bert" : "hf-xlmr"))
        let tok = try HFTokenizer.load(
            directory: fixture(name == "bert" ? "hf-bert" : "xlmr/saved"), config: model.config)
        let cases = try HFEdgeTests.json("hf-edge/special-tokens.json")[name] as! [[String: Any]]
        #expect(cases.count >= 12)
        var ids: [[Int32]] = []
        for c in cases {
            let got = try tok.encode(c["text"] as! String, maxLength: 128)
            #expect(got == (c["ids"] as! [Int]).map(Int32.init), "\(name): \(c["text"]!)")
            ids.append(got)
        }
        let z = try model.forward(TokenBatch(sequences: ids, padID: model.shape.padID), rowInvariant: true)
        let expected = cases.flatMap { $0["logits"] as! [Double] }
        let worst = zip(z, expected).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? .infinity
        #expect(z.count == expected.count && worst < 1e-4, "\(name): largest relative logit difference \(worst)")
    }

    /// A vocab.txt whose pieces repeat: the last id wins, as in transformers.
    /// Beside tokenizer.json, a vocab.txt that disagrees is not read (transformers reads tokenizer.json).
    @Test(arguments: ["wordpiece-duplicate", "wordpiece-both"])
    func wordPieceFilesAsTransformersReadsThem(name: String) throws {
        let config = try BertClassifier<Float>.load(directory: fixture("hf-bert")).config
        let tok = try HFTokenizer.load(directory: fixture("hf-edge/\(name)"), config: config)
        let cases = try HFEdgeTests.json("hf-edge/\(name)/ids.json")["cases"] as! [[String: Any]]
        #expect(cases.count == 4)
        for c in cases {
            #expect(
                try tok.encode(c["text"] as! String, maxLength: 128) == (c["ids"] as! [Int]).map(Int32.init),
                "\(name): \(c["text"]!)")
        }
    }

    /// tokenizer_config.json values of the wrong JSON type: refused where transformers
    /// fails on them, loaded where it loads them.
    @Test func tokenizerConfigValuesAsTransformers() throws {
        let config = try BertClassifier<Float>.load(directory: fixture("hf-bert")).config
        let cases = try HFEdgeTests.json("hf-edge/tokenizer-config-values.json")["cases"] as! [[String: Any]]
        #expect(cases.count == 10)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-tokconfig-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: fixture("hf-bert/vocab.txt"), to: dir.appendingPathComponent("vocab.txt"))
        var base =
            try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("hf-bert/tokenizer_config.json")))
            as! [String: Any]
        for c in cases {
            let field = c["field"] as! String
            base[field] = c["value"]
            try JSONSerialization.data(withJSONObject: base).write(
                to: dir.appendingPathComponent("tokenizer_config.json"))
            defer { base[field] = nil }
            let loaded = Result {
                try HFTextEncoder(
                    tokenizer: HFTokenizer.load(directory: dir, config: config), directory: dir, config: config)
            }
            let fails = (c["transformers"] as! String).hasPrefix("fails")
            if case .failure(let e) = loaded {
                #expect(fails, "\(field) \(c["value"]!): refused but transformers loads it: \(e)")
                #expect("\(e)".contains("tokenizer_config.json") && "\(e)".contains(field), "\(e)")
            } else {
                #expect(!fails, "\(field) \(c["value"]!): loaded but transformers fails on it")
            }
        }
    }

    /// A checkpoint in shards (model.safetensors.index.json, as save_pretrained writes it
    /// above its shard size) loads with the same weights and transformers' logits.
    @Test func shardedCheckpointLoads() throws {
        let dir = fixture("hf-shipped/bert-sharded")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.safetensors").path))
        let sharded = try BertClassifier<Float>.load(directory: dir)
        let whole = try BertClassifier<Float>.load(directory: fixture("hf-bert"))
        #expect(sharded.parameterArray == whole.parameterArray)
        let tok = try HFTokenizer.load(directory: dir, config: sharded.config)
        let cases = try HFEdgeTests.json("hf-shipped/bert-sharded/reference.json")["cases"] as! [[String: Any]]
        let z = try sharded.forward(
            TokenBatch(
                sequences: cases.map { try tok.encode($0["text"] as! String, maxLength: 128) },
                padID: sharded.shape.padID),
            rowInvariant: true)
        let expected = cases.flatMap { $0["logits"] as! [Double] }
        #expect(zip(z, expected).allSatisfy { abs(Double($0) - $1) < 1e-5 }, "\(z) vs \(expected)")
    }

    /// Pretraining and masked-LM checkpoints as they ship: fine-tuning drops their heads and
    /// says which; used as a classifier they are refused (they have no classification head).
    @Test(arguments: ["bert-pretraining", "bert-mlm", "xlmr-mlm"])
    func pretrainingHeadsAreDroppedForFineTuning(name: String) throws {
        let dir = fixture("hf-shipped/\(name)")
        let m = try BertClassifier<Float>.load(directory: dir, newHead: (["a", "b"], 7))
        let expected = name == "xlmr-mlm" ? "lm_head." : "cls.predictions."
        #expect(
            !m.droppedTensors.isEmpty
                && m.droppedTensors.allSatisfy { $0.hasPrefix(name == "xlmr-mlm" ? "lm_head." : "cls.") }
                && m.droppedTensors.contains { $0.hasPrefix(expected) }, "\(m.droppedTensors)")
        #expect(throws: ModelError.self) { try BertClassifier<Float>.load(directory: dir) }
    }

    /// Added tokens split the text leftmost-first, longest among those starting at one place.
    @Test func addedTokensSplitLeftmostLongest() {
        let added = AddedTokens([("<s>", 0), ("<s>x", 7), ("</s>", 2)])
        #expect(added.split("a<s>xb</s>") == [.text("a"), .token(7), .text("b"), .token(2)])
        #expect(added.split("<s><s>") == [.token(0), .token(0)])
        #expect(added.split("") == [.text("")])
        #expect(added.split("é<s>ü") == [.text("é"), .token(0), .text("ü")])
    }
}

/// The normalization table of a `.model` file is checked before the SentencePiece library
/// reads it: a damaged one (fuzzing found that the library reads past its buffers on
/// them) is refused by name, a sound one loads.
@Suite struct SentencePieceModelCheckTests {
    /// The model's bytes with its normalizer's `precompiled_charsmap` edited by `edit`
    /// (the same length, so the protobuf framing stays valid).
    static func edited(_ edit: (inout [UInt8], Range<Int>) -> Void) throws -> Data {
        var bytes = [UInt8](try Data(contentsOf: fixture("tokenizer-600.model")))
        let top = try #require(ProtoFields(bytes))
        let spec = try #require(top.lengthDelimited.first { $0.0 == 3 }?.1)
        let inner = try #require(ProtoFields(Array(bytes[spec])))
        let map = try #require(inner.lengthDelimited.first { $0.0 == 2 }?.1)
        edit(&bytes, (spec.lowerBound + map.lowerBound)..<(spec.lowerBound + map.upperBound))
        return Data(bytes)
    }

    @Test func damagedTablesAreRefused() throws {
        #expect(try Tokenizer(serializedModel: Self.edited { _, _ in }, source: "sound.model").vocabSize == 600)
        // The root's offset pointed past the trie.
        let root = try Self.edited { b, r in
            b[r.lowerBound + 4 + 3] = 0xFF
            b[r.lowerBound + 4 + 2] = 0xFF
        }
        let e1 = #expect(throws: TokenizerError.self) { try Tokenizer(serializedModel: root, source: "root.model") }
        #expect(
            e1?.description.contains("root.model") == true && e1?.description.contains("precompiled_charsmap") == true)
        // Every NUL of the replacement strings overwritten: no replacement ends.
        let unterminated = try Self.edited { b, r in
            let trie =
                Int(b[r.lowerBound]) | Int(b[r.lowerBound + 1]) << 8 | Int(b[r.lowerBound + 2]) << 16 | Int(
                    b[r.lowerBound + 3]) << 24
            for i in (r.lowerBound + 4 + trie)..<r.upperBound where b[i] == 0 { b[i] = 0x41 }
        }
        let e2 = #expect(throws: TokenizerError.self) {
            try Tokenizer(serializedModel: unterminated, source: "nul.model")
        }
        #expect(e2?.description.contains("NUL") == true, "\(e2?.description ?? "")")
    }
}

/// A real XLM-R tokenizer.json (multilingual-e5-small's, 250k pieces, a Sequence of
/// Precompiled and Replace normalizers as the hub serves them; found by
/// scripts/real-tokenizers.sh, which scripts/test.sh runs and passes as TANGENT_REAL_XLMR):
/// the same ids as transformers on 1,227 texts (scripts/make_real_xlmr_fixture.py).
@Suite(
    .enabled(
        if: ProcessInfo.processInfo.environment["TANGENT_REAL_XLMR"] != nil,
        "set TANGENT_REAL_XLMR to the tokenizer.json (scripts/real-tokenizers.sh xlmr)"))
struct RealXLMRTokenizerTests {
    @Test func idsEqualTransformers() throws {
        let file = URL(fileURLWithPath: ProcessInfo.processInfo.environment["TANGENT_REAL_XLMR"]!)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-real-xlmr-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createSymbolicLink(
            at: dir.appendingPathComponent("tokenizer.json"), withDestinationURL: file)
        let config = try HFEncoderConfig(
            json: [
                "model_type": "xlm-roberta", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
                "intermediate_size": 64, "vocab_size": 250_002, "max_position_embeddings": 514,
                "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1,
            ], source: "config.json")
        let tok = try HFTokenizer.load(directory: dir, config: config)
        #expect(tok.size == 250_002)
        try expectReferenceIDs(fixture("real-xlmr/ids.jsonl")) { try tok.encode($0, maxLength: 512) }
    }
}

/// A real DeBERTa-v3 tokenizer (spm.model of 128k pieces, its tokenizer.json and
/// tokenizer_config.json; found by scripts/real-tokenizers.sh, which scripts/test.sh runs
/// and passes as TANGENT_REAL_DEBERTA): the same ids as transformers' DebertaV2Tokenizer on
/// 1,243 texts (scripts/make_real_deberta_fixture.py), from the directory as shipped and
/// from spm.model with tokenizer_config.json alone.
@Suite(
    .enabled(
        if: ProcessInfo.processInfo.environment["TANGENT_REAL_DEBERTA"] != nil,
        "set TANGENT_REAL_DEBERTA to the tokenizer directory (scripts/real-tokenizers.sh deberta)"))
struct RealDebertaTokenizerTests {
    @Test(arguments: [
        ["tokenizer.json", "tokenizer_config.json", "spm.model"], ["tokenizer_config.json", "spm.model"],
    ])
    func idsEqualTransformers(files: [String]) throws {
        let source = URL(fileURLWithPath: ProcessInfo.processInfo.environment["TANGENT_REAL_DEBERTA"]!)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-real-deberta-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for f in files {
            try FileManager.default.createSymbolicLink(
                at: dir.appendingPathComponent(f), withDestinationURL: source.appendingPathComponent(f))
        }
        let tok = try HFTokenizer.debertaV2(directory: dir)
        #expect(tok.size == 128_001 && tok.padID == 0)
        try expectReferenceIDs(fixture("real-deberta/ids.jsonl")) { try tok.encode($0, maxLength: 100_000) }
    }
}

/// GPT-2 / RoBERTa byte-level BPE (vocab.json + merges.txt trained with `tokenizers` on the
/// shipped texts, scripts/make_bpe_fixture.py): the same ids as transformers'
/// RobertaTokenizer on 1,231 texts, special tokens written in them included.
@Suite struct ByteLevelBPETests {
    @Test func idsEqualTransformers() throws {
        let bpe = try ByteLevelBPE.load(
            vocabulary: fixture("bpe/vocab.json"), merges: fixture("bpe/merges.txt"), addPrefixSpace: false)
        let specials = AddedTokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"].map { ($0, bpe.vocabulary[$0]!) })
        let lines = try String(contentsOf: fixture("bpe/ids.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count >= 1000)
        var mismatches: [String] = []
        for line in lines {
            let c = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let text = c["text"] as! String
            var ids: [Int32] = [bpe.vocabulary["<s>"]!]
            for piece in specials.split(text) {
                switch piece {
                case .token(let id): ids.append(id)
                case .text(let t): ids += try bpe.ids(t)
                }
            }
            ids.append(bpe.vocabulary["</s>"]!)
            if ids != (c["ids"] as! [Int]).map(Int32.init) { mismatches.append(text) }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) of \(lines.count) differ, e.g. \(mismatches.prefix(5))")
    }

    /// The same tokenizer as transformers 5 saves it (a BPE tokenizer.json) gives the same
    /// ids; with add_prefix_space in tokenizer_config.json and `<mask>` taking the space
    /// before it (lstrip, as the hub's RoBERTa files have it), the ids transformers gives then.
    @Test(arguments: [("bpe/saved", "bpe/ids.jsonl"), ("bpe/saved-prefix", "bpe/ids-prefix.jsonl")])
    func tokenizerJSONGivesTransformersIDs(directory: String, ids: String) throws {
        let config = try HFEncoderConfig(
            json: [
                "model_type": "roberta", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 8,
                "vocab_size": 1000, "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
                "pad_token_id": 1,
            ], source: "test")
        let tok = try HFTokenizer.load(directory: fixture(directory), config: config)
        guard case .byteLevel(let bpe, _, _, _) = tok.base else {
            Issue.record("not byte-level: \(tok.base)")
            return
        }
        #expect(bpe.addPrefixSpace == directory.hasSuffix("prefix") && tok.source.hasSuffix("tokenizer.json"))
        try expectReferenceIDs(fixture(ids)) { try tok.encode($0, maxLength: 100_000) }
    }

    /// A byte-level BPE tokenizer.json run as written, as transformers 5 runs ModernBERT's
    /// (TokenizersBackend: the file's add_prefix_space, its TemplateProcessing framing,
    /// `[MASK]` with lstrip): the ids transformers gives (scripts/make_bpe_as_written_fixture.py).
    @Test(arguments: ["plain", "prefix"])
    func asWrittenGivesTransformersIDs(name: String) throws {
        let tok = try HFTokenizer.asWritten(directory: fixture("bpe-as-written/\(name)"))
        guard case .byteLevel(let bpe, let begin, let end, let padding) = tok.base else {
            Issue.record("not byte-level")
            return
        }
        #expect(bpe.addPrefixSpace == (name == "prefix") && begin == 1001 && end == 1002 && padding == 1003)
        try expectReferenceIDs(fixture("bpe-as-written/ids-\(name).jsonl")) { try tok.encode($0, maxLength: 100_000) }
        // What would run differently is refused, naming the field.
        var json = try TokenizerJSON.read(fixture("bpe-as-written/\(name)/tokenizer.json"))
        json["normalizer"] = ["type": "NFC"]
        let e = #expect(throws: TokenizerError.self) { try TokenizerJSON.byteLevelAsWritten(json, source: "t.json") }
        #expect(e?.description.contains("'normalizer'") == true)
    }

    /// A BPE tokenizer.json that is not byte-level, or with damaged merges, is refused by field.
    @Test func badBPETokenizerJSONIsRefused() throws {
        var json = try TokenizerJSON.read(fixture("bpe/saved/tokenizer.json"))
        json["pre_tokenizer"] = ["type": "Whitespace"]
        let e1 = #expect(throws: TokenizerError.self) {
            try TokenizerJSON.byteLevelBPE(json, source: "t.json", addPrefixSpace: false)
        }
        #expect(e1?.description.contains("'pre_tokenizer'") == true)
        json = try TokenizerJSON.read(fixture("bpe/saved/tokenizer.json"))
        var model = json["model"] as! [String: Any]
        model["merges"] = [["a", "b"], "c d", ["e"]]
        json["model"] = model
        let e2 = #expect(throws: TokenizerError.self) {
            try TokenizerJSON.byteLevelBPE(json, source: "t.json", addPrefixSpace: false)
        }
        #expect(e2?.description.contains("'model.merges'[2]") == true)
    }

    /// A token with lstrip takes the whitespace before it; with rstrip, the whitespace after.
    @Test func strippingTokens() {
        let added = AddedTokens(stripping: [("<mask>", 4, true, false), ("<x>", 5, false, true)])
        #expect(added.split("hello  <mask> world") == [.text("hello"), .token(4), .text(" world")])
        #expect(added.split("a<x>   b") == [.text("a"), .token(5), .text("b")])
    }
}

/// ALBERT's tokenizer (scripts/make_albert_tokenizer_fixture.py): the Unigram model and
/// the normalizers transformers' AlbertTokenizer assembles, from spiece.model and from the
/// tokenizer.json transformers 5 saves, lowercased and cased: the ids transformers gives.
@Suite struct AlbertTokenizerTests {
    static let config: HFEncoderConfig = try! HFEncoderConfig(
        json: [
            "model_type": "albert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 8,
            "vocab_size": 1000, "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
            "pad_token_id": 0,
        ], source: "test")

    @Test(arguments: [
        (["spiece.model"], "ids.jsonl"), (["saved/tokenizer.json", "saved/tokenizer_config.json"], "ids.jsonl"),
        (["saved/tokenizer.json", "saved-cased/tokenizer_config.json"], "ids-cased.jsonl"),
    ])
    func idsEqualTransformers(files: [String], ids: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-albert-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for f in files {
            try FileManager.default.copyItem(
                at: fixture("albert-tokenizer/\(f)"), to: dir.appendingPathComponent((f as NSString).lastPathComponent))
        }
        let tok = try HFTokenizer.load(directory: dir, config: Self.config)
        try expectReferenceIDs(fixture("albert-tokenizer/\(ids)")) { try tok.encode($0, maxLength: 100_000) }
    }

    /// The Viterbi segmentation: best total score, an unknown character scored min - 10,
    /// consecutive unknowns fused into one id.
    @Test func unigramSegmentation() throws {
        let m = try UnigramModel(
            pieces: [("<unk>", 0), ("▁", -1), ("a", -2), ("b", -2), ("ab", -3), ("▁ab", -3.5), ("c", -9)],
            unknownID: 0, source: "test")
        #expect(m.ids("▁ab") == [5])
        #expect(m.ids("abab") == [4, 4])
        #expect(m.ids("▁xyza") == [1, 0, 2])
        #expect(m.ids("") == [])
    }
}

/// config.json as tangent writes it: floats stay floats (transformers 5 refuses
/// `initializer_cutoff_factor: 2`), and the rest reads back as written.
@Suite struct JSONTextTests {
    @Test func floatsStayFloatsAndValuesRoundTrip() throws {
        let source =
            #"{"f": 2.0, "i": 2, "b": true, "s": "a\"b\\c\n\u0001é", "small": 1e-05, "big": 160000.0, "n": null, "l": [1, 0.5, false], "o": {}}"#
        let parsed = try JSONSerialization.jsonObject(with: Data(source.utf8)) as! [String: Any]
        let optional: String? = "x"
        let missing: String? = nil
        var value = parsed
        value["opt"] = optional as Any
        value["none"] = missing as Any
        let text = String(decoding: try JSONText.data(value), as: UTF8.self)
        #expect(
            text.contains(#""f": 2.0"#) && text.contains(#""i": 2,"#) && text.contains(#""big": 160000.0"#)
                && text.contains(#""b": true"#))
        let back = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        #expect(back["s"] as? String == "a\"b\\c\n\u{1}é" && back["opt"] as? String == "x" && back["none"] is NSNull)
        #expect(
            JSONField.number(back["small"]) == 1e-5 && (back["l"] as? [Any])?.count == 3
                && (back["o"] as? [String: Any])?.isEmpty == true)
        #expect(String(cString: (back["f"] as! NSNumber).objCType) == "d")
    }
}
