import Foundation
import TangentAttribution
import TangentData
import TangentEvaluation
import TangentFeatures
import TangentIO
import TangentModel
import TangentReports
import TangentSafetensors
import TangentSurrogate
import TangentTensor
import TangentTokenizer
import TangentTraining

/// One reader under fuzzing: the file extension its input gets, and what is done with it.
/// Every reader is driven through its public file entry point, as the CLI uses it; a
/// thrown error is the expected outcome for bad input, a trap or sanitizer report is a bug.
struct FuzzTarget: Sendable {
    let name: String
    let fileExtension: String
    let run: @Sendable (URL) throws -> Void

    static let all: [FuzzTarget] = [
        // Safetensors header and tensors, and the training record a checkpoint carries.
        FuzzTarget(name: "safetensors", fileExtension: "safetensors") { url in
            let file = try SafetensorsFile(url: url)
            for name in file.tensors.keys.sorted() {
                guard let info = file.tensors[name] else { continue }
                switch info.dtype {
                case .F32: _ = try file.float32(name)
                case .I64: _ = try file.int64(name)
                default: break
                }
            }
            _ = try? TrainingRecord.read(from: url)
        },
        // Feature files: metadata, block flags, then every tensor a scorer reads.
        FuzzTarget(name: "features", fileExtension: "safetensors") { url in
            let f = try FeatureFile(url: url)
            _ = try f.features(0..<f.metadata.texts)
            _ = try f.logits()
            _ = try f.labels()
            _ = try f.lines()
            for g in f.metadata.groupList { _ = try f.layerFeatures(0..<f.metadata.texts, group: g) }
        },
        // Feature-file metadata values rather than bytes: the input is a list of edits of a
        // valid file's header (sizes, shard fields, tensor shapes and dtypes), so the
        // readers meet every combination of forged numbers, not only unparsable JSON. Read
        // with WholeFile: Foundation's Data(contentsOf:) leaks on empty files.
        FuzzTarget(name: "feature-metadata", fileExtension: "bin") { url in
            // Fewer than 9 bytes hold no edit (and an empty read leaks inside Foundation's Data).
            var st = stat()
            guard stat(url.path, &st) == 0, st.st_size >= 9 else { return }
            let edited = url.appendingPathExtension("safetensors")
            try MetadataEdits(WholeFile.read(url)).apply(to: WholeFile.read(MetadataEdits.template), writing: edited)
            let f = try FeatureFile(url: edited)
            try f.requireFinite()
            _ = try f.labels()
            _ = try f.lines()
            for g in f.metadata.groupList { _ = try f.layerFeatures(0..<min(f.metadata.texts, 4), group: g) }
            _ = try StreamedFeatures(file: f, normalized: true, budget: 1 << 16, threads: 1)
        },
        FuzzTarget(name: "jsonl", fileExtension: "jsonl") { try readData($0) },
        FuzzTarget(name: "csv", fileExtension: "csv") { try readData($0) },
        FuzzTarget(name: "tsv", fileExtension: "tsv") { try readData($0) },
        FuzzTarget(name: "config", fileExtension: "json") { _ = try ModelDirectory.loadConfig($0) },
        FuzzTarget(name: "labels", fileExtension: "json") { _ = try LabelSet.load($0) },
        // Report JSON as `render-report` reads it, then rendered as it would be.
        FuzzTarget(name: "report", fileExtension: "json") { url in
            if let r = try? ReportFile.read(ComparisonReport.self, from: url) {
                _ = ReportHTML.render(r)
                _ = ReportMarkdown.comparison(r)
            }
            if let p = try? ReportFile.read(PoisonReport.self, from: url) { _ = ReportMarkdown.poisoning(p) }
        },
        // Hugging Face tokenizer and config files, as a model directory's loader reads them.
        // vocab.txt and SentencePiece .model bytes as they come; the JSON files as edits of
        // a valid file's values (see `JSONEdits`), so the readers meet wrong types, sizes and
        // missing fields, not only unparsable text.
        FuzzTarget(name: "vocab", fileExtension: "txt") { url in
            let tok = try WordPieceTokenizer(vocabulary: url)
            for text in HFFixtures.texts { _ = tok.encode(text, maxLength: 64) }
        },
        FuzzTarget(name: "sentencepiece", fileExtension: "model") { url in
            let tok = try Tokenizer(contentsOf: url)
            for text in HFFixtures.texts { _ = try tok.encode(text) }
            let fairseq = try FairseqSentencePiece(model: tok)
            for text in HFFixtures.texts { _ = try fairseq.encode(text, maxLength: 64) }
        },
        FuzzTarget(name: "tokenizer-json", fileExtension: "bin") { url in
            // The first byte picks the template: BERT's WordPiece, XLM-R's Unigram, RoBERTa's
            // byte-level BPE, ALBERT's Unigram, DeBERTa's, or ModernBERT's byte-level file run as written.
            let edits = try WholeFile.read(url)
            let kind = HFFixtures.Kind.allCases[Int(edits.first ?? 0) % HFFixtures.Kind.allCases.count]
            let dir = try HFFixtures.directory(url, files: kind == .wordPiece ? ["tokenizer_config.json"] : [])
            try JSONEdits(edits.dropFirst()).apply(
                to: kind.template, writing: dir.appendingPathComponent("tokenizer.json"))
            try HFFixtures.encode(dir, kind: kind)
        },
        FuzzTarget(name: "hf-config", fileExtension: "bin") { url in
            // The first byte picks the template: the BERT, DistilBERT (learned and sinusoidal positions), ELECTRA, ALBERT, DeBERTa or ModernBERT (both settings each) fixture's config.json.
            let input = try WholeFile.read(url)
            let templates = [
                "hf-bert", "hf-distilbert", "hf-distilbert-sinusoidal", "hf-electra", "hf-albert", "hf-deberta",
                "hf-deberta-own", "hf-modernbert",
                "hf-modernbert-biased",
            ]
            let template = URL(fileURLWithPath: "Tests/TangentTests/Fixtures").appendingPathComponent(
                templates[Int(input.first ?? 0) % templates.count])
            let dir = try HFFixtures.directory(url, files: [])
            try JSONEdits(input.dropFirst()).apply(
                to: template.appendingPathComponent("config.json"), writing: dir.appendingPathComponent("config.json"))
            guard
                let json = try JSONSerialization.jsonObject(
                    with: WholeFile.read(dir.appendingPathComponent("config.json"))) as? [String: Any]
            else { return }
            let config = try HFEncoderConfig(json: json, source: "config.json")
            _ = (
                config.maxTokens, config.parameterCount(classes: 2), config.trainingBytes(batch: 8, classes: 2),
                config.identity
            )
            // DeBERTa's relative rows stay inside the table for every length.
            if let r = config.relative, r.enabled {
                for length in [1, 2, 3, 17, config.maxTokens] where length <= config.maxTokens {
                    let rows = r.usedRows(length: length)
                    guard rows.lowerBound >= 0, rows.upperBound < 2 * r.span else {
                        fatalError("rows \(rows) outside \(2 * r.span)")
                    }
                }
            }
            // ModernBERT: a layer type per layer, and rotary tables for every position.
            if let m = config.modern {
                guard m.global.count == config.layers else {
                    fatalError("\(m.global.count) layer types for \(config.layers) layers")
                }
                if config.maxTokens <= 1 << 16 {
                    _ = try ModernBertClassifier<Float>.layout(config: config, classes: 2)
                }
            }
            // Every applied layer's weights exist (ALBERT's groups).
            for l in 0..<min(config.appliedLayers, 1 << 16) {
                let set = config.parameterSet(applied: l)
                guard set.group * config.innerLayers + set.inner < config.parameterSets else {
                    fatalError("layer \(l) uses weights \(set) beyond \(config.parameterSets)")
                }
            }
        },
        FuzzTarget(name: "tokenizer-config", fileExtension: "bin") { url in
            let dir = try HFFixtures.directory(url, files: ["vocab.txt"])
            try JSONEdits(WholeFile.read(url)).apply(
                to: HFFixtures.bert.appendingPathComponent("tokenizer_config.json"),
                writing: dir.appendingPathComponent("tokenizer_config.json"))
            try HFFixtures.encode(dir)
        },
        FuzzTarget(name: "safetensors-index", fileExtension: "bin") { url in
            let dir = try HFFixtures.directory(url, files: [])
            let sharded = URL(fileURLWithPath: "Tests/TangentTests/Fixtures/hf-shipped/bert-sharded")
            for shard in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
                try FileManager.default.copyItem(
                    at: sharded.appendingPathComponent(shard), to: dir.appendingPathComponent(shard))
            }
            try JSONEdits(WholeFile.read(url)).apply(
                to: sharded.appendingPathComponent("model.safetensors.index.json"),
                writing: dir.appendingPathComponent("model.safetensors.index.json"))
            let checkpoint = try SafetensorsCheckpoint(directory: dir)
            for name in checkpoint.tensors.keys.sorted() { _ = try? checkpoint.floatsWidened(name) }
        },
    ]

    /// Data files as training (labels required) and as prediction input (labels optional).
    static func readData(_ url: URL) throws {
        if let texts = try? DatasetReader().read(url) { _ = try? LabelSet(collecting: texts) }
        _ = try DatasetReader(textColumn: "text", labelColumn: "label", requireLabels: false).read(url)
    }
}

