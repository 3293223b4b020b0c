import Foundation
import TangentFeatures
import TangentModel
import Testing

@Suite struct ShardTests {
    /// Shards tile the texts on block boundaries, in order, without gap or overlap, for
    /// any text and shard count; sizes differ by at most one block.
    @Test func shardsTileTheTextsOnBlockBoundaries() throws {
        for texts in [0, 1, 127, 128, 129, 1000, 100_000] {
            for count in [1, 2, 3, 4, 7, 16, 1000] {
                let ranges = try (0..<count).map { try ShardSpec(index: $0, count: count).range(texts: texts) }
                #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == texts)
                for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
                for r in ranges where !r.isEmpty {
                    #expect(r.lowerBound % ShardSpec.blockTexts == 0)
                    #expect(r.upperBound % ShardSpec.blockTexts == 0 || r.upperBound == texts)
                }
                let blocks = ranges.map { ($0.count + ShardSpec.blockTexts - 1) / ShardSpec.blockTexts }
                #expect(blocks.max()! - blocks.min()! <= 1, "\(texts) texts, \(count) shards: \(blocks)")
            }
        }
    }

    @Test func parsesTheOptionAndTheSchedulersVariables() throws {
        #expect(
            try ShardSpec.resolve(option: "2/4", shardCount: nil, environment: [:]) == ShardSpec(index: 2, count: 4))
        #expect(try ShardSpec.resolve(option: nil, shardCount: nil, environment: [:]) == nil)
        // The option wins over the environment.
        #expect(
            try ShardSpec.resolve(
                option: "0/2", shardCount: nil,
                environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"])
                == ShardSpec(index: 0, count: 2))
        // Slurm arrays: 0-based with a count, or any MIN..MAX.
        #expect(
            try ShardSpec.resolve(
                option: nil, shardCount: nil, environment: ["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"])
                == ShardSpec(index: 3, count: 4))
        #expect(
            try ShardSpec.resolve(
                option: nil, shardCount: nil,
                environment: ["SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13"])
                == ShardSpec(index: 1, count: 4))
        // Kubernetes Indexed Jobs.
        #expect(
            try ShardSpec.resolve(option: nil, shardCount: 8, environment: ["JOB_COMPLETION_INDEX": "5"])
                == ShardSpec(index: 5, count: 8))
    }

    /// Bad specifications are errors that say what is wrong.
    @Test func badShardsAreClearErrors() {
        func message(_ body: () throws -> Any?) -> String {
            do {
                _ = try body()
                return ""
            } catch { return "\(error)" }
        }
        #expect(message { try ShardSpec(parsing: "4/4") }.contains("outside 0..<4"))
        #expect(message { try ShardSpec(parsing: "0/0") }.contains("at least 1"))
        #expect(message { try ShardSpec(parsing: "-1/3") }.contains("outside"))
        #expect(message { try ShardSpec(parsing: "1-3") }.contains("I/N"))
        #expect(message { try ShardSpec.resolve(option: "1/2", shardCount: 2, environment: [:]) }.contains("not both"))
        #expect(
            message { try ShardSpec.resolve(option: nil, shardCount: nil, environment: ["SLURM_ARRAY_TASK_ID": "x"]) }
                .contains("SLURM_ARRAY_TASK_ID='x'"))
        #expect(
            message { try ShardSpec.resolve(option: nil, shardCount: nil, environment: ["SLURM_ARRAY_TASK_ID": "1"]) }
                .contains("number of shards"))
        #expect(
            message {
                try ShardSpec.resolve(
                    option: nil, shardCount: nil,
                    environment: [
                        "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "6",
                        "SLURM_ARRAY_TASK_COUNT": "4",
                    ])
            }.contains("step or gaps"))
        #expect(
            message { try ShardSpec.resolve(option: nil, shardCount: nil, environment: ["JOB_COMPLETION_INDEX": "0"]) }
                .contains("--shard-count"))
        #expect(
            message { try ShardSpec.resolve(option: nil, shardCount: 3, environment: [:]) }.contains(
                "JOB_COMPLETION_INDEX"))
        #expect(
            message { try ShardSpec.resolve(option: nil, shardCount: 3, environment: ["JOB_COMPLETION_INDEX": "3"]) }
                .contains("outside 0..<3"))
    }
}

/// Shard files and their merge, in one process (the multi-process test is in CLITests).
@Suite(.singleThreadedBLAS) struct ShardMergeTests {
    static func options(block: Int, batch: Int, threads: Int) -> FeaturizeOptions {
        var o = FeaturizeOptions(kind: .trntk)
        o.projDim = 40
        o.seed = 3
        o.projector = .sketch(1)
        o.perLayer = true
        o.blockSize = block
        o.batchSize = batch
        o.threads = threads
        return o
    }

    func message(_ body: () throws -> Any?) -> String {
        do {
            _ = try body()
            return ""
        } catch { return "\(error)" }
    }

