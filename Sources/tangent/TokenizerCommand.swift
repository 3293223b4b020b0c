import ArgumentParser
import Foundation
import TangentData
import TangentIO
import TangentModel
import TangentTensor
import TangentTokenizer

struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer", abstract: "Train and inspect SentencePiece tokenizers.",
        subcommands: [TrainTokenizer.self, EncodeText.self])
}

struct TrainTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a SentencePiece model (pad 0, unk 1, bos 2, eos 3, byte fallback) on a data set's texts.")

    @Option(help: "Data file (.jsonl, .csv, .tsv) or a directory with train.*; only texts are used.")
    var data: String
    @Option(parsing: .unconditional, help: "Vocabulary size, including the 4 special pieces and 256 byte pieces.")
    var vocabSize: Int
    @Option(help: "Output path of the .model file.")
    var out: String
    @Option(help: "SentencePiece algorithm: unigram or bpe.")
    var modelType: TokenizerTrainingOptions.ModelType = .unigram
    @Option(parsing: .unconditional, help: "Random seed of the trainer.")
    var seed: UInt32 = 0
    @Flag(help: "Replace an existing output file.")
    var overwrite = false
    @OptionGroup var columns: ColumnOptions

    func validate() throws {
        guard vocabSize >= 264 else {
            throw ValidationError("--vocab-size must be at least 264 (4 special + 256 byte pieces)")
        }
    }

    func run() throws {
        try reportingErrors {
            try refuseOverlaps([("--out", out)], inputs: [("--data", data)])
            let outURL = fileURL(out)
            let lock = try claimOutputFile(
                out, kind: "SentencePiece model", overwrite: overwrite,
                isSameKind: { (try? Tokenizer(contentsOf: $0)) != nil })
            defer { withExtendedLifetime(lock) {} }
            let file = try DataLocation.file(fileURL(data), split: "train")
            let texts = try columns.reader(requireLabels: false).read(file).map(\.text)
            var options = TokenizerTrainingOptions(vocabSize: vocabSize)
            options.modelType = modelType
            options.seed = seed
            printError(
                "training \(modelType.rawValue) tokenizer with \(vocabSize) pieces on \(texts.count) texts of \(file.path)"
            )
            let tok = try Tokenizer.train(texts: texts, options: options)
            try AtomicFile.write(tok.serializedModel, to: outURL)
            print("wrote \(out) (\(tok.vocabSize) pieces)")
        }
    }
}

struct EncodeText: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode", abstract: "Print the ids and pieces of a text.")
    @Option(
        help:
            "SentencePiece .model file, or a model directory (tangent's or Hugging Face's: the ids its model sees, framing and truncation included)."
    )
    var tokenizer: String
    @Option(help: "Text to encode.") var text: String

    func run() throws {
        try reportingErrors {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: tokenizer, isDirectory: &isDirectory), isDirectory.boolValue {
                let clf = try Classifier(directory: fileURL(tokenizer), threads: 1)
                let ids = try clf.encode(text)
                print(ids.map(String.init).joined(separator: " "))
                let hf = (clf.encoder as? HFTextEncoder)?.tokenizer
                print(ids.map { (hf?.piece($0) ?? clf.tokenizer?.piece($0)) ?? "?" }.joined(separator: " "))
                return
            }
            let tok = try Tokenizer(contentsOf: fileURL(tokenizer))
            let ids = try tok.encode(text)
            print(ids.map(String.init).joined(separator: " "))
            print(ids.map { tok.piece($0) ?? "?" }.joined(separator: " "))
        }
    }
}
