import Foundation
import Testing

@testable import TangentTokenizer

/// The WordPiece tokenizer against `transformers` itself: the real all-MiniLM-L6-v2
/// vocabulary and the ids its tokenizer gave for 1,374 texts (the shipped data, unicode,
/// emoji, accents, Thai, CJK, control characters, long words, empty text, truncation),
/// written by scripts/make_wordpiece_fixture.py.
@Suite struct WordPieceTests {
    static func tokenizer() throws -> WordPieceTokenizer {
        try WordPieceTokenizer(
            vocabulary: fixture("wordpiece/vocab.txt"), config: fixture("wordpiece/tokenizer_config.json"))
    }

    @Test func idsEqualTransformers() throws {
        let tok = try Self.tokenizer()
        try expectReferenceIDs(fixture("wordpiece/ids.jsonl")) { tok.encode($0) }
    }

    /// The pieces themselves on cases whose rule is known: accents stripped and lower-cased,
    /// punctuation isolated, CJK split per character, `##` continuations, [UNK] past 100
    /// characters, framing and truncation.
    @Test func rulesOfTheBasicTokenizer() throws {
        let tok = try Self.tokenizer()
        #expect(tok.wordPieces("Ça, NAÏVE!") == ["ca", ",", "naive", "!"])
        #expect(tok.wordPieces("東京") == ["東", "京"])
        #expect(
            tok.wordPieces("playing") == ["playing"] && tok.wordPieces("unaffable").count > 1
                && tok.wordPieces("unaffable").dropFirst().allSatisfy { $0.hasPrefix("##") })
        #expect(tok.wordPieces(String(repeating: "a", count: 101)) == ["[UNK]"])
        #expect(tok.encode("") == [tok.classifier, tok.separator])
        let long = tok.encode(String(repeating: "word ", count: 600))
        #expect(long.count == 512 && long.first == tok.classifier && long.last == tok.separator)
    }

    @Test func missingSpecialTokenIsNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-wp-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "[PAD]\n[UNK]\n[CLS]\nhello\n".write(
            to: dir.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
        let error = #expect(throws: TokenizerError.self) {
            try WordPieceTokenizer(vocabulary: dir.appendingPathComponent("vocab.txt"))
        }
        #expect(error?.description.contains("[SEP]") == true && error?.description.contains("vocab.txt") == true)
    }
}

/// XLM-R's SentencePiece tokenization against `transformers`' XLMRobertaTokenizer on the
/// same 1,374 texts (a fixture model in XLM-R's layout, scripts/make_xlmr_tokenizer_fixture.py).
@Suite struct FairseqSentencePieceTests {
    /// From `sentencepiece.bpe.model`, and from the `tokenizer.json` alone that
    /// transformers 5 saves for the same tokenizer.
    @Test(arguments: ["xlmr/sentencepiece.bpe.model", "xlmr/saved/tokenizer.json"])
    func idsEqualTransformers(file: String) throws {
        let tok =
            file.hasSuffix(".json")
            ? try TokenizerJSON.fairseqSentencePiece(fixture(file))
            : try FairseqSentencePiece(model: Tokenizer(contentsOf: fixture(file)))
        #expect(tok.vocabSize == 1002 && tok.mask == 1001)
        try expectReferenceIDs(fixture("xlmr/ids.jsonl")) { try tok.encode($0) }
    }

    @Test func otherLayoutsAreRefused() throws {
        // tangent's own tokenizers put <pad> at 0.
        let error = #expect(throws: TokenizerError.self) {
            try FairseqSentencePiece(model: Tokenizer(contentsOf: fixture("tokenizer-600.model")))
        }
        #expect(error?.description.contains("XLM-R's layout") == true)
    }

    /// A tokenizer.json of another model type, or without fairseq's layout, is refused by field.
    @Test func otherTokenizerJSONIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-tj-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let original =
            try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("xlmr/saved/tokenizer.json")))
            as! [String: Any]
        func refused(_ edit: (inout [String: Any]) -> Void) throws -> String {
            var json = original
            edit(&json)
            let url = dir.appendingPathComponent("tokenizer.json")
            try JSONSerialization.data(withJSONObject: json).write(to: url)
            let error = #expect(throws: TokenizerError.self) { try TokenizerJSON.fairseqSentencePiece(url) }
            return error?.description ?? ""
        }
        #expect(
            try refused { j in
                var m = j["model"] as! [String: Any]
                m["type"] = "WordPiece"
                j["model"] = m
            }.contains("'model.type' is WordPiece"))
        #expect(
            try refused { j in
                var m = j["model"] as! [String: Any]
                m["unk_id"] = 0
                j["model"] = m
            }.contains("fairseq's layout"))
        #expect(try refused { j in j["normalizer"] = ["type": "NFKC"] }.contains("'normalizer'"))
    }
}

/// Checks `encode` against every {text, ids} line of a reference file (at least 1,000),
/// naming the first few texts that differ and where.
func expectReferenceIDs(_ url: URL, _ encode: (String) throws -> [Int32]) throws {
    let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
    #expect(lines.count >= 1000)
    var mismatches: [String] = []
    for line in lines {
        let c = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        let text = c["text"] as! String
        let expected = (c["ids"] as! [Int]).map(Int32.init)
        let got = try encode(text)
        if got != expected {
            let at =
                zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                ?? min(got.count, expected.count)
            mismatches.append(
                "\(text.prefix(40).debugDescription) (\(got.count) vs \(expected.count) ids): from id \(at), \(got.dropFirst(at).prefix(6)) vs \(expected.dropFirst(at).prefix(6))"
            )
        }
    }
    #expect(mismatches.isEmpty, "\(mismatches.count) of \(lines.count) differ, e.g. \(mismatches.prefix(5))")
}
