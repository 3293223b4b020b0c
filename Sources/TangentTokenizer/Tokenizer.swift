import CSentencePiece
import Foundation
import TangentIO

/// Why a tokenizer could not be loaded, trained or used.
public struct TokenizerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A SentencePiece model (the C++ library behind a thin C shim). Ids equal those of
/// the `sentencepiece` Python package for the same `.model` file.
public final class Tokenizer {
    // The C++ processor is immutable after loading and its Encode/Decode are const,
    // so one instance can serve several threads.
    private let handle: OpaquePointer
    /// The file it was loaded from, for error messages.
    public let source: String
    /// The serialized ModelProto, so models can ship a copy of their tokenizer.
    public let serializedModel: Data

    /// Loads a `.model` file.
    public convenience init(contentsOf url: URL) throws {
        let data: Data
        do { data = try WholeFile.read(url) } catch {
            throw TokenizerError("\(url.path): cannot read tokenizer model: \((error as NSError).localizedDescription)")
        }
        try self.init(serializedModel: data, source: url.path)
    }

    /// Loads a model from its serialized bytes; `source` names it in errors.
    public init(serializedModel: Data, source: String) throws {
        try CharsMapCheck.check(model: serializedModel, source: source)
        var err: UnsafeMutablePointer<CChar>?
        let h = serializedModel.withUnsafeBytes { raw in
            spm_load_bytes(raw.baseAddress, raw.count, &err)
        }
        guard let h else {
            throw TokenizerError("\(source): not a SentencePiece model: \(Tokenizer.take(err) ?? "unknown error")")
        }
        self.handle = h
        self.source = source
        self.serializedModel = serializedModel
    }

    deinit { spm_free(handle) }

    private static func take(_ p: UnsafeMutablePointer<CChar>?) -> String? {
        guard let p else { return nil }
        defer { spm_free_string(p) }
        return String(cString: p)
    }

    public var vocabSize: Int { Int(spm_vocab_size(handle)) }
    public var padID: Int32 { spm_pad_id(handle) }
    public var unkID: Int32 { spm_unk_id(handle) }
    public var bosID: Int32 { spm_bos_id(handle) }
    public var eosID: Int32 { spm_eos_id(handle) }

    /// The piece string of `id`, or nil if out of range.
    public func piece(_ id: Int32) -> String? { Tokenizer.take(spm_id_to_piece(handle, id)) }

    /// Token ids of `text` (no BOS/EOS added).
    public func encode(_ text: String) throws -> [Int32] {
        var ids: UnsafeMutablePointer<Int32>?
        var count = 0
        var err: UnsafeMutablePointer<CChar>?
        let rc = Tokenizer.withBytes(text) { spm_encode(handle, $0, $1, &ids, &count, &err) }
        guard rc == 0, let ids else {
            throw TokenizerError("\(source): cannot encode text: \(Tokenizer.take(err) ?? "unknown error")")
        }
        defer { spm_free_ids(ids) }
        return Array(UnsafeBufferPointer(start: ids, count: count))
    }

    /// `text` as the model normalizes it (spaces as U+2581, the dummy prefix added).
    public func normalized(_ text: String) throws -> String {
        var out: UnsafeMutablePointer<CChar>?
        var count = 0
        var err: UnsafeMutablePointer<CChar>?
        // The library offers no normalizer of its own in this version, so this runs a whole
        // Encode and joins its pieces; callers that segment again pay for two segmentations.
        let rc = Tokenizer.withBytes(text) { spm_normalize(handle, $0, $1, &out, &count, &err) }
        guard rc == 0, let out else {
            throw TokenizerError("\(source): cannot normalize text: \(Tokenizer.take(err) ?? "unknown error")")
        }
        defer { spm_free_string(out) }
        // By length: the normalized text may hold NUL characters.
        return out.withMemoryRebound(to: UInt8.self, capacity: count) {
            String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self)
        }
    }

    /// The score (log probability) of `id`'s piece, and whether it is a normal piece.
    public func score(_ id: Int32) -> Float { spm_score(handle, id) }
    public func isNormal(_ id: Int32) -> Bool { spm_is_normal(handle, id) != 0 }

    /// Calls `body` with `text`'s UTF-8 bytes and their count (a valid pointer even for
    /// empty text).
    private static func withBytes(_ text: String, _ body: (UnsafePointer<CChar>, Int) -> Int32) -> Int32 {
        var utf8 = Array(text.utf8CString)
        let count = utf8.count - 1  // without the terminating NUL
        return utf8.withUnsafeMutableBufferPointer { body($0.baseAddress!, count) }
    }

    /// Text of `ids`.
    public func decode(_ ids: [Int32]) throws -> String {
        var text: UnsafeMutablePointer<CChar>?
        var err: UnsafeMutablePointer<CChar>?
        let rc = ids.withUnsafeBufferPointer { spm_decode(handle, $0.baseAddress, $0.count, &text, &err) }
        guard rc == 0, let s = Tokenizer.take(text) else {
            throw TokenizerError("\(source): cannot decode ids: \(Tokenizer.take(err) ?? "unknown error")")
        }
        return s
    }
}

