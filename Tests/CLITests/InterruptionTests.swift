import Foundation
import Testing

/// Runs killed with SIGKILL part-way resume to what an uninterrupted run gives, and two
/// runs writing the same output do not destroy each other's work.
@Suite(.serialized) struct InterruptionTests {
    /// Starts `args`, waits until `ready(dir)` holds, and kills the process with SIGKILL.
    /// Returns false when the run ended before it could be killed.
    static func killWhen(_ args: [String], in w: URL, timeout: TimeInterval = 120, _ ready: (URL) -> Bool) throws
        -> Bool
    {
        let p = try CLI.start(args, in: w)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline {
            if ready(w) {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                return true
            }
            usleep(2_000)
        }
        p.waitUntilExit()
        return false
    }

    static func bytes(_ u: URL) throws -> Data { try Data(contentsOf: u) }

    @Test func trainResumedAfterKillIsBitIdentical() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        let lines = try String(contentsOf: CLI.root.appendingPathComponent("data/trec6/train.jsonl"), encoding: .utf8)
            .split(separator: "\n").prefix(600)
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: w.appendingPathComponent("t.jsonl"))
        func args(_ out: String) -> [String] {
            [
                "train", "--data", "t.jsonl", "--tokenizer", CLI.model.appendingPathComponent("tokenizer.model").path,
                "--out", out,
                "--epochs", "6", "--d-model", "64", "--d-ff", "128", "--threads", "2", "--batch-size", "16",
            ]
        }
        let full = try CLI.run(args("full"), in: w)
        #expect(full.status == 0, "\(full.stderr)")
        let killed = try Self.killWhen(args("cut"), in: w) { w in
            guard let d = try? Data(contentsOf: w.appendingPathComponent("cut/config.json")),
                let j = try? JSONSerialization.jsonObject(with: d) as? [String: Any]
            else { return false }
            return (j["epochs_completed"] as? Int ?? 0) >= 2
        }
        #expect(killed, "the run finished before it could be killed")
        let warned = try CLI.run(["predict", "--model", "cut", "--text", "what is a cat ?"], in: w)
        #expect(
            warned.status == 0 && warned.stderr.contains("training did not finish")
                && warned.stderr.contains("--resume"), "\(warned.stderr)")
        // Other settings are refused, naming the difference.
        let other = try CLI.run(args("cut") + ["--resume", "--lr", "0.002"], in: w)
        #expect(other.status == 1 && other.stderr.contains("learning_rate"), "\(other.stderr)")
        let resumed = try CLI.run(args("cut") + ["--resume"], in: w)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(
            try Self.bytes(w.appendingPathComponent("cut/model.safetensors"))
                == Self.bytes(w.appendingPathComponent("full/model.safetensors")))
        #expect(!FileManager.default.fileExists(atPath: w.appendingPathComponent("cut/resume.safetensors").path))
        let again = try CLI.run(args("cut") + ["--resume"], in: w)
        #expect(again.status == 1 && again.stderr.contains("already finished"), "\(again.stderr)")
    }

    @Test func featurizeResumedAfterKillIsByteIdentical() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        // 400 texts: four stored blocks (of 128), computed two texts at a time, so the run
        // can be killed between blocks.
        try CLI.writeTexts(400, to: "texts.jsonl", in: w)
        let args = [
            "featurize", "--model", CLI.model.path, "--data", "texts.jsonl", "--kernel", "pntk", "--proj-dim", "512",
            "--batch-size", "2", "--threads", "1",
        ]
        #expect(try CLI.run(args + ["--out", "full.safetensors"], in: w).status == 0)
        let killed = try Self.killWhen(args + ["--out", "cut.safetensors"], in: w) { w in
            guard let d = try? Data(contentsOf: w.appendingPathComponent("cut.safetensors.partial")), d.count > 8 else {
                return false
            }
            // At least one block flagged done.
            return (try? CLI.doneFlags(d))?.contains(1) ?? false
        }
        #expect(killed)
        let r = try CLI.run(args + ["--out", "cut.safetensors"], in: w)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(
            try Self.bytes(w.appendingPathComponent("cut.safetensors"))
                == Self.bytes(w.appendingPathComponent("full.safetensors")))
    }

    @Test func attributeCacheSurvivesAKillAndADamagedEntry() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        let args = [
            "attribute", "--model", CLI.model.path, "--train", "small.jsonl", "--text", "What is the capital of Peru ?",
            "--kernel", "proj-pntk", "--proj-dim", "512", "--json", "--no-layers", "--threads", "1",
        ]
        let reference = try CLI.run(args + ["--cache", "ref"], in: w)
        #expect(reference.status == 0, "\(reference.stderr)")
        let killed = try Self.killWhen(args + ["--cache", "c"], in: w) { w in
            ((try? FileManager.default.contentsOfDirectory(atPath: w.appendingPathComponent("c").path)) ?? []).contains
            { $0.hasSuffix(".partial") }
        }
        #expect(killed)
        let resumed = try CLI.run(args + ["--cache", "c"], in: w)
        #expect(resumed.status == 0 && resumed.stdout == reference.stdout, "\(resumed.stderr)")
        // Truncate the finished training features: reported, rebuilt, same answer.
        let cache = w.appendingPathComponent("c")
        let features = try FileManager.default.contentsOfDirectory(atPath: cache.path).first {
            $0.hasPrefix("pntk-") && !$0.contains("kglm") && !$0.contains("-test-")
        }!
        let u = cache.appendingPathComponent(features)
        try Data(try Data(contentsOf: u).prefix(1000)).write(to: u)
        for name in try FileManager.default.contentsOfDirectory(atPath: cache.path) where name.contains("kglm") {
            try FileManager.default.removeItem(at: cache.appendingPathComponent(name))
        }
        let rebuilt = try CLI.run(args + ["--cache", "c"], in: w)
        #expect(
            rebuilt.status == 0 && rebuilt.stderr.contains("unusable") && rebuilt.stdout == reference.stdout,
            "\(rebuilt.stderr)")
    }

    @Test func aConcurrentFeaturizeRefusesAndTheFirstFinishes() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        let lines = try String(contentsOf: CLI.root.appendingPathComponent("data/trec6/train.jsonl"), encoding: .utf8)
            .split(separator: "\n").prefix(400)
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: w.appendingPathComponent("t.jsonl"))
        let args = [
            "featurize", "--model", CLI.model.path, "--data", "t.jsonl", "--kernel", "pntk", "--proj-dim", "512",
            "--batch-size", "8", "--threads", "1", "--out", "f.safetensors",
        ]
        let first = try CLI.start(args, in: w)
        while first.isRunning
            && !FileManager.default.fileExists(atPath: w.appendingPathComponent("f.safetensors.partial").path)
        { usleep(2_000) }
        let second = try CLI.run(args, in: w)
        let firstStillRunning = first.isRunning
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        #expect(firstStillRunning, "the first run finished too early for the test")
        if firstStillRunning {
            #expect(
                second.status == 1 && second.stderr.contains("f.safetensors.partial")
                    && second.stderr.contains("another process"), "\(second.stderr)")
        }
        let check = try CLI.run(["kernel", "--a", "f.safetensors", "--out", "k.safetensors"], in: w)
        #expect(check.status == 0, "\(check.stderr)")
    }
}

extension CLI {
    /// The `done` flags of a feature file's bytes (partial or finished).
    static func doneFlags(_ d: Data) throws -> [UInt8] {
        var n: UInt64 = 0
        for (i, b) in d.prefix(8).enumerated() { n |= UInt64(b) << (8 * UInt64(i)) }
        guard d.count >= 8 + Int(n),
            let h = try JSONSerialization.jsonObject(with: d.subdata(in: 8..<(8 + Int(n)))) as? [String: Any],
            let done = h["done"] as? [String: Any], let off = done["data_offsets"] as? [Int]
        else { return [] }
        let start = 8 + Int(n) + off[0]
        let end = 8 + Int(n) + off[1]
        return end <= d.count ? Array(d[start..<end]) : []
    }
}
