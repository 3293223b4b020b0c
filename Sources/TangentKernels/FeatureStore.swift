import Foundation
import TangentIO
import TangentData
import TangentSafetensors
import TangentTensor

/// What a feature file holds, recorded in its metadata; files combine only when these agree.
public struct FeatureMetadata: Sendable, Equatable, Codable {
    /// `pntk`, `trntk`, `embedding` or `grad`.
    public var kernel: String
    /// Fingerprint of the model's weights and configuration.
    public var modelFingerprint: String
    public var modelPath: String
    /// Parameter prefixes (comma-separated), empty for `embedding`.
    public var params: String
    /// Projected dimension K (0: no projection, as for `embedding`).
    public var projDim: Int
    public var seed: UInt64
    /// The projector's tag (`ProjectorChoice.tag`), empty for `embedding`. Files written
    /// before sketches existed call it `distribution`.
    public var projector: String
    /// Vectors per text (1, or C for trntk) and their length.
    public var outputs: Int
    public var width: Int
    public var texts: Int
    public var classes: Int
    public var source: String
    /// Fingerprint of the texts, so a resumed run continues the same input.
    public var textsFingerprint: String
    public var blockSize: Int
    /// Layer groups with their own projected features (`layer_features`), comma-separated;
    /// empty when the file holds only the whole-model features.
    public var layerGroups: String = ""
    /// Shard files only (`Featurizer.run(shard:)`): "I/N", the index of the shard's first
    /// text in the whole set, and the whole set's size and texts fingerprint. `texts` and
    /// `textsFingerprint` then describe the shard's own texts.
    public var shard: String?
    public var shardFirst: Int?
    public var setTexts: Int?
    public var setFingerprint: String?

    /// The layer groups as a list.
    public var groupList: [String] { layerGroups.isEmpty ? [] : layerGroups.split(separator: ",").map(String.init) }

    enum CodingKeys: String, CodingKey {
        case kernel, modelFingerprint = "model_fingerprint", modelPath = "model", params, projDim = "proj_dim", seed
        case projector, outputs, width, texts, classes, source, textsFingerprint = "texts_fingerprint", blockSize = "block_size"
        case layerGroups = "layer_groups"
        case shard, shardFirst = "shard_first", setTexts = "set_texts", setFingerprint = "set_fingerprint"
    }

    /// The fingerprint of texts in their order (their texts only: labels are stored).
    public static func fingerprint(texts: some Collection<LabeledText>) -> String {
        TangentTensor.fingerprint(Data(texts.map(\.text).joined(separator: "\u{1F}").utf8))
    }

    /// This metadata (of the whole set `texts`) for shard `spec` of it.
    public func shard(_ spec: ShardSpec, of texts: [LabeledText]) throws -> FeatureMetadata {
        precondition(shard == nil && texts.count == self.texts)
        let r = spec.range(texts: texts.count, blockTexts: blockSize)
        guard !r.isEmpty else {
            let blocks = (texts.count + blockSize - 1) / blockSize
            throw ShardError("shard \(spec) gets no texts: \(texts.count) texts make \(blocks) block\(blocks == 1 ? "" : "s") of \(blockSize), so at most \(blocks) shard\(blocks == 1 ? "" : "s")")
        }
        var m = self
        m.shard = spec.description
        m.shardFirst = r.lowerBound
        m.setTexts = self.texts
        m.setFingerprint = textsFingerprint
        m.texts = r.count
        m.textsFingerprint = FeatureMetadata.fingerprint(texts: texts[r])
        return m
    }

    /// The shard this file is, when it is one.
    public var shardSpec: ShardSpec? { shard.flatMap { try? ShardSpec(parsing: $0) } }

