import Foundation
import Testing

/// `compare --memory-budget` (training features streamed from disk) against the in-memory
/// comparison on the same texts.
@Suite struct StreamedCompareTests {
    @Test func streamedCompareAgreesWithTheInMemoryOne() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        try CLI.writeTexts(300, to: "train.jsonl", in: w)
        let test = try String(contentsOf: CLI.root.appendingPathComponent("data/trec6/test.jsonl"), encoding: .utf8)
            .split(separator: "\n").prefix(60)
        try Data((test.joined(separator: "\n") + "\n").utf8).write(to: w.appendingPathComponent("test.jsonl"))
        let args = [
            "compare", "--model", CLI.model.path, "--train", "train.jsonl", "--test", "test.jsonl", "--kernels",
            "proj-pntk,ck",
            "--proj-dim", "64", "--error-dims", "", "--cache", "cache",
        ]
        let memory = try CLI.run(args + ["--out", "in-memory"], in: w)
        // 64 KiB: blocks of 256 (the smallest) of the 300 texts.
        let streamed = try CLI.run(args + ["--memory-budget", "64KiB", "--out", "streamed"], in: w)
        #expect(memory.status == 0 && streamed.status == 0, "\(streamed.stderr)")
        #expect(streamed.stderr.contains("streamed in blocks of 256"), "\(streamed.stderr)")
        func kernels(_ dir: String) throws -> [[String: Any]] {
            let d = try Data(contentsOf: w.appendingPathComponent("\(dir)/report.json"))
            return (try JSONSerialization.jsonObject(with: d) as! [String: Any])["kernels"] as! [[String: Any]]
        }
        let a = try kernels("in-memory")
        let b = try kernels("streamed")
        #expect(
            a.map { $0["kernel"] as! String } == ["proj-pntk", "ck"]
                && b.map { $0["kernel"] as! String } == ["proj-pntk", "ck"])
        for (x, y) in zip(a, b) {
            let gx = x["grid"] as! [[String: Any]]
            let gy = y["grid"] as! [[String: Any]]
            #expect(gx.count == 8 && gy.count == 8)
            for (p, q) in zip(gx, gy) {
                // Every lambda: the same out-of-fold figure (same folds, all 300 texts) and the
                // same test tau of its fit on all training texts, to the fits' tolerance.
                #expect(p["lambda"] as! Double == q["lambda"] as! Double)
                #expect(abs((p["networkTau"] as! Double) - (q["networkTau"] as! Double)) < 1e-3)
                #expect(
                    abs((p["tau"] as! Double) - (q["tau"] as! Double)) < 0.01, "\(x["kernel"]!) lambda \(p["lambda"]!)")
            }
            #expect((y["note"] as? String)?.contains("streamed") == true)
        }
        let refused = try CLI.run(
            args.map { $0 == "proj-pntk,ck" ? "proj-pntk,if-head" : $0 } + ["--memory-budget", "1MiB", "--out", "bad"],
            in: w)
        #expect(refused.status != 0 && refused.stderr.contains("if-head"), "\(refused.stderr)")
    }
}
