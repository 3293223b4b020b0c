import Foundation
import Testing

/// `tangent lds` end to end on a small sample: it trains, scores every method, keeps its
/// subset models' margins so that a second run only trains what is new, and its result
/// goes into a comparison report.
@Suite struct LDSCommandTests {
    @Test func runsResumesAndExtends() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        let lines = try String(contentsOf: CLI.root.appendingPathComponent("data/trec6/train.jsonl"), encoding: .utf8).split(separator: "\n")
        try FileManager.default.createDirectory(at: w.appendingPathComponent("d"), withIntermediateDirectories: true)
        try Data(stride(from: 0, to: lines.count, by: 30).map { lines[$0] + "\n" }.joined().utf8).write(to: w.appendingPathComponent("d/train.jsonl"))
        try Data(stride(from: 7, to: lines.count, by: 150).map { lines[$0] + "\n" }.joined().utf8).write(to: w.appendingPathComponent("d/test.jsonl"))
        func lds(_ subsets: Int) throws -> CLI.Result {
            try CLI.run(["lds", "--data", "d", "--recipe", CLI.model.path, "--subsets", String(subsets), "--epochs", "1", "--kernels", "ck,grad-cos,trak",
                         "--proj-dim", "32", "--ensemble", "2", "--cache", "c", "--out", "l", "--threads", "2"], in: w)
        }
        let first = try lds(3)
        #expect(first.status == 0, "\(first.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: w.appendingPathComponent("l/lds.json"))) as? [String: Any]
        let kernels = report?["kernels"] as? [[String: Any]] ?? []
        #expect(kernels.map { $0["kernel"] as? String } == ["ck", "grad-cos", "trak"])
        #expect(kernels.map { $0["attribution"] as? String } == ["surrogate", "kernel", "trak"])
        for k in kernels {
            let s = k["lds"] as? [String: Any]
            let mean = s?["mean"] as? Double ?? .nan, low = s?["low"] as? Double ?? .nan, high = s?["high"] as? Double ?? .nan
            #expect(mean >= -1 && mean <= 1 && low <= mean && mean <= high, "\(k)")
        }
        #expect((try FileManager.default.contentsOfDirectory(atPath: w.appendingPathComponent("l/subsets").path)).count == 3)
        #expect(first.stderr.contains("subset model 3/3") && first.stderr.contains("TRAK ensemble model 2/2"))
        // More subsets: only the new one is trained; the earlier models are reused.
        let second = try lds(4)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stderr.contains("subset model 4/4") && !second.stderr.contains("subset model 1/4") && !second.stderr.contains("model under study,"))
        #expect(second.stdout.contains("| ck | surrogate |"))
        // Another recipe in the same directory is refused, naming what to do.
        let other = try CLI.run(["lds", "--data", "d", "--recipe", CLI.model.path, "--subsets", "4", "--epochs", "2", "--out", "l"], in: w)
        #expect(other.status != 0 && other.stderr.contains("other settings"))
    }
}
