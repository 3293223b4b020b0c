import Foundation
import Testing
import TangentKernels

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
        #expect(try ShardSpec.resolve(option: "2/4", shardCount: nil, environment: [:]) == ShardSpec(index: 2, count: 4))
        #expect(try ShardSpec.resolve(option: nil, shardCount: nil, environment: [:]) == nil)
        // The option wins over the environment.
        #expect(try ShardSpec.resolve(option: "0/2", shardCount: nil, environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"])
                == ShardSpec(index: 0, count: 2))
        // Slurm arrays: 0-based with a count, or any MIN..MAX.
        #expect(try ShardSpec.resolve(option: nil, shardCount: nil, environment: ["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"])
                == ShardSpec(index: 3, count: 4))
        #expect(try ShardSpec.resolve(option: nil, shardCount: nil,
                                      environment: ["SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13"])
                == ShardSpec(index: 1, count: 4))
        // Kubernetes Indexed Jobs.
        #expect(try ShardSpec.resolve(option: nil, shardCount: 8, environment: ["JOB_COMPLETION_INDEX": "5"]) == ShardSpec(index: 5, count: 8))
    }

    /// Bad specifications are errors that say what is wrong.
    @Test func badShardsAreClearErrors() {
        func message(_ body: () throws -> Any?) -> String {
            do { _ = try body(); return "" } catch { return "\(error)" }
        }
        #expect(message { try ShardSpec(parsing: "4/4") }.contains("outside 0..<4"))
        #expect(message { try ShardSpec(parsing: "0/0") }.contains("at least 1"))
        #expect(message { try ShardSpec(parsing: "-1/3") }.contains("outside"))
        #expect(message { try ShardSpec(parsing: "1-3") }.contains("I/N"))
        #expect(message { try ShardSpec.resolve(option: "1/2", shardCount: 2, environment: [:]) }.contains("not both"))
        #expect(message { try ShardSpec.resolve(option: nil, shardCount: nil, environment: ["SLURM_ARRAY_TASK_ID": "x"]) }.contains("SLURM_ARRAY_TASK_ID='x'"))
        #expect(message { try ShardSpec.resolve(option: nil, shardCount: nil, environment: ["SLURM_ARRAY_TASK_ID": "1"]) }.contains("number of shards"))
        #expect(message { try ShardSpec.resolve(option: nil, shardCount: nil,
                                                environment: ["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "6",
                                                              "SLURM_ARRAY_TASK_COUNT": "4"]) }.contains("step or gaps"))
        #expect(message { try ShardSpec.resolve(option: nil, shardCount: nil, environment: ["JOB_COMPLETION_INDEX": "0"]) }.contains("--shard-count"))
        #expect(message { try ShardSpec.resolve(option: nil, shardCount: 3, environment: [:]) }.contains("JOB_COMPLETION_INDEX"))
        #expect(message { try ShardSpec.resolve(option: nil, shardCount: 3, environment: ["JOB_COMPLETION_INDEX": "3"]) }.contains("outside 0..<3"))
    }
}
