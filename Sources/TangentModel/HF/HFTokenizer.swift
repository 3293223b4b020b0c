import Foundation
import TangentTokenizer

/// The tokenizer of a Hugging Face encoder directory, picked as `transformers` would
/// pick it for the model type: WordPiece (`vocab.txt`, with `tokenizer_config.json`) for
/// BERT; SentencePiece in fairseq's layout (`sentencepiece.bpe.model`, or a Unigram
/// `tokenizer.json` alone) for XLM-R and CamemBERT. Its ids must fit the model's
/// embedding table.
public enum HFTokenizer {
    case wordPiece(WordPieceTokenizer)
    case sentencePiece(FairseqSentencePiece)

    /// Loads the tokenizer in `directory` for `config`; errors name the file and why.
    public static func load(directory: URL, config: HFEncoderConfig) throws -> HFTokenizer {
        func file(_ name: String) -> URL? {
            let u = directory.appendingPathComponent(name)
            return FileManager.default.fileExists(atPath: u.path) ? u : nil
        }
        let tokenizer: HFTokenizer
        if !config.isRoberta {
            guard let vocab = file("vocab.txt") else {
                throw TokenizerError("\(directory.path): no vocab.txt; a BERT model's WordPiece tokenizer is read from vocab.txt and tokenizer_config.json")
            }
            tokenizer = .wordPiece(try WordPieceTokenizer(vocabulary: vocab, config: file("tokenizer_config.json")))
        } else if let model = file("sentencepiece.bpe.model") {
            tokenizer = .sentencePiece(try FairseqSentencePiece(model: Tokenizer(contentsOf: model)))
        } else if let json = file("tokenizer.json") {
            tokenizer = .sentencePiece(try TokenizerJSON.fairseqSentencePiece(json))
        } else if file("vocab.json") != nil || file("merges.txt") != nil {
            throw TokenizerError("\(directory.path): a byte-level BPE tokenizer (vocab.json, merges.txt) is not supported; SentencePiece (sentencepiece.bpe.model or a Unigram tokenizer.json) is")
        } else {
            throw TokenizerError("\(directory.path): no tokenizer (sentencepiece.bpe.model or tokenizer.json) for model type \(config.modelType)")
        }
        guard tokenizer.size <= config.vocabSize else {
            throw TokenizerError("\(tokenizer.source): \(tokenizer.size) token ids do not fit the model's 'vocab_size' \(config.vocabSize) (config.json): the tokenizer is not this model's")
        }
        return tokenizer
    }

    /// Token ids of `text`, framed and truncated to `maxLength`.
    public func encode(_ text: String, maxLength: Int) throws -> [Int32] {
        switch self {
        case .wordPiece(let t): return t.encode(text, maxLength: maxLength)
        case .sentencePiece(let t): return try t.encode(text, maxLength: maxLength)
        }
    }

    /// How many ids the tokenizer can produce.
    public var size: Int {
        switch self {
        case .wordPiece(let t): return t.pieces.count
        case .sentencePiece(let t): return t.vocabSize
        }
    }

    /// The file it was read from.
    public var source: String {
        switch self {
        case .wordPiece(let t): return t.source
        case .sentencePiece(let t): return t.model.source
        }
    }

    /// Bytes that identify the tokenizer: its pieces and normalization settings, or the
    /// SentencePiece model.
    public var identity: Data {
        switch self {
        case .wordPiece(let t):
            return Data((["wordpiece", "lower \(t.lowercase)", "accents \(t.stripAccents)", "cjk \(t.splitChinese)"] + t.pieces).joined(separator: "\n").utf8)
        case .sentencePiece(let t): return t.model.serializedModel
        }
    }
}
