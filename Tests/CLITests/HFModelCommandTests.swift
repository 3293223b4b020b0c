import Foundation
import Testing

/// The commands on Hugging Face directories (the tiny BERT and XLM-R fixtures), with no
/// architecture-specific flags, and their refusals of bad directories.
@Suite struct HFModelCommandTests {
    static let fixtures = CLI.root.appendingPathComponent("Tests/TangentTests/Fixtures")
    static let bert = fixtures.appendingPathComponent("hf-bert")

    /// A work directory with 200 movie-snippets training texts and 30 test texts (the
    /// BERT fixture's labels are theirs).
    static func work() throws -> URL {
        let w = try CLI.workDirectory()
        for (file, name, n) in [("train", "train.jsonl", 200), ("test", "test.jsonl", 30)] {
            let lines = try String(contentsOf: CLI.root.appendingPathComponent("data/movie-snippets/\(file).jsonl"), encoding: .utf8)
                .split(separator: "\n").prefix(n)
            try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: w.appendingPathComponent(name))
        }
        return w
    }

    /// predict gives transformers' probabilities; featurize (one run, and sharded then
    /// merged, byte for byte), attribute (in memory and streamed from the merged file)
    /// and compare run as on tangent's own models.
    @Test func commandsRunOnABertDirectory() throws {
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.bert.appendingPathComponent("reference.json"))) as! [String: Any]
        let cases = Array((reference["cases"] as! [[String: Any]]).dropFirst(4).prefix(5))
        let predict = try CLI.run(["predict", "--model", Self.bert.path, "--json"] + cases.flatMap { ["--text", $0["text"] as! String] }, in: w)
        #expect(predict.status == 0, "\(predict.stderr)")
        let lines = predict.stdout.split(separator: "\n")
        #expect(lines.count == cases.count)
        for (line, c) in zip(lines, cases) {
            let got = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let z = c["logits"] as! [Double]
            let p1 = 1 / (1 + exp(z[0] - z[1]))
            let probabilities = got["probabilities"] as! [String: Double]
            #expect(abs(probabilities["positive"]! - p1) < 1e-5, "\(line)")
        }
        let featurize = ["featurize", "--model", Self.bert.path, "--data", "train.jsonl", "--kernel", "trntk", "--proj-dim", "32", "--per-layer"]
        let one = try CLI.run(featurize + ["--out", "one.safetensors"], in: w)
        #expect(one.status == 0, "\(one.stderr)")
        for i in 0..<2 {
            let r = try CLI.run(featurize + ["--out", "f.safetensors", "--shard", "\(i)/2", "--batch-size", "16", "--threads", "1"], in: w)
            #expect(r.status == 0, "\(r.stderr)")
        }
        let merge = try CLI.run(["merge", "f.shard-1-of-2.safetensors", "f.shard-0-of-2.safetensors", "--out", "merged.safetensors"], in: w)
        #expect(merge.status == 0, "\(merge.stderr)")
        #expect(try Data(contentsOf: w.appendingPathComponent("merged.safetensors")) == Data(contentsOf: w.appendingPathComponent("one.safetensors")))
        // The per-layer groups are the checkpoint's own.
        let header = String(decoding: try Data(contentsOf: w.appendingPathComponent("one.safetensors")).prefix(4096), as: UTF8.self)
        #expect(header.contains("encoder.layer.1") && header.contains("pooler") && header.contains("classifier"))
        let attribute = try CLI.run(["attribute", "--model", Self.bert.path, "--train", "train.jsonl", "--text", "a fine film",
                                     "--kernel", "proj-trntk", "--proj-dim", "32", "--top", "3"], in: w)
        #expect(attribute.status == 0 && attribute.stdout.contains("encoder.layer."), "\(attribute.stdout)\(attribute.stderr)")
        let streamed = try CLI.run(["attribute", "--model", Self.bert.path, "--train", "train.jsonl", "--train-features", "merged.safetensors",
                                    "--text", "a fine film", "--kernel", "proj-trntk", "--lambda", "0.01", "--top", "3"], in: w)
        #expect(streamed.status == 0 && streamed.stdout.contains(" 3. "), "\(streamed.stdout)\(streamed.stderr)")
        let compare = try CLI.run(["compare", "--model", Self.bert.path, "--train", "train.jsonl", "--test", "test.jsonl",
                                   "--kernels", "trntk,proj-pntk,embedding,grad-cos,if-head", "--proj-dim", "64", "--error-dims", "",
                                   "--out", "report"], in: w)
        #expect(compare.status == 0, "\(compare.stderr)")
        let md = (try? String(contentsOf: w.appendingPathComponent("report/report.md"), encoding: .utf8)) ?? ""
        for k in ["| trntk |", "| proj-pntk |", "| embedding |", "| grad-cos |", "| if-head |"] { #expect(md.contains(k), "\(k)") }
    }

    /// An XLM-R directory as transformers 5 saves it (tokenizer.json only) predicts
    /// transformers' class.
    @Test func xlmRobertaDirectoryPredicts() throws {
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        let dir = w.appendingPathComponent("xlmr")
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("hf-xlmr"), to: dir)
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("xlmr/saved/tokenizer.json"), to: dir.appendingPathComponent("tokenizer.json"))
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("reference.json"))) as! [String: Any]
        let c = (reference["cases"] as! [[String: Any]])[2]
        let z = c["logits"] as! [Double]
        let best = ["a", "b", "c"][z.indices.max { z[$0] < z[$1] }!]
        let r = try CLI.run(["predict", "--model", dir.path, "--text", c["text"] as! String], in: w)
        #expect(r.status == 0 && r.stdout.hasPrefix(best + "\t"), "\(r.stdout)\(r.stderr)")
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        /// Damages the copied directory.
        let damage: @Sendable (URL) throws -> Void
        /// What the error must say.
        let says: [String]
        var testDescription: String { name }
    }

    static func editConfig(_ dir: URL, _ edit: (inout [String: Any]) -> Void) throws {
        let url = dir.appendingPathComponent("config.json")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
    }

    static let cases: [Case] = [
        Case(name: "unsupported model_type", damage: { try editConfig($0) { $0["model_type"] = "gpt2" } },
             says: ["config.json", "'model_type' is 'gpt2'", "bert"]),
        Case(name: "relative positions", damage: { try editConfig($0) { $0["position_embedding_type"] = "relative_key" } },
             says: ["config.json", "position_embedding_type"]),
        Case(name: "tokenizer larger than vocab_size", damage: { dir in
            let vocab = dir.appendingPathComponent("vocab.txt")
            let extra = (0..<50).map { "zzextra\($0)" }.joined(separator: "\n")
            try Data((try String(contentsOf: vocab, encoding: .utf8) + extra + "\n").utf8).write(to: vocab)
        }, says: ["vocab.txt", "vocab_size"]),
        Case(name: "missing model.safetensors", damage: { try FileManager.default.removeItem(at: $0.appendingPathComponent("model.safetensors")) },
             says: ["model.safetensors: missing"]),
        Case(name: "pytorch_model.bin only", damage: { dir in
            try FileManager.default.moveItem(at: dir.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("pytorch_model.bin"))
        }, says: ["pytorch_model.bin", "safe_serialization"]),
        Case(name: "hidden size that does not fit the tensors", damage: { try editConfig($0) { $0["intermediate_size"] = 48 } },
             says: ["model.safetensors", "intermediate.dense.weight"]),
        Case(name: "labels of another data set", damage: { try editConfig($0) { $0["id2label"] = ["0": "ham", "1": "spam"] } },
             says: ["train.jsonl", "line 1", "ham, spam"]),
    ]

    @Test(arguments: cases) func badDirectoriesAreRefusedNamingTheCulprit(_ c: Case) throws {
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        let dir = w.appendingPathComponent("model")
        try FileManager.default.copyItem(at: Self.bert, to: dir)
        try c.damage(dir)
        let before = try CLI.snapshot(w)
        let r = try CLI.run(["attribute", "--model", dir.path, "--train", "train.jsonl", "--text", "a fine film",
                             "--kernel", "proj-pntk", "--proj-dim", "32", "--cache", "cache"], in: w)
        #expect(r.status != 0 && !r.signaled)
        for s in c.says { #expect(r.stderr.contains(s), "\(c.name): \(r.stderr)") }
        #expect(try CLI.snapshot(w) == before, "\(c.name): files changed")
    }
}