/// Fuzz input as edit records: a little-endian selector of `selectorBytes` bytes, then a
/// little-endian Int64 value; a trailing partial record is ignored.
func editRecords(_ data: Data, selectorBytes: Int) -> [(UInt64, Int64)] {
    let bytes = [UInt8](data)
    let size = selectorBytes + 8
    var out: [(UInt64, Int64)] = []
    var i = 0
    while i + size <= bytes.count {
        var selector: UInt64 = 0
        var bits: UInt64 = 0
        for k in 0..<selectorBytes { selector |= UInt64(bytes[i + k]) << UInt64(8 * k) }
        for k in 0..<8 { bits |= UInt64(bytes[i + selectorBytes + k]) << UInt64(8 * k) }
        out.append((selector, Int64(bitPattern: bits)))
        i += size
    }
    return out
}

/// Edits of a feature file's header read from fuzz input: records of 9 bytes, a field
/// selector and a little-endian Int64 value (selectors with the top bit set take the value
/// modulo 300, so small numbers, where the interesting boundaries are, come up often).
struct MetadataEdits {
    static let metadataFields = [
        "texts", "outputs", "width", "classes", "proj_dim", "block_size", "shard_first", "set_texts", "shard",
    ]
    static let tensors = ["features", "logits", "labels", "lines", "done", "layer_features"]
    static let dtypes = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"]
    /// A valid feature file with layer groups, from the committed seed corpus (read for
    /// every input: a copy kept in a static was reported as a leak by LeakSanitizer).
    static let template = URL(fileURLWithPath: "Fuzz/corpus/features/pntk-layers.safetensors")

