import Foundation

/// Shard `index` of `count` (0-based) of a featurization split over processes or nodes.
///
/// The split is on fixed block boundaries of the text order: the texts are cut into blocks
/// of `blockTexts` and shard i takes blocks floor(i B / N) ..< floor((i + 1) B / N) of the B
/// blocks. The boundaries depend only on the number of texts, the block size and N, never
/// on a shard's own batch size or thread count, so shards computed anywhere line up.
public struct ShardSpec: Sendable, Equatable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    public init(index: Int, count: Int) throws {
        guard count >= 1 else { throw ShardError("the shard count must be at least 1, got \(count)") }
        guard (0..<count).contains(index) else {
            throw ShardError("shard index \(index) is outside 0..<\(count) (shards are numbered from 0)")
        }
        self.index = index
        self.count = count
    }

    public var description: String { "\(index)/\(count)" }

    /// Texts per block of the split: the fixed unit that shards are made of.
    public static let blockTexts = 128

    /// Parses "I/N" (`--shard`).
    public init(parsing s: String) throws {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0].trimmingCharacters(in: .whitespaces)),
            let n = Int(parts[1].trimmingCharacters(in: .whitespaces))
        else {
            throw ShardError("--shard must be I/N (shard I of N, numbered from 0), got '\(s)'")
        }
        try self.init(index: i, count: n)
    }

    /// The shard to compute: `option` (`--shard I/N`) when given; else Slurm's job array
    /// (`SLURM_ARRAY_TASK_ID` with `SLURM_ARRAY_TASK_COUNT`, or with `SLURM_ARRAY_TASK_MIN`
    /// and `SLURM_ARRAY_TASK_MAX`, for arrays that do not start at 0); else a Kubernetes
    /// Indexed Job (`JOB_COMPLETION_INDEX` with `shardCount`, from `--shard-count`); nil
    /// when none applies (one process does all texts). Errors name the variable at fault.
    public static func resolve(option: String?, shardCount: Int?, environment env: [String: String]) throws
        -> ShardSpec?
    {
        if let option {
            if shardCount != nil { throw ShardError("give either --shard I/N or --shard-count, not both") }
            return try ShardSpec(parsing: option)
        }
        func integer(_ name: String) throws -> Int? {
            guard let v = env[name] else { return nil }
            guard let i = Int(v.trimmingCharacters(in: .whitespaces)) else {
                throw ShardError("\(name)='\(v)' is not an integer")
            }
            return i
        }
        if let task = try integer("SLURM_ARRAY_TASK_ID") {
            let low = try integer("SLURM_ARRAY_TASK_MIN") ?? 0
            let count: Int
            if let high = try integer("SLURM_ARRAY_TASK_MAX") {
                count = high - low + 1
            } else if let c = try integer("SLURM_ARRAY_TASK_COUNT") {
                count = c
            } else {
                throw ShardError(
                    "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX: cannot tell the number of shards"
                )
            }
            if let c = try integer("SLURM_ARRAY_TASK_COUNT"), c != count {
                throw ShardError(
                    "SLURM_ARRAY_TASK_COUNT=\(c) disagrees with SLURM_ARRAY_TASK_MIN..MAX (\(count) tasks); an array with a step or gaps cannot be mapped to shards"
                )
            }
            return try ShardSpec(index: task - low, count: count)
        }
        if let index = try integer("JOB_COMPLETION_INDEX") {
            guard let shardCount else {
                throw ShardError(
                    "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): give --shard-count, the job's completions")
            }
            return try ShardSpec(index: index, count: shardCount)
        }
        if let shardCount {
            throw ShardError(
                "--shard-count \(shardCount) needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) or --shard")
        }
        return nil
    }

    /// The texts of this shard among `texts` texts: a range on block boundaries, empty
    /// when there are fewer blocks than shards and this shard gets none.
    public func range(texts: Int, blockTexts: Int = ShardSpec.blockTexts) -> Range<Int> {
        precondition(texts >= 0 && blockTexts >= 1)
        let blocks = (texts + blockTexts - 1) / blockTexts
        let first = index * blocks / count
        let last = (index + 1) * blocks / count
        return min(texts, first * blockTexts)..<min(texts, last * blockTexts)
    }
}

/// A shard specification or set of shards that cannot be used, in words.
public struct ShardError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