/// Options for training a SentencePiece model.
public struct TokenizerTrainingOptions: Sendable {
    public enum ModelType: String, Sendable, CaseIterable { case unigram, bpe }
    public var vocabSize: Int
    public var modelType: ModelType = .unigram
    /// Share of characters the model must cover; the rest go through byte fallback.
    public var characterCoverage: Double = 0.9995
    public var seed: UInt32 = 0
    public init(vocabSize: Int) { self.vocabSize = vocabSize }
}

extension Tokenizer {
    /// Trains a SentencePiece model on `texts` with `pad_id=0 unk_id=1 bos_id=2 eos_id=3`
    /// and byte fallback, so no text becomes `<unk>`. Returns the loaded tokenizer;
    /// its `serializedModel` is the `.model` file's content.
    public static func train(texts: [String], options: TokenizerTrainingOptions) throws -> Tokenizer {
        guard options.vocabSize >= 260 + 4 else {
            throw TokenizerError(
                "vocabulary size \(options.vocabSize) is too small: byte fallback alone needs 256 pieces plus 4 special ones (use at least 264)"
            )
        }
        guard !texts.isEmpty else { throw TokenizerError("no texts to train the tokenizer on") }
        // SentencePiece reads one sentence per line.
        let lines = texts.map { $0.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ") }
        let args = [
            "--vocab_size=\(options.vocabSize)",
            "--model_type=\(options.modelType.rawValue)",
            "--character_coverage=\(options.characterCoverage)",
            "--pad_id=0", "--unk_id=1", "--bos_id=2", "--eos_id=3",
            "--byte_fallback=true",
            "--max_sentence_length=1000000",
            "--hard_vocab_limit=true",
            // One thread: the trainer's parallel sums would make the model depend on scheduling.
            "--num_threads=1",
            "--minloglevel=1",
        ].joined(separator: " ")
        spm_set_min_log_level(1)
        spm_set_random_seed(options.seed)
        var bytes: UnsafeMutableRawPointer?
        var length = 0
        var err: UnsafeMutablePointer<CChar>?
        // All sentences in one contiguous buffer, alive for the whole call.
        var blob: [CChar] = []
        var starts: [Int] = []
        var lengths: [Int] = []
        for line in lines {
            starts.append(blob.count)
            lengths.append(line.utf8.count)
            blob.append(contentsOf: line.utf8.map { CChar(bitPattern: $0) })
        }
        blob.append(0)
        let rc = blob.withUnsafeBufferPointer { base in
            let pointers: [UnsafePointer<CChar>?] = starts.map { base.baseAddress! + $0 }
            return pointers.withUnsafeBufferPointer { pp in
                lengths.withUnsafeBufferPointer { lp in
                    spm_train(args, pp.baseAddress, lp.baseAddress, lines.count, &bytes, &length, &err)
                }
            }
        }
        guard rc == 0, let bytes else {
            throw TokenizerError("SentencePiece training failed: \(take(err) ?? "unknown error")")
        }
        defer { spm_free_bytes(bytes) }
        let data = Data(bytes: bytes, count: length)
        return try Tokenizer(serializedModel: data, source: "trained tokenizer")
    }
}