    /// Shards computed with different batch sizes and thread counts merge into the bytes
    /// one run writes; and that run's bytes do not depend on its batch size either.
    @Test func mergedShardsAreBitIdenticalToOneRun() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let texts = try FeatureStoreTests.texts(30)
        let dir = FeatureStoreTests.tempURL("x").deletingLastPathComponent()
        let one = try Featurizer(classifier: clf, options: Self.options(block: 4, batch: 4, threads: 1))
            .run(texts: texts, source: "s", to: dir.appendingPathComponent("one.safetensors"), replace: .never)
        let other = try Featurizer(classifier: clf, options: Self.options(block: 4, batch: 11, threads: 2))
            .run(texts: texts, source: "s", to: dir.appendingPathComponent("other.safetensors"), replace: .never)
        let reference = try Data(contentsOf: one.url)
        #expect(try Data(contentsOf: other.url) == reference)
        let settings = [(batch: 3, threads: 2), (batch: 8, threads: 1), (batch: 30, threads: 3)]
        var shards: [FeatureFile] = []
        for (i, s) in settings.enumerated() {
            let spec = try ShardSpec(index: i, count: 3)
            let url = FeatureMerger.shardURL(dir.appendingPathComponent("all.safetensors"), spec)
            #expect(url.lastPathComponent == "all.shard-\(i)-of-3.safetensors")
            let f = try Featurizer(classifier: clf, options: Self.options(block: 4, batch: s.batch, threads: s.threads))
                .run(texts: texts, source: "s", to: url, replace: .never, shard: spec)
            #expect(f.metadata.shard == "\(i)/3" && f.metadata.setTexts == 30)
            #expect(f.metadata.texts == spec.range(texts: 30, blockTexts: 4).count)
            shards.append(f)
        }
        // Scoring refuses a shard on its own.
        #expect(
            message {
                try KernelMatrix.compute(
                    a: shards[0], b: shards[0], normalize: false, to: dir.appendingPathComponent("k.safetensors"))
            }
            .contains("tangent merge"))
        let merged = try FeatureMerger.merge(
            shards.reversed(), to: dir.appendingPathComponent("merged.safetensors"), replace: .never)
        #expect(try Data(contentsOf: merged.url) == reference)
        #expect(merged.metadata == one.metadata)

        // Bad sets of shards.
        let out = dir.appendingPathComponent("bad.safetensors")
        #expect(
            message { try FeatureMerger.merge([shards[0], shards[2]], to: out, replace: .never) }.contains(
                "1 of 3 shards are missing: 1/3"))
        #expect(
            message { try FeatureMerger.merge([shards[0], shards[1], shards[1], shards[2]], to: out, replace: .never) }
                .contains("shard 1/3 is given twice"))
        #expect(message { try FeatureMerger.merge([one], to: out, replace: .never) }.contains("not a shard file"))
        #expect(message { try FeatureMerger.merge([], to: out, replace: .never) }.contains("no shard files"))
        // A shard of another run: another seed, other texts, another shard count.
        var seeded = Self.options(block: 4, batch: 4, threads: 1)
        seeded.seed = 4
        let spec1 = try ShardSpec(index: 1, count: 3)
        let alien = try Featurizer(classifier: clf, options: seeded)
            .run(
                texts: texts, source: "s", to: dir.appendingPathComponent("alien.safetensors"), replace: .never,
                shard: spec1)
        var m = message { try FeatureMerger.merge([shards[0], alien, shards[2]], to: out, replace: .never) }
        #expect(m.contains("does not belong") && m.contains("seed (3 vs"), "\(m)")
        let fewer = try Featurizer(classifier: clf, options: Self.options(block: 4, batch: 4, threads: 1))
            .run(
                texts: Array(texts.prefix(29)), source: "s", to: dir.appendingPathComponent("fewer.safetensors"),
                replace: .never, shard: spec1)
        m = message { try FeatureMerger.merge([shards[0], fewer, shards[2]], to: out, replace: .never) }
        #expect(m.contains("differ in texts (a set of 30 texts"), "\(m)")
        let halves = try Featurizer(classifier: clf, options: Self.options(block: 4, batch: 4, threads: 1))
            .run(
                texts: texts, source: "s", to: dir.appendingPathComponent("half.safetensors"), replace: .never,
                shard: ShardSpec(index: 1, count: 2))
        m = message { try FeatureMerger.merge([shards[0], halves, shards[2]], to: out, replace: .never) }
        #expect(m.contains("shard count (3 vs 2)"), "\(m)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
        // More shards than blocks: the empty shard is refused when it is made.
        m = message {
            try Featurizer(classifier: clf, options: Self.options(block: 4, batch: 4, threads: 1))
                .run(
                    texts: texts, source: "s", to: dir.appendingPathComponent("e.safetensors"), replace: .never,
                    shard: ShardSpec(index: 0, count: 9))
        }
        #expect(m.contains("gets no texts") && m.contains("at most 8 shards"), "\(m)")
    }
}
