import Foundation
import TangentData
import TangentIO
import TangentSafetensors
import TangentTensor

/// A finished feature file, validated and memory-mapped.
public struct FeatureFile: Sendable {
    /// The cache entry at `url`, or nil when there is none or it is unusable (truncated,
    /// corrupt, unfinished); an unusable one is reported through `log`, and the caller
    /// rebuilds it (with `FeatureWriter.Replace.anyFile`).
    /// With `expected`, an entry whose metadata differs from it (what the cache name does
    /// not say: shape, classes, block size) is unusable too, and so is one holding NaN or
    /// Inf unless `checkValues` is false (for a reader that checks them in its own pass
    /// over the file, as `StreamedFeatures` does, so a large file is not read twice).
    public static func cached(
        _ url: URL, expected: FeatureMetadata? = nil, checkValues: Bool = true, log: (String) -> Void
    ) -> FeatureFile? {
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
            throw FeatureStoreError(
                "\(url.path): block \(b) of \(blocks) was never finished (\(done.name) flag \(flags[b]))")
        }
        self.url = url
        metadata = m
        file = f
    }

    /// Features of texts `rows` as [rows.count, outputs * width].
    public func features(_ rows: Range<Int>) throws -> [Float] {
        let w = metadata.outputs * metadata.width
        var out = [Float](repeating: 0, count: rows.count * w)
        try out.withUnsafeMutableBytes {
            try file.copyBytes(
                "features", range: (rows.lowerBound * w * 4)..<(rows.upperBound * w * 4), into: $0.baseAddress!)
        }
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
        buffer.withUnsafeMutableBytes {
            file.copyBytes(entry, range: (rows.lowerBound * w * 4)..<(rows.upperBound * w * 4), into: $0.baseAddress!)
        }
    }

    /// Features of one layer group for texts `rows`, [rows.count, outputs * width].
    public func layerFeatures(_ rows: Range<Int>, group: String) throws -> [Float] {
        let groups = metadata.groupList
        guard let g = groups.firstIndex(of: group) else {
            throw FeatureStoreError(
                "\(url.path): no features of layer group '\(group)' (it has: \(groups.isEmpty ? "none; featurize with --per-layer" : groups.joined(separator: ", ")))"
            )
        }
        let w = metadata.outputs * metadata.width
        let L = groups.count
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
        try out.withUnsafeMutableBytes {
            try file.copyBytes(
                "layer_features", range: (rows.lowerBound * w * 4)..<(rows.upperBound * w * 4), into: $0.baseAddress!)
        }
        return out
    }

    /// Logits of texts `rows`, [rows.count, C].
    public func logits(_ rows: Range<Int>) throws -> [Float] {
        let C = metadata.classes
        var out = [Float](repeating: 0, count: rows.count * C)
        try out.withUnsafeMutableBytes {
            try file.copyBytes(
                "logits", range: (rows.lowerBound * C * 4)..<(rows.upperBound * C * 4), into: $0.baseAddress!)
        }
        return out
    }

    /// Refuses a file whose features or logits hold NaN or Inf (a damaged file: the
    /// featurizer never writes them), naming the first such text. Reads the file once.
    public func requireFinite() throws {
        let n = metadata.texts
        let step = 1024
        for start in stride(from: 0, to: n, by: step) {
            let r = start..<min(n, start + step)
            if let bad = try features(r).firstIndex(where: { !$0.isFinite }) {
                throw FeatureStoreError(
                    "\(url.path): the features of text \(start + bad / max(1, metadata.outputs * metadata.width)) hold NaN or Inf"
                )
            }
            if let bad = try logits(r).firstIndex(where: { !$0.isFinite }) {
                throw FeatureStoreError(
                    "\(url.path): the logits of text \(start + bad / metadata.classes) hold NaN or Inf")
            }
        }
    }

    /// Refuses a shard file where the whole set's features are needed.
    public func requireWhole() throws {
        if let shard = metadata.shard {
            throw FeatureStoreError(
                "\(url.path) is shard \(shard) of a sharded featurization, not the whole set; join the shards with `tangent merge` first"
            )
        }
    }

    public func logits() throws -> [Float] { try file.float32("logits") }
    public func labels() throws -> [Int64] { try file.int64("labels") }
    public func lines() throws -> [Int64] { try file.int64("lines") }
}
