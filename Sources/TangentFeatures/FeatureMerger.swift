import Foundation

/// Joins the shard files of one sharded featurization (`Featurizer.run(shard:)`) into the
/// feature file that one process would have written, byte for byte.
///
/// The shards must belong together: one model, kernel, parameter subset, projector, K and
/// seed, one set of texts (its size and fingerprint), one shard count, and each shard
/// exactly once, each covering the range `ShardSpec.range` gives it. The output is built
/// block by block by `FeatureWriter` (so an interrupted merge resumes) and memory holds
/// one block of one shard at a time.
public enum FeatureMerger {
    /// Checks `shards` (in any order) and returns them sorted by shard index, with the
    /// metadata of the whole set they make up.
    public static func check(_ shards: [FeatureFile]) throws -> (sorted: [FeatureFile], metadata: FeatureMetadata) {
        guard let first = shards.first else { throw ShardError("no shard files given") }
        var bySpec: [Int: FeatureFile] = [:]
        for f in shards {
            guard let spec = f.metadata.shardSpec, let firstText = f.metadata.shardFirst,
                let total = f.metadata.setTexts, f.metadata.setFingerprint != nil
            else {
                throw ShardError(
                    "\(f.url.path) is not a shard file (it was written without --shard); only shards of one sharded run can be merged"
                )
            }
            let ref = first.metadata
            if let why = compatibility(ref, f.metadata) {
                throw ShardError("\(f.url.path) does not belong with \(first.url.path): they differ in \(why)")
            }
            if let other = bySpec[spec.index] {
                throw ShardError("shard \(spec) is given twice: \(other.url.path) and \(f.url.path)")
            }
            let expected = spec.range(texts: total, blockTexts: f.metadata.blockSize)
            guard expected == firstText..<(firstText + f.metadata.texts) else {
                throw ShardError(
                    "\(f.url.path): shard \(spec) holds texts \(firstText)..<\(firstText + f.metadata.texts), but shard \(spec) of \(total) texts is \(expected.lowerBound)..<\(expected.upperBound)"
                )
            }
            bySpec[spec.index] = f
        }
        let count = first.metadata.shardSpec!.count
        let missing = (0..<count).filter { bySpec[$0] == nil }
        if !missing.isEmpty {
            // A shard past the set's last block gets no texts and can never be written:
            // rerunning its task would not help, the run needs fewer shards.
            let total = first.metadata.setTexts!
            let blockTexts = first.metadata.blockSize
            let impossible = try missing.filter {
                try ShardSpec(index: $0, count: count).range(texts: total, blockTexts: blockTexts).isEmpty
            }
            if !impossible.isEmpty {
                let blocks = (total + blockTexts - 1) / blockTexts
                throw ShardError(
                    "shard \(impossible[0])/\(count) can never be made: \(total) texts make \(blocks) block\(blocks == 1 ? "" : "s") of \(blockTexts), so this set has at most \(blocks) shard\(blocks == 1 ? "" : "s"); featurize again with --shard I/\(blocks) or fewer"
                )
            }
            let list =
                missing.prefix(20).map { "\($0)/\(count)" }.joined(separator: ", ")
                + (missing.count > 20 ? ", ..." : "")
            throw ShardError(
                "\(missing.count) of \(count) shards are missing: \(list) (run those array tasks again; a rerun resumes an unfinished shard)"
            )
        }
        let sorted = (0..<count).map { bySpec[$0]! }
        var whole = first.metadata
        whole.texts = first.metadata.setTexts!
        whole.textsFingerprint = first.metadata.setFingerprint!
        whole.shard = nil
        whole.shardFirst = nil
        whole.setTexts = nil
        whole.setFingerprint = nil
        return (sorted, whole)
    }

    /// The settings in which two shards' metadata differ (beyond their own texts), or nil.
    static func compatibility(_ a: FeatureMetadata, _ b: FeatureMetadata) -> String? {
        let d = a.differences(
            from: b,
            in: [
                .model, .kernel, .params, .projDim, .seed, .projector, .shape, .blockSize, .layerGroups,
                .source, .modelPath, .set, .shardCount,
            ])
        return d.isEmpty ? nil : d.joined(separator: "; ")
    }

    /// Merges `shards` into `url`. `progress(done, total)` reports texts written.
    @discardableResult
    public static func merge(
        _ shards: [FeatureFile], to url: URL, replace: FeatureWriter.Replace,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> FeatureFile {
        let (sorted, whole) = try check(shards)
        let labels = try sorted.flatMap { try $0.labels() }
        let lines = try sorted.flatMap { try $0.lines() }
        let writer = try FeatureWriter(url: url, metadata: whole, labels: labels, lines: lines, replace: replace)
        let groups = whole.groupList
        var written = 0
        for shard in sorted {
            let first = shard.metadata.shardFirst!
            // Shards start on block boundaries of the whole file (ShardSpec.range).
            let firstBlock = first / whole.blockSize
            let blocks = (shard.metadata.texts + whole.blockSize - 1) / whole.blockSize
            for b in firstBlock..<(firstBlock + blocks) {
                let r = writer.range(ofBlock: b)
                let local = (r.lowerBound - first)..<(r.upperBound - first)
                if !writer.done[b] {
                    var layers: [Float]?
                    if !groups.isEmpty { layers = try shard.layerFeatureRows(local) }
                    try writer.write(
                        block: b, features: try shard.features(local), logits: try shard.logits(local),
                        layerFeatures: layers)
                }
                written += r.count
                progress(written, whole.texts)
            }
        }
        try writer.finish()
        return try FeatureFile(url: url)
    }

    /// The file name of shard `spec` of the output `url`: NAME.shard-I-of-N.EXT, numbers
    /// zero-padded to N's width so that a shell glob lists them in order.
    public static func shardURL(_ url: URL, _ spec: ShardSpec) -> URL {
        let digits = String(spec.count - 1).count
        func pad(_ i: Int) -> String { String(repeating: "0", count: max(0, digits - String(i).count)) + String(i) }
        let ext = url.pathExtension
        let stem = url.deletingPathExtension().lastPathComponent
        let name = "\(stem).shard-\(pad(spec.index))-of-\(spec.count)" + (ext.isEmpty ? "" : ".\(ext)")
        return url.deletingLastPathComponent().appendingPathComponent(name)
    }
}
