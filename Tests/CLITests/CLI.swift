import Foundation

/// Runs the built `tangent` binary as a user would, and inspects what it left on disk.
enum CLI {
    /// The repository root (tests use its shipped models and data, never `../shared`).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let model = root.appendingPathComponent("models/trec6")

    /// The `tangent` executable built beside this test bundle.
    static let binary: URL = {
        let exe = URL(
            fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                ?? CommandLine.arguments[0])
        return exe.deletingLastPathComponent().appendingPathComponent("tangent")
    }()

    struct Result {
        let status: Int32
        let signaled: Bool
        let stdout: String
        let stderr: String
    }

    /// Runs `tangent args` in `dir` and waits; fails the caller if the binary is missing.
    @discardableResult
    static func run(_ args: [String], in dir: URL, env: [String: String] = [:], timeout: TimeInterval = 300) throws
        -> Result
    {
        let p = process(args, in: dir, env: env)
        let out = dir.appendingPathComponent(".stdout-\(UUID().uuidString)")
        let err = dir.appendingPathComponent(".stderr-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        let outHandle = try FileHandle(forWritingTo: out)
        let errHandle = try FileHandle(forWritingTo: err)
        p.standardOutput = outHandle
        p.standardError = errHandle
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        try outHandle.close()
        try errHandle.close()
        return Result(
            status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    /// Starts `tangent args` in `dir` without waiting.
    static func start(_ args: [String], in dir: URL) throws -> Process {
        let p = process(args, in: dir, env: [:])
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// `tangent args` in `dir`, with the caller's environment minus TANGENT_THREADS plus `env`.
    static func process(_ args: [String], in dir: URL, env: [String: String]) -> Process {
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        p.currentDirectoryURL = dir
        var environment = ProcessInfo.processInfo.environment
        environment["TANGENT_THREADS"] = nil
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        return p
    }

    /// A fresh working directory holding `small.jsonl`, 40 labelled trec6 training texts.
    static func workDirectory() throws -> URL {
        let w = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: w, withIntermediateDirectories: true)
        let lines = try String(contentsOf: root.appendingPathComponent("data/trec6/train.jsonl"), encoding: .utf8)
            .split(separator: "\n").prefix(40)
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: w.appendingPathComponent("small.jsonl"))
        return w
    }

    /// Writes the first `count` trec6 training texts to `name` in `dir`.
    static func writeTexts(_ count: Int, to name: String, in dir: URL) throws {
        let lines = try String(contentsOf: root.appendingPathComponent("data/trec6/train.jsonl"), encoding: .utf8)
            .split(separator: "\n").prefix(count)
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent(name))
    }

    /// Every file and directory under `dir` with its kind, size, modification time and a
    /// fingerprint of its bytes, to tell whether anything was removed or changed.
    static func snapshot(_ dir: URL) throws -> [String: String] {
        var out: [String: String] = [:]
        let fm = FileManager.default
        guard let e = fm.enumerator(atPath: dir.path) else { return out }
        for case let rel as String in e where !rel.hasPrefix(".stdout-") && !rel.hasPrefix(".stderr-") {
            let path = dir.appendingPathComponent(rel).path
            let a = try fm.attributesOfItem(atPath: path)
            if (a[.type] as? FileAttributeType) == .typeDirectory {
                out[rel] = "dir"
            } else if (a[.type] as? FileAttributeType) == .typeSymbolicLink {
                out[rel] = "link " + ((try? fm.destinationOfSymbolicLink(atPath: path)) ?? "?")
            } else {
                let data = try Data(contentsOf: URL(fileURLWithPath: path))
                var h: UInt64 = 0xCBF2_9CE4_8422_2325
                for b in data { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
                out[rel] =
                    "file \(data.count) \(String(h, radix: 16)) \((a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
            }
        }
        return out
    }

    /// Splits a command line on spaces; '' is an empty argument.
    static func split(_ s: String) -> [String] {
        s.split(separator: " ").map { $0 == "''" ? "" : String($0) }
    }
}
