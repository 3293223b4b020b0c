import Foundation
import TangentTokenizer
import Testing

@Suite(.singleThreadedBLAS) struct TokenizerTests {
    struct Fixture: Decodable {
        struct Meta: Decodable { let vocab_size, pad_id, unk_id, bos_id, eos_id: Int }
        struct Case: Decodable {
            let text: String
            let ids: [Int32]
        }
        let meta: Meta
        let cases: [Case]
    }

    @Test func idsEqualThoseOfThePythonPackage() throws {
        let tok = try Tokenizer(contentsOf: fixture("tokenizer-600.model"))
        let fx = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixture("tokenizer-ids.json")))
        #expect(tok.vocabSize == fx.meta.vocab_size)
        #expect(Int(tok.padID) == fx.meta.pad_id && Int(tok.unkID) == fx.meta.unk_id)
        #expect(Int(tok.bosID) == fx.meta.bos_id && Int(tok.eosID) == fx.meta.eos_id)
        #expect(fx.cases.count > 100)
        for c in fx.cases {
            #expect(try tok.encode(c.text) == c.ids, "text: \(c.text)")
        }
    }

    @Test func byteFallbackLeavesNoUnknownAndRoundTrips() throws {
        let tok = try Tokenizer(contentsOf: fixture("tokenizer-600.model"))
        let text = "Snowman ☃, emoji 🙂 and 日本語 text"
        let ids = try tok.encode(text)
        #expect(!ids.contains(tok.unkID))
        #expect(try tok.decode(ids) == text)
    }

    @Test func trainingGivesTheSpecialIdsAndIsDeterministic() throws {
        let texts = (0..<300).map {
            "sample text number \($0) with words like \(["alpha", "beta", "gamma"][$0 % 3]) and more"
        }
        let a = try Tokenizer.train(texts: texts, options: .init(vocabSize: 300))
        let b = try Tokenizer.train(texts: texts, options: .init(vocabSize: 300))
        #expect(a.vocabSize == 300)
        #expect((a.padID, a.unkID, a.bosID, a.eosID) == (0, 1, 2, 3))
        #expect(a.serializedModel == b.serializedModel)
    }

    @Test func libraryErrorsReachSwift() throws {
        let error = #expect(throws: TokenizerError.self) {
            try Tokenizer(serializedModel: Data("not a model".utf8), source: "garbage.model")
        }
        #expect(error?.description.contains("garbage.model") == true)
        let tooBig = #expect(throws: TokenizerError.self) {
            try Tokenizer.train(texts: ["a b c", "d e f"], options: .init(vocabSize: 5000))
        }
        // SentencePiece's own message says the vocabulary is too large.
        #expect(tooBig?.description.contains("SentencePiece") == true)
        #expect(tooBig?.description.lowercased().contains("vocab") == true)
    }
}
