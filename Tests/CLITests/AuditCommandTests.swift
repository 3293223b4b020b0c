import Foundation
import Testing

/// `tangent audit` end to end on a small sample: the benchmark flips labels, retrains with
/// the model's recipe, and the methods find the planted flips better than chance; the
/// retraining is reused by a second run; the report and page are written.
@Suite struct AuditCommandTests {
    @Test func findsPlantedFlips() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        let lines = try String(contentsOf: CLI.root.appendingPathComponent("data/trec6/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        try Data(stride(from: 0, to: lines.count, by: 30).map { lines[$0] + "\n" }.joined().utf8).write(
            to: w.appendingPathComponent("train.jsonl"))
        func audit(_ extra: [String]) throws -> CLI.Result {
            try CLI.run(
                [
                    "audit", "--model", CLI.model.path, "--train", "train.jsonl", "--flip", "0.1", "--epochs", "2",
                    "--proj-dim", "64",
                    "--cache", "c", "--top", "5", "--threads", "2",
                ] + extra, in: w)
        }
        let first = try audit(["--json", "a.json", "--html", "a.html"])
        #expect(first.status == 0, "\(first.stderr)")
        let data = try Data(contentsOf: w.appendingPathComponent("a.json"))
        let report = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let flip = report?["flip"] as? [String: Any]
        let flipped = flip?["flipped"] as? [Int] ?? []
        // round(0.1 x 146) texts, distinct, in range.
        #expect(flipped.count == 15 && Set(flipped).count == 15 && flipped.allSatisfy { (0..<146).contains($0) })
        let methods = report?["methods"] as? [[String: Any]] ?? []
        #expect(
            methods.map { $0["method"] as? String } == [
                "surrogate-oof", "surrogate-self", "network-loss", "tracin-self", "trak-self", "ekfac-self",
            ])
        for m in methods {
            let auc = m["auc"] as? Double ?? .nan
            let precision = m["precisionAtFlipRate"] as? Double ?? .nan
            #expect(auc >= 0 && auc <= 1 && precision >= 0 && precision <= 1, "\(m)")
        }
        // A wrong label is what the surrogate fitted without it and the network disagree with.
        let auc = Dictionary(
            uniqueKeysWithValues: methods.map { ($0["method"] as? String ?? "", $0["auc"] as? Double ?? .nan) })
        #expect(auc["surrogate-oof"]! > 0.6 && auc["network-loss"]! > 0.6, "\(auc)")
        let suspects = report?["suspects"] as? [[String: Any]] ?? []
        #expect(suspects.count == 5 && suspects.map { $0["rank"] as? Int } == [1, 2, 3, 4, 5])
        let scores = suspects.compactMap { ($0["scores"] as? [String: Double])?["surrogate-oof"] }
        #expect(scores.count == 5 && scores == scores.sorted(by: >))
        #expect(suspects.allSatisfy { ($0["proponents"] as? [[String: Any]] ?? []).count <= 3 })
        let page = try String(contentsOf: w.appendingPathComponent("a.html"), encoding: .utf8)
        #expect(page.contains("Which training labels look wrong?") && page.contains("surrogate-oof"))
        #expect(first.stdout.contains("| surrogate-oof | proj-trntk |"))
        // The retrained model is reused; the outputs are replaced only with --overwrite.
        let refused = try audit(["--json", "a.json"])
        #expect(refused.status != 0 && refused.stderr.contains("a.json"))
        let second = try audit(["--json", "a.json", "--overwrite", "--methods", "network-loss"])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(!second.stderr.contains("model under study, epoch"))
        // The retrained model (2 epochs, with checkpoints) explains with an ensemble of
        // itself and its first epoch: the mean attributions, no per-layer shares.
        let runs = try FileManager.default.contentsOfDirectory(atPath: w.appendingPathComponent("c/audit").path)
        #expect(runs.count == 1)
        let retrained = "c/audit/\(runs[0])/model-0"
        let text = [
            "--text", "Who invented the telephone ?", "--top", "2", "--proj-dim", "64", "--cache", "c", "--threads",
            "2", "--json",
        ]
        let single = try CLI.run(
            ["attribute", "--model", retrained, "--train", "train.jsonl", "--no-layers"] + text, in: w)
        let pair = try CLI.run(
            ["attribute", "--model", retrained, "--train", "train.jsonl", "--ensemble", "2"] + text, in: w)
        #expect(single.status == 0 && pair.status == 0, "\(pair.stderr)")
        #expect(pair.stderr.contains("ensemble model 2/2") && single.stdout != pair.stdout)
        let three = try CLI.run(
            ["attribute", "--model", retrained, "--train", "train.jsonl", "--ensemble", "3"] + text, in: w)
        #expect(
            three.status != 0 && three.stderr.contains("needs 2 checkpoints before the final epoch"), "\(three.stderr)")
        // Bad options are named.
        let bad = try CLI.run(["audit", "--model", CLI.model.path, "--train", "train.jsonl", "--flip", "0.7"], in: w)
        #expect(bad.status != 0 && bad.stderr.contains("--flip"))
        let unknown = try CLI.run(
            ["audit", "--model", CLI.model.path, "--train", "train.jsonl", "--methods", "loss"], in: w)
        #expect(unknown.status != 0 && unknown.stderr.contains("unknown method 'loss'"))
    }
}