    let records: [(UInt8, Int64)]

    init(_ data: Data) {
        records = editRecords(data, selectorBytes: 1).map { (UInt8($0.0), $0.1) }
    }

    func apply(to template: Data, writing url: URL) throws {
        guard template.count > 8 else { throw CocoaError(.fileReadCorruptFile) }
        var n = 0
        for (k, byte) in template.prefix(8).enumerated() { n |= Int(byte) << (8 * k) }
        guard var json = try JSONSerialization.jsonObject(with: template.subdata(in: 8..<(8 + n))) as? [String: Any]
        else { return }
        var meta = json["__metadata__"] as? [String: String] ?? [:]
        for (selector, raw) in records {
            let value = selector & 0x80 != 0 ? Int64(UInt64(bitPattern: raw) % 300) : raw
            let field = Int(selector & 0x7F)
            let fields = MetadataEdits.metadataFields.count
            let tensors = MetadataEdits.tensors.count
            if field < fields {
                let name = MetadataEdits.metadataFields[field]
                meta[name] = name == "shard" ? "\(value % 8)/\((value >> 8) % 8)" : String(value)
            } else if field < fields + 4 * tensors {
                // A shape dimension (4 per tensor; a dimension past the rank appends one).
                let t = MetadataEdits.tensors[(field - fields) / 4]
                let dim = (field - fields) % 4
                guard var entry = json[t] as? [String: Any], var shape = entry["shape"] as? [Int] else { continue }
                if dim < shape.count { shape[dim] = Int(value) } else { shape.append(Int(value)) }
                entry["shape"] = shape
                json[t] = entry
            } else {
                let t = MetadataEdits.tensors[(field - fields - 4 * tensors) % tensors]
                guard var entry = json[t] as? [String: Any] else { continue }
                entry["dtype"] =
                    MetadataEdits.dtypes[Int(UInt64(bitPattern: value) % UInt64(MetadataEdits.dtypes.count))]
                json[t] = entry
            }
        }
        json["__metadata__"] = meta
        var header = try JSONSerialization.data(withJSONObject: json)
        let length = (max(n, header.count) + 7) / 8 * 8
        header.append(Data(repeating: 0x20, count: length - header.count))
        var out = Data()
        for k in 0..<8 { out.append(UInt8((length >> (8 * k)) & 0xFF)) }
        out.append(header)
        out.append(template.subdata(in: (8 + n)..<template.count))
        try out.write(to: url)
    }
}

