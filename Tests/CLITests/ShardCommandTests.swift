import Foundation
import Testing

/// Sharded featurization as a cluster runs it: each shard in its own process, with its own
/// batch size and thread count (one from Slurm's job-array variables), then `merge`.
@Suite struct ShardCommandTests {
    @Test func shardsFromSeparateProcessesMergeBitIdenticalToOneRun() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        // 300 texts: blocks of 128, 128 and 44, one per shard.
        try CLI.writeTexts(300, to: "texts.jsonl", in: w)
        let base = [
            "featurize", "--model", CLI.model.path, "--data", "texts.jsonl", "--kernel", "trntk", "--proj-dim", "64",
            "--per-layer", "--out", "f.safetensors",
        ]
        let one = try CLI.run(base.dropLast() + ["one.safetensors", "--batch-size", "64", "--threads", "2"], in: w)
        #expect(one.status == 0, "\(one.stderr)")
        // The three shards at once, as three processes.
        let runs: [(args: [String], env: [String: String])] = [
            (["--shard", "0/3", "--batch-size", "20", "--threads", "1"], [:]),
            (
                ["--batch-size", "128", "--threads", "2"],
                ["SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "6", "SLURM_ARRAY_TASK_MAX": "8"]
            ),
            (["--shard-count", "3", "--batch-size", "7", "--threads", "1"], ["JOB_COMPLETION_INDEX": "2"]),
        ]
        let processes = try runs.map { r -> (Process, URL) in
            let p = CLI.process(base + r.args, in: w, env: r.env)
            let err = w.appendingPathComponent(".err-\(UUID().uuidString)")
            FileManager.default.createFile(atPath: err.path, contents: nil)
            p.standardOutput = FileHandle.nullDevice
            p.standardError = try FileHandle(forWritingTo: err)
            try p.run()
            return (p, err)
        }
        for (p, err) in processes {
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "\((try? String(contentsOf: err, encoding: .utf8)) ?? "")")
        }
        let shards = (0..<3).map { "f.shard-\($0)-of-3.safetensors" }
        for s in shards { #expect(FileManager.default.fileExists(atPath: w.appendingPathComponent(s).path), "\(s)") }
        // A resubmitted task whose shard is complete does nothing.
        let again = try CLI.run(base + ["--shard", "1/3"], in: w)
        #expect(again.status == 0 && again.stdout.contains("already complete"), "\(again.stdout)\(again.stderr)")
        // Merge in scrambled order; the result is the one-process file, byte for byte.
        let merged = try CLI.run(["merge", shards[2], shards[0], shards[1], "--out", "merged.safetensors"], in: w)
        #expect(merged.status == 0, "\(merged.stderr)")
        #expect(merged.stdout.contains("300 texts from 3 shards"))
        let a = try Data(contentsOf: w.appendingPathComponent("one.safetensors"))
        let b = try Data(contentsOf: w.appendingPathComponent("merged.safetensors"))
        #expect(a.count > 300 * 6 * 64 * 4 && a == b, "merged \(b.count) bytes vs one run's \(a.count)")
        try Self.mergeRefusesIncompleteSets(in: w, shards: shards, base: base)
        try Self.scoresTheMergedFileInBlocks(in: w, shards: shards)
    }