    public init(kernel: String, modelFingerprint: String, modelPath: String, params: String, projDim: Int, seed: UInt64,
                projector: String, outputs: Int, width: Int, texts: Int, classes: Int, source: String,
                textsFingerprint: String, blockSize: Int) {
        self.kernel = kernel; self.modelFingerprint = modelFingerprint; self.modelPath = modelPath; self.params = params
        self.projDim = projDim; self.seed = seed; self.projector = projector; self.outputs = outputs; self.width = width
        self.texts = texts; self.classes = classes; self.source = source; self.textsFingerprint = textsFingerprint
        self.blockSize = blockSize
    }

    /// The header's `__metadata__` (keys as in `CodingKeys`; absent shard fields left out).
    var asStrings: [String: String] {
        var out: [String: String] = [
            "format": "tangent-features-1", "kernel": kernel, "model_fingerprint": modelFingerprint, "model": modelPath,
            "params": params, "proj_dim": String(projDim), "seed": String(seed), "projector": projector,
            "outputs": String(outputs), "width": String(width), "texts": String(texts), "classes": String(classes),
            "source": source, "texts_fingerprint": textsFingerprint, "block_size": String(blockSize), "layer_groups": layerGroups,
        ]
        if let shard { out["shard"] = shard }
        if let shardFirst { out["shard_first"] = String(shardFirst) }
        if let setTexts { out["set_texts"] = String(setTexts) }
        if let setFingerprint { out["set_fingerprint"] = setFingerprint }
        return out
    }

    init(strings m: [String: String], path: String) throws {
        guard m["format"] == "tangent-features-1" else {
            throw FeatureStoreError("\(path): not a tangent feature file (no format tag in its metadata)")
        }
        func s(_ k: String) throws -> String {
            guard let v = m[k] else { throw FeatureStoreError("\(path): metadata lacks '\(k)'") }
            return v
        }
        func i(_ k: String) throws -> Int {
            guard let v = Int(try s(k)) else { throw FeatureStoreError("\(path): metadata '\(k)' is not an integer") }
            return v
        }
        guard let seed = UInt64(try s("seed")) else { throw FeatureStoreError("\(path): metadata 'seed' is not an integer") }
        self.init(kernel: try s("kernel"), modelFingerprint: try s("model_fingerprint"), modelPath: try s("model"),
                  params: try s("params"), projDim: try i("proj_dim"), seed: seed, projector: try m["projector"] ?? s("distribution"),
                  outputs: try i("outputs"), width: try i("width"), texts: try i("texts"), classes: try i("classes"),
                  source: try s("source"), textsFingerprint: try s("texts_fingerprint"), blockSize: try i("block_size"))
        layerGroups = m["layer_groups"] ?? ""
        if let sh = m["shard"] {
            guard (try? ShardSpec(parsing: sh)) != nil, let first = m["shard_first"].flatMap(Int.init),
                  let total = m["set_texts"].flatMap(Int.init), let fp = m["set_fingerprint"] else {
                throw FeatureStoreError("\(path): shard metadata is incomplete or malformed (shard '\(sh)')")
            }
            shard = sh; shardFirst = first; setTexts = total; setFingerprint = fp
        }
        try validate(path: path)
    }

    /// The largest count any metadata field may claim: sizes are multiplied together
    /// (texts x outputs x width), so each stays far below Int's range.
    public static let maximumCount = 1 << 40