/// The process's target (TANGENT_FUZZ_TARGET) and its scratch file on tmpfs.
final class Session: @unchecked Sendable {
    let target: FuzzTarget
    let input: URL

    init() {
        let name = ProcessInfo.processInfo.environment["TANGENT_FUZZ_TARGET"] ?? ""
        guard let t = FuzzTarget.all.first(where: { $0.name == name }) else {
            let names = FuzzTarget.all.map(\.name).joined(separator: ", ")
            FileHandle.standardError.write(Data("TANGENT_FUZZ_TARGET must be one of: \(names) (got '\(name)')\n".utf8))
            exit(2)
        }
        target = t
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let dir = URL(fileURLWithPath: base).appendingPathComponent("tangent-fuzz-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        input = dir.appendingPathComponent("input.\(t.fileExtension)")
    }
}

nonisolated(unsafe) var session: Session?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard let s = session else { return 0 }
    // Written with plain write(2): the harness must not add Foundation work per input.
    let fd = open(s.input.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    var done = 0
    while done < size {
        let n = write(fd, data + done, size - done)
        if n <= 0 { break }
        done += n
    }
    close(fd)
    try? s.target.run(s.input)
    return 0
}

// SwiftPM links executables with `main` renamed to `TangentFuzz_main`, so libFuzzer's own
// `main` is never pulled in; this entry point hands the command line to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
) -> Int32

@_cdecl("TangentFuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    session = Session()
    var count = argc
    var args = argv
    return runFuzzerDriver(&count, &args) { data, size in fuzzerTestOneInput(data, size) }
}

/// The committed Hugging Face fixtures the tokenizer and config targets start from, and
/// the texts they encode (literal special tokens, accents, CJK, runs of spaces).
enum HFFixtures {
    static let bert = URL(fileURLWithPath: "Tests/TangentTests/Fixtures/hf-bert")
    static let wordPieceJSON = URL(fileURLWithPath: "Tests/TangentTests/Fixtures/hf-edge/wordpiece-both/tokenizer.json")
    static let unigramJSON = URL(fileURLWithPath: "Tests/TangentTests/Fixtures/xlmr/saved/tokenizer.json")
    static let texts = [
        "Hello world, a fine film .", "[CLS] x [MASK]<mask> <s>y</s>", "Ça va? naïve café 東京 😀", "a   b\t\nc", "",
    ]

    /// A fresh directory beside `input` holding copies of the BERT fixture's `files`.
    static func directory(_ input: URL, files: [String]) throws -> URL {
        let dir = input.deletingLastPathComponent().appendingPathComponent("hf")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for f in files {
            try FileManager.default.copyItem(at: bert.appendingPathComponent(f), to: dir.appendingPathComponent(f))
        }
        return dir
    }

    /// The tokenizer.json templates of the fuzz targets, and the model type that reads each.
    enum Kind: CaseIterable {
        case wordPiece, unigram, byteLevel, albert, deberta, modernbert
        var template: URL {
            switch self {
            case .wordPiece: return wordPieceJSON
            case .unigram: return unigramJSON
            case .byteLevel: return URL(fileURLWithPath: "Tests/TangentTests/Fixtures/bpe/saved/tokenizer.json")
            case .albert:
                return URL(fileURLWithPath: "Tests/TangentTests/Fixtures/albert-tokenizer/saved/tokenizer.json")
            case .deberta: return URL(fileURLWithPath: "Tests/TangentTests/Fixtures/hf-deberta/tokenizer.json")
            case .modernbert: return URL(fileURLWithPath: "Tests/TangentTests/Fixtures/hf-modernbert/tokenizer.json")
            }
        }
        var modelType: String {
            switch self {
            case .wordPiece: return "bert"
            case .unigram: return "xlm-roberta"
            case .byteLevel: return "roberta"
            case .albert, .deberta: return "albert"
            case .modernbert: return "modernbert"
            }
        }
    }

