import Foundation
import TangentData
import TangentIO
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
    /// `ekfac` features: what their EK-FAC curvature was fitted on and its damping
    /// (`Curvature.identity`); nil for the other kernels.
    public var curvature: String?
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
        case kernel
        case modelFingerprint = "model_fingerprint"
        case modelPath = "model"
        case params
        case projDim = "proj_dim"
        case seed
        case projector, outputs, width, texts, classes, source
        case textsFingerprint = "texts_fingerprint"
        case blockSize = "block_size"
        case layerGroups = "layer_groups"
        case curvature
        case shard
        case shardFirst = "shard_first"
        case setTexts = "set_texts"
        case setFingerprint = "set_fingerprint"
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
            throw ShardError(
                "shard \(spec) gets no texts: \(texts.count) texts make \(blocks) block\(blocks == 1 ? "" : "s") of \(blockSize), so at most \(blocks) shard\(blocks == 1 ? "" : "s")"
            )
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

    public init(
        kernel: String, modelFingerprint: String, modelPath: String, params: String, projDim: Int, seed: UInt64,
        projector: String, outputs: Int, width: Int, texts: Int, classes: Int, source: String,
        textsFingerprint: String, blockSize: Int
    ) {
        self.kernel = kernel
        self.modelFingerprint = modelFingerprint
        self.modelPath = modelPath
        self.params = params
        self.projDim = projDim
        self.seed = seed
        self.projector = projector
        self.outputs = outputs
        self.width = width
        self.texts = texts
        self.classes = classes
        self.source = source
        self.textsFingerprint = textsFingerprint
        self.blockSize = blockSize
    }

    /// The header's `__metadata__` (keys as in `CodingKeys`; absent shard fields left out).
    var asStrings: [String: String] {
        var out: [String: String] = [
            "format": "tangent-features-1", "kernel": kernel, "model_fingerprint": modelFingerprint, "model": modelPath,
            "params": params, "proj_dim": String(projDim), "seed": String(seed), "projector": projector,
            "outputs": String(outputs), "width": String(width), "texts": String(texts), "classes": String(classes),
            "source": source, "texts_fingerprint": textsFingerprint, "block_size": String(blockSize),
            "layer_groups": layerGroups,
        ]
        if let curvature { out["curvature"] = curvature }
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
        guard let seed = UInt64(try s("seed")) else {
            throw FeatureStoreError("\(path): metadata 'seed' is not an integer")
        }
        self.init(
            kernel: try s("kernel"), modelFingerprint: try s("model_fingerprint"), modelPath: try s("model"),
            params: try s("params"), projDim: try i("proj_dim"), seed: seed,
            projector: try m["projector"] ?? s("distribution"),
            outputs: try i("outputs"), width: try i("width"), texts: try i("texts"), classes: try i("classes"),
            source: try s("source"), textsFingerprint: try s("texts_fingerprint"), blockSize: try i("block_size"))
        layerGroups = m["layer_groups"] ?? ""
        curvature = m["curvature"]
        if let sh = m["shard"] {
            guard (try? ShardSpec(parsing: sh)) != nil, let first = m["shard_first"].flatMap(Int.init),
                let total = m["set_texts"].flatMap(Int.init), let fp = m["set_fingerprint"]
            else {
                throw FeatureStoreError("\(path): shard metadata is incomplete or malformed (shard '\(sh)')")
            }
            shard = sh
            shardFirst = first
            setTexts = total
            setFingerprint = fp
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
        for (field, value) in [
            ("texts", texts), ("outputs", outputs), ("width", width), ("classes", classes),
            ("proj_dim", projDim), ("block_size", blockSize),
        ] where value < 0 || value > limit {
            throw fail(field, "is \(value), outside 0...\(limit)")
        }
        guard blockSize >= 1 else { throw fail("block_size", "is \(blockSize); it must be at least 1") }
        guard let kind = FeatureKind(rawValue: kernel) else {
            throw fail(
                "kernel", "is '\(kernel)', not one of \(FeatureKind.allCases.map(\.rawValue).joined(separator: ", "))")
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
        if kind == .ekfac {
            // One vector per damping of the curvature the file names.
            guard curvature != nil else {
                throw fail("curvature", "is missing; ekfac features name the curvature they are whitened by")
            }
            guard (1...256).contains(outputs) else {
                throw fail("outputs", "is \(outputs); ekfac features have 1 to 256 dampings")
            }
        } else if outputs != (kind == .trntk ? classes : 1) {
            let expectedOutputs = kind == .trntk ? classes : 1
            throw fail(
                "outputs",
                "is \(outputs) but \(kernel) features of \(classes) classes have \(expectedOutputs) vector\(expectedOutputs == 1 ? "" : "s") per text"
            )
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
        let a = self
        let now = now ? " now" : ""
        return settings.compactMap { setting -> String? in
            switch setting {
            case .model:
                a.modelFingerprint == b.modelFingerprint ? nil : "model (\(a.modelPath) vs \(b.modelPath)\(now))"
            case .kernel:
                a.kernel == b.kernel && a.curvature == b.curvature
                    ? nil
                    : a.kernel == b.kernel
                        ? "EK-FAC curvature (\(a.curvature ?? "none") vs \(b.curvature ?? "none")\(now))"
                        : "kernel (\(a.kernel) vs \(b.kernel)\(now))"
            case .params: a.params == b.params ? nil : "parameters (\(a.params) vs \(b.params)\(now))"
            case .projDim: a.projDim == b.projDim ? nil : "K (\(a.projDim) vs \(b.projDim)\(now))"
            case .seed: a.seed == b.seed ? nil : "seed (\(a.seed) vs \(b.seed)\(now))"
            case .projector: a.projector == b.projector ? nil : "projector (\(a.projector) vs \(b.projector)\(now))"
            case .blockSize: a.blockSize == b.blockSize ? nil : "block size (\(a.blockSize) vs \(b.blockSize)\(now))"
            case .texts:
                a.textsFingerprint == b.textsFingerprint && a.texts == b.texts
                    ? nil
                    : "texts (\(a.texts) texts of \(a.source) vs \(b.texts) of \(b.source)\(now))"
            case .layerGroups:
                a.layerGroups == b.layerGroups
                    ? nil : "per-layer groups ('\(a.layerGroups)' vs '\(b.layerGroups)'\(now))"
            case .shard: a.shard == b.shard ? nil : "shard (\(a.shard ?? "none") vs \(b.shard ?? "none")\(now))"
            case .shape:
                a.classes == b.classes && a.outputs == b.outputs && a.width == b.width
                    ? nil
                    : "shape (\(a.classes) classes, \(a.outputs) x \(a.width) per text vs \(b.classes), \(b.outputs) x \(b.width)\(now))"
            case .source: a.source == b.source ? nil : "source (\(a.source) vs \(b.source)\(now))"
            case .modelPath: a.modelPath == b.modelPath ? nil : "model path (\(a.modelPath) vs \(b.modelPath)\(now))"
            case .set:
                a.setTexts == b.setTexts && a.setFingerprint == b.setFingerprint
                    ? nil
                    : "texts (a set of \(a.setTexts ?? 0) texts with fingerprint \(a.setFingerprint ?? "-") vs \(b.setTexts ?? 0) with \(b.setFingerprint ?? "-")\(now))"
            case .shardCount:
                a.shardSpec?.count == b.shardSpec?.count
                    ? nil : "shard count (\(a.shardSpec?.count ?? 0) vs \(b.shardSpec?.count ?? 0)\(now))"
            }
        }
    }
}

/// A feature file that cannot be used; the message names the file.
public struct FeatureStoreError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Fingerprint of labelled texts in their order (texts and labels): what identifies a
/// training set in cache names, training records and resume checks.
public func fingerprint(labelled texts: [LabeledText]) -> String {
    fingerprint(Data(texts.map { $0.text + "\u{1F}" + ($0.label ?? "") }.joined(separator: "\u{1E}").utf8))
}