    /// Checks that the numbers a file claims describe a file this toolkit could have
    /// written: sizes in range, the vector shape that the kernel implies, a known kernel.
    /// Metadata is input: a forged or damaged header must give an error, not a trap.
    func validate(path: String) throws {
        func fail(_ field: String, _ why: String) -> FeatureStoreError {
            FeatureStoreError("\(path): metadata '\(field)' \(why)")
        }
        let limit = FeatureMetadata.maximumCount
        for (field, value) in [("texts", texts), ("outputs", outputs), ("width", width), ("classes", classes),
                               ("proj_dim", projDim), ("block_size", blockSize)] where value < 0 || value > limit {
            throw fail(field, "is \(value), outside 0...\(limit)")
        }
        guard blockSize >= 1 else { throw fail("block_size", "is \(blockSize); it must be at least 1") }
        guard let kind = FeatureKind(rawValue: kernel) else {
            throw fail("kernel", "is '\(kernel)', not one of \(FeatureKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard classes >= 2 else { throw fail("classes", "is \(classes); a classifier has at least 2") }
        guard width >= 1 else { throw fail("width", "is \(width); features have at least one dimension") }
        if kind.projected {
            guard projDim >= 1, width == projDim else {
                throw fail("width", "is \(width) but \(kernel) features are projected to proj_dim \(projDim)")
            }
        } else if projDim != 0 {
            throw fail("proj_dim", "is \(projDim) but \(kernel) features are not projected")
        }
        let expectedOutputs = kind == .trntk ? classes : 1
        guard outputs == expectedOutputs else {
            throw fail("outputs", "is \(outputs) but \(kernel) features of \(classes) classes have \(expectedOutputs) vector\(expectedOutputs == 1 ? "" : "s") per text")
        }
        if let first = shardFirst, let total = setTexts {
            guard total >= 0, total <= limit, first >= 0, first <= total, texts <= total - first else {
                throw fail("shard_first", "(\(first)) and texts (\(texts)) do not lie within the set's \(total) texts")
            }
        }
    }

    /// Why two feature files cannot be combined into one kernel, or nil when they can.
    public func incompatibility(with other: FeatureMetadata) -> String? {
        let d = differences(from: other, in: [.model, .kernel, .params, .projDim, .seed, .projector])
        return d.isEmpty ? nil : "they differ in " + d.joined(separator: ", ")
    }

    /// A setting that feature metadata records, for saying in words how two files differ.
    public enum Setting: Sendable, CaseIterable {
        case model, kernel, params, projDim, seed, projector, blockSize, texts, layerGroups, shard, shape,
             source, modelPath, set, shardCount
    }

    /// The settings among `settings` in which this metadata and `other` differ, each in
    /// words with both values ("seed (1 vs 9)"); with `now`, `other` is what the current
    /// run would write ("seed (1 vs 9 now)"). The one comparison behind resuming, cache
    /// checks, kernels of two files and merging shards.
    public func differences(from b: FeatureMetadata, in settings: [Setting], now: Bool = false) -> [String] {
        let a = self, now = now ? " now" : ""
        return settings.compactMap { setting -> String? in
            switch setting {
            case .model: a.modelFingerprint == b.modelFingerprint ? nil : "model (\(a.modelPath) vs \(b.modelPath)\(now))"
            case .kernel: a.kernel == b.kernel ? nil : "kernel (\(a.kernel) vs \(b.kernel)\(now))"
            case .params: a.params == b.params ? nil : "parameters (\(a.params) vs \(b.params)\(now))"
            case .projDim: a.projDim == b.projDim ? nil : "K (\(a.projDim) vs \(b.projDim)\(now))"
            case .seed: a.seed == b.seed ? nil : "seed (\(a.seed) vs \(b.seed)\(now))"
            case .projector: a.projector == b.projector ? nil : "projector (\(a.projector) vs \(b.projector)\(now))"
            case .blockSize: a.blockSize == b.blockSize ? nil : "block size (\(a.blockSize) vs \(b.blockSize)\(now))"
            case .texts:
                a.textsFingerprint == b.textsFingerprint && a.texts == b.texts ? nil
                    : "texts (\(a.texts) texts of \(a.source) vs \(b.texts) of \(b.source)\(now))"
            case .layerGroups: a.layerGroups == b.layerGroups ? nil : "per-layer groups ('\(a.layerGroups)' vs '\(b.layerGroups)'\(now))"
            case .shard: a.shard == b.shard ? nil : "shard (\(a.shard ?? "none") vs \(b.shard ?? "none")\(now))"
            case .shape:
                a.classes == b.classes && a.outputs == b.outputs && a.width == b.width ? nil
                    : "shape (\(a.classes) classes, \(a.outputs) x \(a.width) per text vs \(b.classes), \(b.outputs) x \(b.width)\(now))"
            case .source: a.source == b.source ? nil : "source (\(a.source) vs \(b.source)\(now))"
            case .modelPath: a.modelPath == b.modelPath ? nil : "model path (\(a.modelPath) vs \(b.modelPath)\(now))"
            case .set:
                a.setTexts == b.setTexts && a.setFingerprint == b.setFingerprint ? nil
                    : "texts (a set of \(a.setTexts ?? 0) texts with fingerprint \(a.setFingerprint ?? "-") vs \(b.setTexts ?? 0) with \(b.setFingerprint ?? "-")\(now))"
            case .shardCount:
                a.shardSpec?.count == b.shardSpec?.count ? nil : "shard count (\(a.shardSpec?.count ?? 0) vs \(b.shardSpec?.count ?? 0)\(now))"
            }
        }
    }
}

/// A feature file that cannot be used; the message names the file.
public struct FeatureStoreError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Writes a feature file block by block. The safetensors header (all shapes are known
/// up front) is written first and the data area preallocated; each finished block is
/// written in place and then flagged in the `done` tensor, so a run interrupted at any
/// point resumes without redoing finished blocks. The file is built under
/// `NAME.partial`, locked (flock) for the whole run so a second run on the same output
/// refuses at once, and renamed over `NAME` in one rename(2) when complete.
///
/// Tensors: `features` F32 [n, outputs, width]; `logits` F32 [n, C]; `labels` I64 [n]
/// (-1: none); `lines` I64 [n] (line or row of each text in its source); `done` U8 [blocks];
/// with layer groups, `layer_features` F32 [n, groups, outputs, width].
public final class FeatureWriter {
    public let url: URL
    public let partialURL: URL
    public let metadata: FeatureMetadata
    public let blocks: Int
    private let handle: FileHandle
    private let lock: OutputLock
    private let offsets: [String: Int]
    /// Blocks already finished (by an earlier, interrupted run included).
    public private(set) var done: [Bool]

    /// What may happen to an existing file at the output path.
    public enum Replace: Sendable {
        /// Refuse (the default without `--overwrite`).
        case never
        /// Replace a finished or damaged tangent feature file, nothing else (`--overwrite`).
        case featureFile
        /// Replace any regular file: for cache entries, whose names the toolkit chose.
        case anyFile
    }

    /// Opens or creates `url.partial` and locks it. An existing partial file with the
    /// same metadata is resumed; one with other metadata is started again only when
    /// `replace` allows replacing the output.
    public init(url: URL, metadata: FeatureMetadata, labels: [Int64], lines: [Int64], replace: Replace) throws {
        self.url = url
        self.partialURL = URL(fileURLWithPath: url.path + ".partial")
        self.metadata = metadata
        let n = metadata.texts
        blocks = (n + metadata.blockSize - 1) / metadata.blockSize
        try FeatureWriter.checkOutput(url, replace: replace)
        lock = try OutputLock(partialURL, what: "this feature file", removeWhenDone: false)
        // Checked again under the lock: another run may have finished it meanwhile.
        try FeatureWriter.checkOutput(url, replace: replace)
        var resumed = false
        var size = stat()
        let partial = partialURL
        if fstat(lock.fileDescriptor, &size) == 0, size.st_size > 0 {
            let oldMeta = (try? SafetensorsFile(url: partial)).flatMap { try? FeatureMetadata(strings: $0.metadata, path: partial.path) }
            if oldMeta == metadata {
                resumed = true
            } else if replace == .never {
                let why = oldMeta.map { "it differs in " + FeatureWriter.differences($0, metadata) } ?? "it is not a readable feature file"
                throw FeatureStoreError("\(partial.path): an unfinished feature file exists and cannot be resumed (\(why)); pass --overwrite to start again")
            }
        }
        var shapes: [(name: String, dtype: SafetensorsDType, shape: [Int])] = [
            ("features", .F32, [n, metadata.outputs, metadata.width]),
            ("logits", .F32, [n, metadata.classes]),
            ("labels", .I64, [n]),
            ("lines", .I64, [n]),
            ("done", .U8, [blocks]),
        ]
        let L = metadata.groupList.count
        if L > 0 { shapes.append(("layer_features", .F32, [n, L, metadata.outputs, metadata.width])) }
        let layout = SafetensorsLayout(metadata: metadata.asStrings, tensors: shapes)
        offsets = layout.offsets
        handle = FileHandle(fileDescriptor: lock.fileDescriptor, closeOnDealloc: false)
        done = [Bool](repeating: false, count: blocks)
        if resumed {
            let data = try SafetensorsFile(url: partialURL)
            var flags = [UInt8](repeating: 0, count: blocks)
            try flags.withUnsafeMutableBytes { try data.copyBytes("done", into: $0.baseAddress!) }
            done = flags.map { $0 == 1 }
        } else {
            try handle.truncate(atOffset: 0)
            try handle.truncate(atOffset: UInt64(layout.prefix.count + layout.dataBytes))
            try handle.seek(toOffset: 0)
            try handle.write(contentsOf: layout.prefix)
            try write(labels.withUnsafeBytes { Data($0) }, at: offsets["labels"]!)
            try write(lines.withUnsafeBytes { Data($0) }, at: offsets["lines"]!)
            try handle.synchronize()
        }
    }

    /// Refuses an existing output that `replace` does not allow replacing.
    public static func checkOutput(_ url: URL, replace: Replace) throws {
        try OutputPath.checkFile(url, kind: "feature file", overwrite: replace != .never) { existing in
            // A file whose header names it a feature file, finished or damaged further on.
            replace == .anyFile || SafetensorsFile.formatTag(of: existing) == "tangent-features-1"
        }
    }

    /// The settings in which two feature files' metadata differ, in words (`b` is what
    /// this run would write).
    static func differences(_ a: FeatureMetadata, _ b: FeatureMetadata) -> String {
        let d = a.differences(from: b, in: [.kernel, .model, .params, .projDim, .seed, .projector, .blockSize, .texts, .layerGroups, .shard, .shape], now: true)
        return d.isEmpty ? "other metadata" : d.joined(separator: ", ")
    }

    /// How a file's metadata `found` differs from `expected` in anything its contents
    /// depend on (not the model's path or the source's name), or nil when it does not.
    public static func mismatch(_ found: FeatureMetadata, expected: FeatureMetadata) -> String? {
        var a = found
        a.modelPath = expected.modelPath
        a.source = expected.source
        return a == expected ? nil : differences(found, expected)
    }

    private func write(_ data: Data, at offset: Int) throws {
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: data)
    }

    /// Texts of block `b`.
    public func range(ofBlock b: Int) -> Range<Int> {
        (b * metadata.blockSize)..<min(metadata.texts, (b + 1) * metadata.blockSize)
    }

    /// Stores block `b`: features [rows, outputs, width] and logits [rows, C], then
    /// flags it done (after the data reaches the disk).
    public func write(block b: Int, features: [Float], logits: [Float], layerFeatures: [Float]? = nil) throws {
        let r = range(ofBlock: b)
        let rowBytes = metadata.outputs * metadata.width * 4
        precondition(features.count * 4 == r.count * rowBytes && logits.count == r.count * metadata.classes)
        let L = metadata.groupList.count
        precondition((L == 0) == (layerFeatures == nil), "layer features are required exactly when the file has layer groups")
        if let lf = layerFeatures {
            precondition(lf.count * 4 == r.count * L * rowBytes)
            try write(lf.withUnsafeBytes { Data($0) }, at: offsets["layer_features"]! + r.lowerBound * L * rowBytes)
        }
        try write(features.withUnsafeBytes { Data($0) }, at: offsets["features"]! + r.lowerBound * rowBytes)
        try write(logits.withUnsafeBytes { Data($0) }, at: offsets["logits"]! + r.lowerBound * metadata.classes * 4)
        try handle.synchronize()
        try write(Data([1]), at: offsets["done"]! + b)
        try handle.synchronize()
        done[b] = true
    }

    /// Renames the finished file over the output in one rename(2), while still holding
    /// the lock; fails if a block is missing.
    public func finish() throws {
        guard let missing = done.firstIndex(of: false) else {
            try handle.synchronize()
            try AtomicFile.replace(url, with: partialURL)
            return
        }
        throw FeatureStoreError("\(partialURL.path): block \(missing) is not finished")
    }
}

/// A finished feature file, validated and memory-mapped.
public struct FeatureFile: Sendable {
    /// The cache entry at `url`, or nil when there is none or it is unusable (truncated,
    /// corrupt, unfinished); an unusable one is reported through `log`, and the caller
    /// rebuilds it (with `FeatureWriter.Replace.anyFile`).
    /// With `expected`, an entry whose metadata differs from it (what the cache name does
    /// not say: shape, classes, block size) is unusable too, and so is one holding NaN or
    /// Inf unless `checkValues` is false (for a reader that checks them in its own pass
    /// over the file, as `StreamedFeatures` does, so a large file is not read twice).
    public static func cached(_ url: URL, expected: FeatureMetadata? = nil, checkValues: Bool = true, log: (String) -> Void) -> FeatureFile? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        do {
            let f = try FeatureFile(url: url)
            if let expected, let why = FeatureWriter.mismatch(f.metadata, expected: expected) {
                throw FeatureStoreError("it differs in \(why)")
            }
            if checkValues { try f.requireFinite() }
            return f
        } catch {
            log("cached \(url.path) is unusable (\(error)); rebuilding it")
            return nil
        }
    }

    public let url: URL
    public let metadata: FeatureMetadata
    let file: SafetensorsFile
    /// The `features` tensor's entry, checked against the metadata when the file was opened.
    let featuresEntry: SafetensorsTensorInfo

    public init(url: URL) throws {
        let f = try SafetensorsFile(url: url)
        let m = try FeatureMetadata(strings: f.metadata, path: url.path)
        let n = m.texts
        featuresEntry = try f.info("features", dtype: .F32, shape: [n, m.outputs, m.width])
        _ = try f.info("logits", dtype: .F32, shape: [n, m.classes])
        _ = try f.info("labels", dtype: .I64, shape: [n])
        _ = try f.info("lines", dtype: .I64, shape: [n])
        if !m.groupList.isEmpty {
            _ = try f.info("layer_features", dtype: .F32, shape: [n, m.groupList.count, m.outputs, m.width])
        }
        let blocks = (n + m.blockSize - 1) / m.blockSize
        let done = try f.info("done", dtype: .U8, shape: [blocks])
        var flags = [UInt8](repeating: 0, count: blocks)
        try flags.withUnsafeMutableBytes { try f.copyBytes("done", into: $0.baseAddress!) }
        if let b = flags.firstIndex(where: { $0 != 1 }) {
            throw FeatureStoreError("\(url.path): block \(b) of \(blocks) was never finished (\(done.name) flag \(flags[b]))")
        }
        self.url = url
        metadata = m
        file = f
    }

    /// Features of texts `rows` as [rows.count, outputs * width].
    public func features(_ rows: Range<Int>) throws -> [Float] {
        let w = metadata.outputs * metadata.width
        var out = [Float](repeating: 0, count: rows.count * w)
        try out.withUnsafeMutableBytes { try file.copyBytes("features", range: (rows.lowerBound * w * 4)..<(rows.upperBound * w * 4), into: $0.baseAddress!) }
        return out
    }

    /// Features of texts `rows` into the start of `buffer` (at least rows.count x outputs x
    /// width long), for readers that reuse one buffer block after block.
    /// The tensor was validated when the file was opened and the file is mapped, so this
    /// cannot fail: streamed products built on it need no error path.
    public func features(_ rows: Range<Int>, into buffer: inout [Float]) {
        let w = metadata.outputs * metadata.width
        precondition(buffer.count >= rows.count * w && rows.lowerBound >= 0 && rows.upperBound <= metadata.texts)
        let entry = featuresEntry
        buffer.withUnsafeMutableBytes { file.copyBytes(entry, range: (rows.lowerBound * w * 4)..<(rows.upperBound * w * 4), into: $0.baseAddress!) }
    }

    /// Features of one layer group for texts `rows`, [rows.count, outputs * width].
    public func layerFeatures(_ rows: Range<Int>, group: String) throws -> [Float] {
        let groups = metadata.groupList
        guard let g = groups.firstIndex(of: group) else {
            throw FeatureStoreError("\(url.path): no features of layer group '\(group)' (it has: \(groups.isEmpty ? "none; featurize with --per-layer" : groups.joined(separator: ", ")))")
        }
        let w = metadata.outputs * metadata.width, L = groups.count
        var out = [Float](repeating: 0, count: rows.count * w)
        try out.withUnsafeMutableBytes { raw in
            for (i, r) in rows.enumerated() {
                let start = ((r * L) + g) * w * 4
                try file.copyBytes("layer_features", range: start..<(start + w * 4), into: raw.baseAddress! + i * w * 4)
            }
        }
        return out
    }

    /// All layer groups' features of texts `rows`, [rows.count, groups, outputs * width].
    public func layerFeatureRows(_ rows: Range<Int>) throws -> [Float] {
        let w = metadata.outputs * metadata.width * metadata.groupList.count
        var out = [Float](repeating: 0, count: rows.count * w)
        try out.withUnsafeMutableBytes { try file.copyBytes("layer_features", range: (rows.lowerBound * w * 4)..<(rows.upperBound * w * 4), into: $0.baseAddress!) }
        return out
    }

    /// Logits of texts `rows`, [rows.count, C].
    public func logits(_ rows: Range<Int>) throws -> [Float] {
        let C = metadata.classes
        var out = [Float](repeating: 0, count: rows.count * C)
        try out.withUnsafeMutableBytes { try file.copyBytes("logits", range: (rows.lowerBound * C * 4)..<(rows.upperBound * C * 4), into: $0.baseAddress!) }
        return out
    }

    /// Refuses a file whose features or logits hold NaN or Inf (a damaged file: the
    /// featurizer never writes them), naming the first such text. Reads the file once.
    public func requireFinite() throws {
        let n = metadata.texts, step = 1024
        for start in stride(from: 0, to: n, by: step) {
            let r = start..<min(n, start + step)
            if let bad = try features(r).firstIndex(where: { !$0.isFinite }) {
                throw FeatureStoreError("\(url.path): the features of text \(start + bad / max(1, metadata.outputs * metadata.width)) hold NaN or Inf")
            }
            if let bad = try logits(r).firstIndex(where: { !$0.isFinite }) {
                throw FeatureStoreError("\(url.path): the logits of text \(start + bad / metadata.classes) hold NaN or Inf")
            }
        }
    }

    /// Refuses a shard file where the whole set's features are needed.
    public func requireWhole() throws {
        if let shard = metadata.shard {
            throw FeatureStoreError("\(url.path) is shard \(shard) of a sharded featurization, not the whole set; join the shards with `tangent merge` first")
        }
    }

    public func logits() throws -> [Float] { try file.float32("logits") }
    public func labels() throws -> [Int64] { try file.int64("labels") }
    public func lines() throws -> [Int64] { try file.int64("lines") }
}

/// Fingerprint of labelled texts in their order (texts and labels): what identifies a
/// training set in cache names, training records and resume checks.
public func fingerprint(labelled texts: [LabeledText]) -> String {
    fingerprint(Data(texts.map { $0.text + "\u{1F}" + ($0.label ?? "") }.joined(separator: "\u{1E}").utf8))
}