    /// Loads the tokenizer in `dir` as the loader of `kind`'s model type does, with the
    /// fixture's config, and encodes the texts.
    static func encode(_ dir: URL, kind: Kind = .wordPiece) throws {
        if kind == .deberta {
            let tok = try HFTokenizer.debertaV2(directory: dir)
            for text in texts { _ = try tok.encode(text, maxLength: 512) }
            return
        }
        guard
            var json = try JSONSerialization.jsonObject(
                with: WholeFile.read(bert.appendingPathComponent("config.json"))) as? [String: Any]
        else { return }
        if kind != .wordPiece {
            json["model_type"] = kind.modelType
            json["vocab_size"] = 1 << 20
            // ModernBERT's padding token comes from its own files (no pad_token_id to check against).
            json["pad_token_id"] = kind == .albert ? 0 : kind == .modernbert ? nil : 1
        }
        let config = try HFEncoderConfig(json: json, source: "config.json")
        let tok = try HFTokenizer.load(directory: dir, config: config)
        let encoder = try HFTextEncoder(tokenizer: tok, directory: dir, config: config)
        for text in texts { _ = try encoder.encode(text) }
    }
}

/// Edits of a JSON file's values read from fuzz input: records of 10 bytes, a 2-byte selector of
/// the value to change (its path among the template's leaves and containers, in a fixed
/// order) and a little-endian Int64 whose low 4 bits pick the replacement: a whole number,
/// a negative or small one, a huge or fractional number, a string, true, false, null, an
/// empty string, list or object, or the key removed.
struct JSONEdits {
    let records: [(UInt16, Int64)]

    init(_ data: Data) {
        records = editRecords(data, selectorBytes: 2).map { (UInt16($0.0), $0.1) }
    }

    /// Paths to every value of `v` (object keys sorted, the first 4 entries of each list).
    static func paths(_ v: Any, _ prefix: [Any] = []) -> [[Any]] {
        var out: [[Any]] = prefix.isEmpty ? [] : [prefix]
        if let o = v as? [String: Any] {
            for k in o.keys.sorted() { out += paths(o[k]!, prefix + [k]) }
        } else if let a = v as? [Any] {
            for i in a.indices.prefix(4) { out += paths(a[i], prefix + [i]) }
        }
        return out
    }

    static func replacement(_ value: Int64) -> Any? {
        let v = value >> 4
        switch value & 0xF {
        case 0: return Int(v)
        case 1: return -Int(v & 0xFFFF)
        case 2: return Int(v % 300)
        case 3: return 1e30 * Double(v & 0xFF)
        case 4: return Double(v & 0xFFFF) / 7
        case 5: return String(v)
        case 6: return true
        case 7: return false
        case 8: return NSNull()
        case 9: return ""
        case 10: return [Any]()
        case 11: return [String: Any]()
        case 12:
            let words = [
                "<s>", "[CLS]", "gelu", "absolute", "WordPiece", "Unigram", "bert", "xlm-roberta",
                "../model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
            ]
            return words[Int(UInt64(bitPattern: v) % UInt64(words.count))]
        default: return nil
        }
    }

    static func set(_ root: Any, _ path: ArraySlice<Any>, _ new: Any?) -> Any? {
        guard let head = path.first else { return new }
        if var o = root as? [String: Any], let k = head as? String {
            o[k] = o[k].flatMap { set($0, path.dropFirst(), new) } ?? (path.count == 1 ? new : nil)
            return o
        }
        if var a = root as? [Any], let i = head as? Int, a.indices.contains(i) {
            if let v = set(a[i], path.dropFirst(), new) { a[i] = v } else { a.remove(at: i) }
            return a
        }
        return root
    }

    func apply(to template: URL, writing url: URL) throws {
        var json = try JSONSerialization.jsonObject(with: WholeFile.read(template))
        for (selector, value) in records {
            let paths = JSONEdits.paths(json)
            guard !paths.isEmpty else { break }
            json = JSONEdits.set(json, paths[Int(selector) % paths.count][...], JSONEdits.replacement(value)) ?? json
        }
        try JSONSerialization.data(withJSONObject: json).write(to: url)
    }
}