    /// A shard is no feature file for scoring; merging a set with a hole, a shard given
    /// twice, or a shard of another run is refused by name, and writes nothing.
    static func mergeRefusesIncompleteSets(in w: URL, shards: [String], base: [String]) throws {
        // A shard is no feature file for scoring, and a set with a hole is refused by name.
        let kernel = try CLI.run(["kernel", "--a", shards[0], "--out", "k.safetensors"], in: w)
        #expect(kernel.status != 0 && kernel.stderr.contains("tangent merge"))
        let hole = try CLI.run(["merge", shards[0], shards[2], "--out", "hole.safetensors"], in: w)
        #expect(hole.status != 0 && hole.stderr.contains("missing: 1/3"), "\(hole.stderr)")
        let twice = try CLI.run(
            ["merge", shards[0], shards[1], shards[1], shards[2], "--out", "twice.safetensors"], in: w)
        #expect(twice.status != 0 && twice.stderr.contains("given twice"), "\(twice.stderr)")
        // A shard of a run with other settings.
        let alien = try CLI.run(base.dropLast() + ["alien.safetensors", "--shard", "1/3", "--seed", "5"], in: w)
        #expect(alien.status == 0, "\(alien.stderr)")
        let mixed = try CLI.run(
            ["merge", shards[0], "alien.shard-1-of-3.safetensors", shards[2], "--out", "mixed.safetensors"], in: w)
        #expect(
            mixed.status != 0 && mixed.stderr.contains("does not belong") && mixed.stderr.contains("seed"),
            "\(mixed.stderr)")
        for f in ["hole.safetensors", "twice.safetensors", "mixed.safetensors"] {
            #expect(!FileManager.default.fileExists(atPath: w.appendingPathComponent(f).path))
        }
    }

    /// Blocked scoring of the merged file: kernel matrices and attributions under a small
    /// memory budget equal those under a large one; bad training features are refused.
    static func scoresTheMergedFileInBlocks(in w: URL, shards: [String]) throws {
        // Blocked scoring of the merged file. The kernel matrix in blocks that fit 64 KiB
        // (a few rows at a time) equals the one computed in the default blocks.
        let whole = try CLI.run(
            ["kernel", "--a", "merged.safetensors", "--normalize", "--out", "k1.safetensors"], in: w)
        let small = try CLI.run(
            [
                "kernel", "--a", "merged.safetensors", "--normalize", "--memory-budget", "64KiB", "--out",
                "k2.safetensors",
            ], in: w)
        #expect(whole.status == 0 && small.status == 0 && small.stderr.contains("blocks of"), "\(small.stderr)")
        let k1 = try Self.kernel(w.appendingPathComponent("k1.safetensors"))
        let k2 = try Self.kernel(w.appendingPathComponent("k2.safetensors"))
        #expect(k1.count == 300 * 300 && k2.count == k1.count)
        #expect(
            zip(k1, k2).allSatisfy { abs($0 - $1) <= 1e-5 },
            "largest difference \(zip(k1, k2).map { abs($0 - $1) }.max() ?? 0)")
        // attribute from the merged file: the same output under a budget of blocks of 256
        // texts as under one that holds all 300.
        let attribute = [
            "attribute", "--model", CLI.model.path, "--train", "texts.jsonl", "--train-features", "merged.safetensors",
            "--kernel", "proj-trntk", "--lambda", "0.01", "--top", "3", "--json", "--text", "Who wrote Hamlet ?",
            "--text", "How far is the moon ?",
        ]
        let tight = try CLI.run(attribute + ["--memory-budget", "1MiB"], in: w)
        let roomy = try CLI.run(attribute + ["--memory-budget", "1GiB"], in: w)
        #expect(tight.status == 0 && roomy.status == 0, "\(tight.stderr)")
        #expect(tight.stderr.contains("blocks of 256") && roomy.stderr.contains("blocks of 300"), "\(tight.stderr)")
        #expect(tight.stdout == roomy.stdout && tight.stdout.split(separator: "\n").count == 2)
        // Bad training features: a shard, features of other texts, a kernel they do not hold.
        let shard = try CLI.run(attribute.map { $0 == "merged.safetensors" ? shards[0] : $0 }, in: w)
        #expect(shard.status == 1 && shard.stderr.contains("tangent merge"), "\(shard.stderr)")
        let others = try CLI.run(attribute.map { $0 == "texts.jsonl" ? "small.jsonl" : $0 }, in: w)
        #expect(others.status == 1 && others.stderr.contains("other texts"), "\(others.stderr)")
        let kind = try CLI.run(attribute.map { $0 == "proj-trntk" ? "proj-pntk" : $0 }, in: w)
        #expect(kind.status == 1 && kind.stderr.contains("holds trntk features"), "\(kind.stderr)")
        let unsupported = try CLI.run(attribute.map { $0 == "proj-trntk" ? "if-head" : $0 }, in: w)
        #expect(unsupported.status != 0 && unsupported.stderr.contains("streamed scoring"), "\(unsupported.stderr)")
    }

    /// The `kernel` tensor of a kernel file (safetensors: 8-byte header length, JSON header, data).
    static func kernel(_ url: URL) throws -> [Float] {
        let d = try Data(contentsOf: url)
        let n = Int(d.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try JSONSerialization.jsonObject(with: d.subdata(in: 8..<(8 + n))) as! [String: Any]
        let offsets = (header["kernel"] as! [String: Any])["data_offsets"] as! [Int]
        let bytes = d.subdata(in: (8 + n + offsets[0])..<(8 + n + offsets[1]))
        return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}
