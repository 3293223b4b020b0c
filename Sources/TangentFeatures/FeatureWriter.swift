import Foundation
import TangentData
import TangentIO
import TangentSafetensors
import TangentTensor

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
            let oldMeta = (try? SafetensorsFile(url: partial)).flatMap {
                try? FeatureMetadata(strings: $0.metadata, path: partial.path)
            }
            if oldMeta == metadata {
                resumed = true
            } else if replace == .never {
                let why =
                    oldMeta.map { "it differs in " + FeatureWriter.differences($0, metadata) }
                    ?? "it is not a readable feature file"
                throw FeatureStoreError(
                    "\(partial.path): an unfinished feature file exists and cannot be resumed (\(why)); pass --overwrite to start again"
                )
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

    /// Removes the partial file when no block of it is finished (a run that failed on its
    /// first block leaves nothing behind that a later run could resume).
    public func discardIfEmpty() {
        if !done.contains(true) { unlink(partialURL.path) }
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
        let d = a.differences(
            from: b,
            in: [
                .kernel, .model, .params, .projDim, .seed, .projector, .blockSize, .texts, .layerGroups, .shard, .shape,
            ], now: true)
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
        precondition(
            (L == 0) == (layerFeatures == nil), "layer features are required exactly when the file has layer groups")
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
