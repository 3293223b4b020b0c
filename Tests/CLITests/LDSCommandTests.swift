import Foundation
import Testing

/// `tangent lds` end to end on a small sample: it trains, scores every method, keeps its
/// subset models' margins so that a second run only trains what is new, and its result
/// goes into a comparison report.
@Suite struct LDSCommandTests {
    @Test func runsResumesAndExtends() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        let lines = try String(contentsOf: CLI.root.appendingPathComponent("data/trec6/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        try FileManager.default.createDirectory(at: w.appendingPathComponent("d"), withIntermediateDirectories: true)
        try Data(stride(from: 0, to: lines.count, by: 30).map { lines[$0] + "\n" }.joined().utf8).write(
            to: w.appendingPathComponent("d/train.jsonl"))
        try Data(stride(from: 7, to: lines.count, by: 150).map { lines[$0] + "\n" }.joined().utf8).write(
            to: w.appendingPathComponent("d/test.jsonl"))
        func lds(_ subsets: Int, _ extra: [String] = []) throws -> CLI.Result {
            try CLI.run(
                [
                    "lds", "--data", "d", "--recipe", CLI.model.path, "--subsets", String(subsets), "--epochs", "1",
                    "--kernels", "ck,grad-cos,trak",
                    "--proj-dim", "32", "--ensemble", "2", "--cache", "c", "--out", "l", "--threads", "2",
                ] + extra, in: w)
        }
        let first = try lds(3)
        #expect(first.status == 0, "\(first.stderr)")
        let report =
            try JSONSerialization.jsonObject(with: Data(contentsOf: w.appendingPathComponent("l/lds.json")))
            as? [String: Any]
        let kernels = report?["kernels"] as? [[String: Any]] ?? []
        // Every method at the ensemble size, the surrogate also by its own influence.
        // And the class prior: each training text's label residual alone, no similarity.
        #expect(kernels.map { $0["kernel"] as? String } == ["ck", "ck-infl", "grad-cos", "trak", "class-prior"])
        #expect(
            kernels.map { $0["attribution"] as? String } == [
                "surrogate", "surrogate influence", "kernel", "trak", "label residual",
            ])
        #expect(kernels.map { $0["ensemble"] as? Int } == [2, 2, 2, 2, 1])
        // And at one model, for the curve; the surrogate over its lambda grid.
        let curve = report?["curve"] as? [[String: Any]] ?? []
        #expect(curve.count == 9 && curve.filter { $0["ensemble"] as? Int == 1 }.count == 5)
        #expect(((kernels[0]["grid"] as? [[String: Any]]) ?? []).count >= 2 && kernels[0]["lambda"] is Double)
        // TRAK over its damping grid (multiples of its curvature's mean diagonal), at the default.
        #expect(((kernels[3]["grid"] as? [[String: Any]]) ?? []).count >= 10 && kernels[3]["lambda"] as? Double == 1e-3)
        for k in kernels {
            let s = k["lds"] as? [String: Any]
            let mean = s?["mean"] as? Double ?? .nan
            let low = s?["low"] as? Double ?? .nan
            let high = s?["high"] as? Double ?? .nan
            #expect(mean >= -1 && mean <= 1 && low <= mean && mean <= high, "\(k)")
        }
        #expect(
            (try FileManager.default.contentsOfDirectory(atPath: w.appendingPathComponent("l/subsets").path)).count == 3
        )
        try Self.checkSample(w.appendingPathComponent("l/sample.json"), subsets: 3)
        #expect(first.stderr.contains("subset model 3/3") && first.stderr.contains("ensemble model 2/2"))
        // More subsets: only the new one is trained; the earlier models are reused.
        let second = try lds(4)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(
            second.stderr.contains("subset model 4/4") && !second.stderr.contains("subset model 1/4")
                && !second.stderr.contains("model under study,"))
        #expect(second.stdout.contains("| ck | surrogate |"))
        // The noise ceiling trains every subset model again, and nothing else.
        let third = try lds(4, ["--ceiling", "--selection-subsets", "2", "--ensemble-kernels", "ck,trak"])
        #expect(third.status == 0, "\(third.stderr)")
        #expect(third.stderr.contains("lambda selection: subset model 2/2"))
        #expect(
            third.stderr.contains("ceiling: subset model retrained 4/4") && !third.stderr.contains("subset model 4/4,"))
        #expect(
            (try FileManager.default.contentsOfDirectory(atPath: w.appendingPathComponent("l/subsets").path)).filter {
                $0.hasSuffix("-ceiling.json")
            }.count == 4)
        try Self.checkCeilingReport(w.appendingPathComponent("l/lds.json"))
        #expect(third.stdout.contains("Noise ceiling") && third.stdout.contains("share of ceiling"))
        // Another recipe in the same directory is refused, naming what to do.
        let other = try CLI.run(
            ["lds", "--data", "d", "--recipe", CLI.model.path, "--subsets", "4", "--epochs", "2", "--out", "l"], in: w)
        #expect(other.status != 0 && other.stderr.contains("other settings"))
    }

    /// The sample a peer library scores: texts, compared classes, subsets and their margins.
    static func checkSample(_ url: URL, subsets: Int) throws {
        let sample =
            try JSONSerialization.jsonObject(with: Data(contentsOf: url))
            as? [String: Any]
        let sampleTrain = sample?["train"] as? [[String: Any]] ?? []
        let sampleSubsets = sample?["subsets"] as? [[Int]] ?? []
        #expect(sampleSubsets.count == subsets && (sample?["margins"] as? [[Double]])?.count == subsets)
        #expect(
            sampleSubsets.allSatisfy { $0.allSatisfy { (0..<sampleTrain.count).contains($0) } } && !sampleTrain.isEmpty)
        #expect((sample?["compared"] as? [Int])?.count == (sample?["test"] as? [[String: Any]])?.count)
    }

    /// lds.json with the noise ceiling and the selection subsets: every row also against
    /// the mean of two trainings; the rows whose lambda or damping LDS chose.
    static func checkCeilingReport(_ url: URL) throws {
        let withCeiling =
            try JSONSerialization.jsonObject(with: Data(contentsOf: url))
            as? [String: Any]
        let c = withCeiling?["ceiling"] as? [String: Any]
        #expect((c?["mean"] as? Double).map { $0 > -1 && $0 <= 1 } == true)
        let rows = (withCeiling?["kernels"] as? [[String: Any]]) ?? []
        // grad-cos is outside --ensemble-kernels: the model under study alone.
        #expect(rows.map { $0["ensemble"] as? Int } == [2, 2, 2, 2, 1, 2, 2, 1])
        #expect(rows.allSatisfy { $0["ldsMean"] is [String: Any] })
        #expect(
            rows.filter { ($0["lambdaRule"] as? String)?.contains("2 selection subsets") == true }.map {
                $0["kernel"] as? String
            }
                == ["ck (lambda by LDS)", "ck-infl (lambda by LDS)", "trak (damping by LDS)"])
        // The damping chosen by LDS is one of the grid's.
        let trakByLDS = rows[rows.count - 2]
        let dampings = ((trakByLDS["grid"] as? [[String: Any]]) ?? []).compactMap { $0["lambda"] as? Double }
        #expect(trakByLDS["lambda"] as? Double != nil && dampings.contains(trakByLDS["lambda"] as? Double ?? .nan))
    }
}
