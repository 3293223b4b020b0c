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
            let lines = try String(
                contentsOf: CLI.root.appendingPathComponent("data/movie-snippets/\(file).jsonl"), encoding: .utf8
            )
            .split(separator: "\n").prefix(n)
            try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: w.appendingPathComponent(name))
        }
        return w
    }

    /// On each architecture, with no flags of its own: predict gives transformers'
    /// probabilities; featurize (one run, and sharded then merged, byte for byte, per-layer
    /// groups as the checkpoint names them), attribute (in memory and streamed from the
    /// merged file), compare and poison --init run as on tangent's own models.
    @Test(arguments: [
        ("hf-bert", ["encoder.layer.1", "pooler", "classifier"]),
        ("hf-distilbert", ["transformer.layer.1", "pre_classifier", "classifier"]),
        ("hf-electra", ["encoder.layer.1", "embeddings_project", "classifier"]),
        ("hf-albert", ["encoder.albert_layer_groups.1", "encoder.embedding_hidden_mapping_in", "pooler"]),
        ("hf-deberta", ["encoder.layer.1", "encoder.rel_embeddings", "pooler"]),
        ("hf-modernbert", ["layers.2", "final_norm", "head"]),
    ])
    func commandsRunOnEachArchitectureAndShardsMergeBitIdentical(name: String, groups: [String]) throws {
        let model = Self.fixtures.appendingPathComponent(name)
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        let reference =
            try JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("reference.json")))
            as! [String: Any]
        let cases = Array((reference["cases"] as! [[String: Any]]).dropFirst(4).prefix(5))
        let predict = try CLI.run(
            ["predict", "--model", model.path, "--json"] + cases.flatMap { ["--text", $0["text"] as! String] }, in: w)
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
        let featurize = [
            "featurize", "--model", model.path, "--data", "train.jsonl", "--kernel", "trntk", "--proj-dim", "32",
            "--per-layer",
        ]
        let one = try CLI.run(featurize + ["--out", "one.safetensors"], in: w)
        #expect(one.status == 0, "\(one.stderr)")
        for i in 0..<2 {
            let r = try CLI.run(
                featurize + ["--out", "f.safetensors", "--shard", "\(i)/2", "--batch-size", "16", "--threads", "1"],
                in: w)
            #expect(r.status == 0, "\(r.stderr)")
        }
        let merge = try CLI.run(
            ["merge", "f.shard-1-of-2.safetensors", "f.shard-0-of-2.safetensors", "--out", "merged.safetensors"], in: w)
        #expect(merge.status == 0, "\(merge.stderr)")
        #expect(
            try Data(contentsOf: w.appendingPathComponent("merged.safetensors"))
                == Data(contentsOf: w.appendingPathComponent("one.safetensors")))
        // The per-layer groups are the checkpoint's own.
        let header = String(
            decoding: try Data(contentsOf: w.appendingPathComponent("one.safetensors")).prefix(4096), as: UTF8.self)
        #expect(groups.allSatisfy(header.contains), "\(header)")
        let attribute = try CLI.run(
            [
                "attribute", "--model", model.path, "--train", "train.jsonl", "--text", "a fine film",
                "--kernel", "proj-trntk", "--proj-dim", "32", "--top", "3",
            ], in: w)
        #expect(
            attribute.status == 0 && attribute.stdout.contains(groups[0].dropLast()),
            "\(attribute.stdout)\(attribute.stderr)")
        let streamed = try CLI.run(
            [
                "attribute", "--model", model.path, "--train", "train.jsonl", "--train-features", "merged.safetensors",
                "--text", "a fine film", "--kernel", "proj-trntk", "--lambda", "0.01", "--top", "3",
            ], in: w)
        #expect(streamed.status == 0 && streamed.stdout.contains(" 3. "), "\(streamed.stdout)\(streamed.stderr)")
        let compare = try CLI.run(
            [
                "compare", "--model", model.path, "--train", "train.jsonl", "--test", "test.jsonl",
                "--kernels", "trntk,proj-pntk,embedding,grad-cos,if-head", "--proj-dim", "64", "--error-dims", "",
                "--out", "report",
            ], in: w)
        #expect(compare.status == 0, "\(compare.stderr)")
        let md = (try? String(contentsOf: w.appendingPathComponent("report/report.md"), encoding: .utf8)) ?? ""
        for k in ["| trntk |", "| proj-pntk |", "| embedding |", "| grad-cos |", "| if-head |"] {
            #expect(md.contains(k), "\(k)")
        }
        // poison --init fine-tunes the encoder on the poisoned texts.
        let poison = try CLI.run(
            [
                "poison", "--init", model.path, "--data", "train.jsonl", "--test", "test.jsonl", "--source", "positive",
                "--target", "negative", "--k", "2", "--epochs", "1", "--lr", "1e-3", "--kernels", "proj-pntk,tracin",
                "--proj-dim", "32", "--out", "poison",
            ], in: w)
        #expect(
            poison.status == 0 && poison.stdout.contains("| tracin |") && poison.stderr.contains("fine-tuning"),
            "\(poison.stdout)\(poison.stderr)")
    }

    /// A fine-tune killed after an epoch resumes to the uninterrupted run's weights, bit for bit.
    static func resumesAKilledFineTune(in w: URL) throws {
        let weights = { (d: String) in try Data(contentsOf: w.appendingPathComponent("\(d)/model.safetensors")) }
        let long = [
            "train", "--init", Self.bert.path, "--data", "train.jsonl", "--epochs", "12", "--batch-size", "8",
            "--threads", "2",
        ]
        #expect(try CLI.run(long + ["--out", "full"], in: w).status == 0)
        let killed = try InterruptionTests.killWhen(long + ["--out", "cut"], in: w) { w in
            guard let d = try? Data(contentsOf: w.appendingPathComponent("cut/config.json")),
                let j = try? JSONSerialization.jsonObject(with: d) as? [String: Any]
            else { return false }
            return ((j["tangent"] as? [String: Any])?["epochs_completed"] as? Int ?? 0) >= 2
        }
        #expect(killed, "the run finished before it could be killed")
        if killed {
            let warned = try CLI.run(["predict", "--model", "cut", "--text", "a fine film"], in: w)
            #expect(warned.status == 0 && warned.stderr.contains("--resume"), "\(warned.stderr)")
            let resumed = try CLI.run(long + ["--out", "cut", "--resume"], in: w)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(try weights("cut") == weights("full"))
        }
    }

    /// `train --init` fine-tunes the BERT fixture: the output is a Hugging Face directory
    /// with the tensors, dtypes and shapes transformers' own save_pretrained wrote, id2label
    /// and the truncation length; a second run is bit-identical; an interrupted run resumes;
    /// TracIn finds its checkpoints.
    @Test func fineTuningIsBitIdenticalResumesAndExportsABertDirectory() throws {
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        let args = [
            "train", "--init", Self.bert.path, "--data", "train.jsonl", "--test", "test.jsonl", "--epochs", "2",
            "--batch-size", "16", "--lr", "1e-3", "--max-len", "40", "--threads", "2", "--keep-checkpoints",
        ]
        let a = try CLI.run(args + ["--out", "a"], in: w)
        #expect(a.status == 0 && a.stderr.contains("with its own classification head"), "\(a.stderr)")
        let b = try CLI.run(args + ["--out", "b"], in: w)
        #expect(b.status == 0, "\(b.stderr)")
        let weights = { (d: String) in try Data(contentsOf: w.appendingPathComponent("\(d)/model.safetensors")) }
        #expect(try weights("a") == weights("b"))
        #expect(try weights("a") != Data(contentsOf: Self.bert.appendingPathComponent("model.safetensors")))
        // Same tensors as transformers' save_pretrained: names, dtypes, shapes.
        func header(_ url: URL) throws -> [String: String] {
            let data = try Data(contentsOf: url)
            let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            let json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
            return json.filter { $0.key != "__metadata__" }.mapValues { v in
                let t = v as! [String: Any]
                return "\(t["dtype"]!) \(t["shape"]!)"
            }
        }
        #expect(
            try header(w.appendingPathComponent("a/model.safetensors"))
                == header(Self.bert.appendingPathComponent("model.safetensors")))
        let config =
            try JSONSerialization.jsonObject(with: Data(contentsOf: w.appendingPathComponent("a/config.json")))
            as! [String: Any]
        #expect(config["architectures"] as? [String] == ["BertForSequenceClassification"])
        #expect(config["id2label"] as? [String: String] == ["0": "negative", "1": "positive"])
        #expect((config["tangent"] as? [String: Any])?["complete"] as? Bool == true)
        let tokenizerConfig =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: w.appendingPathComponent("a/tokenizer_config.json"))) as! [String: Any]
        #expect(tokenizerConfig["model_max_length"] as? Int == 40)
        #expect(FileManager.default.fileExists(atPath: w.appendingPathComponent("a/vocab.txt").path))
        try Self.resumesAKilledFineTune(in: w)
        // TracIn reads the fine-tuned model's checkpoints.
        let compare = try CLI.run(
            [
                "compare", "--model", "a", "--train", "train.jsonl", "--test", "test.jsonl", "--kernels",
                "tracin,proj-pntk",
                "--proj-dim", "64", "--error-dims", "", "--out", "report",
            ], in: w)
        #expect(compare.status == 0 && !compare.stderr.contains("no checkpoints"), "\(compare.stderr)")
        #expect(compare.stderr.contains("tracin: 2 checkpoints"), "\(compare.stderr)")
        // lds --recipe retrains subset models from the same pretrained weights.
        let lds = try CLI.run(
            [
                "lds", "--recipe", "a", "--data", "train.jsonl", "--test", "test.jsonl", "--subsets", "3", "--ensemble",
                "1",
                "--kernels", "proj-pntk,tracin,ekfac", "--proj-dim", "64", "--out", "lds",
            ], in: w)
        #expect(
            lds.status == 0 && lds.stdout.contains("fine-tuned from \(Self.bert.standardizedFileURL.path)"),
            "\(lds.stdout)\(lds.stderr)")
        let flags = try CLI.run(
            [
                "lds", "--recipe", "a", "--data", "train.jsonl", "--test", "test.jsonl", "--d-model", "32", "--out",
                "lds2",
            ], in: w)
        #expect(
            flags.status != 0 && flags.stderr.contains("--d-model") && flags.stderr.contains("pretrained"),
            "\(flags.stderr)")
    }

    /// An XLM-R directory as transformers 5 saves it (tokenizer.json only) predicts
    /// transformers' class.
    @Test func xlmRobertaDirectoryPredicts() throws {
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        let dir = w.appendingPathComponent("xlmr")
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("hf-xlmr"), to: dir)
        try FileManager.default.copyItem(
            at: Self.fixtures.appendingPathComponent("xlmr/saved/tokenizer.json"),
            to: dir.appendingPathComponent("tokenizer.json"))
        let reference =
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("reference.json")))
            as! [String: Any]
        let c = (reference["cases"] as! [[String: Any]])[2]
        let z = c["logits"] as! [Double]
        let best = ["a", "b", "c"][z.indices.max { z[$0] < z[$1] }!]
        let r = try CLI.run(["predict", "--model", dir.path, "--text", c["text"] as! String], in: w)
        #expect(r.status == 0 && r.stdout.hasPrefix(best + "\t"), "\(r.stdout)\(r.stderr)")
    }

    /// DistilBERT, ELECTRA, ALBERT, DeBERTa and the checkpoints as pretrained models ship (masked-LM,
    /// discriminator and sentence-order heads, shards): fine-tuned with `train --init` (the dropped heads
    /// named), then predicted and attributed, per-layer shares named as the checkpoint
    /// names its layers.
    @Test(arguments: [
        "hf-distilbert", "hf-distilbert-sinusoidal", "hf-electra", "hf-albert", "hf-deberta-own", "hf-shipped/bert-mlm",
        "hf-shipped/bert-sharded",
        "hf-shipped/electra-discriminator", "hf-shipped/albert-pretraining", "hf-shipped/deberta-mlm",
        "hf-modernbert-biased", "hf-shipped/modernbert-mlm",
    ])
    func otherCheckpointsFineTuneAndAttribute(name: String) throws {
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        let tune = try CLI.run(
            [
                "train", "--init", Self.fixtures.appendingPathComponent(name).path, "--data", "train.jsonl", "--epochs",
                "1",
                "--out", "m",
            ], in: w)
        #expect(tune.status == 0, "\(tune.stderr)")
        if name.hasSuffix("mlm") {
            let head = name.contains("modernbert") ? "decoder.bias.*" : "cls.predictions.*"
            #expect(tune.stderr.contains("dropped") && tune.stderr.contains(head), "\(tune.stderr)")
        }
        if name.hasSuffix("albert-pretraining") {
            #expect(tune.stderr.contains("predictions.") && tune.stderr.contains("sop_classifier."), "\(tune.stderr)")
        }
        if name.hasSuffix("discriminator") {
            #expect(
                tune.stderr.contains("dropped") && tune.stderr.contains("discriminator_predictions.dense.*"),
                "\(tune.stderr)")
        }
        if name == "hf-distilbert-sinusoidal" {
            // The flag stays in the fine-tune's config.json, so transformers reads the same model.
            let json =
                try JSONSerialization.jsonObject(with: Data(contentsOf: w.appendingPathComponent("m/config.json")))
                as? [String: Any]
            #expect(json?["sinusoidal_pos_embds"] as? Bool == true)
        }
        let r = try CLI.run(
            [
                "attribute", "--model", "m", "--train", "train.jsonl", "--text", "a fine film", "--kernel",
                "proj-trntk",
                "--proj-dim", "32", "--top", "2", "--cache", "cache",
            ], in: w)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("proponents") && r.stdout.contains("%]"), "\(r.stdout)")
        if name.hasPrefix("hf-distilbert") {
            // DistilBERT's groups: transformer.layer.i and pre_classifier, no pooler.
            #expect(!r.stdout.contains("pooler") && !r.stdout.contains("encoder.layer"), "\(r.stdout)")
        }
        if name.contains("electra") {
            // ELECTRA's head: classifier.dense + GELU, no pooler.
            #expect(r.stdout.contains("classifier") && !r.stdout.contains("pooler"), "\(r.stdout)")
        }
        if name == "hf-deberta-own" {
            // DeBERTa's layers by the checkpoint's names (the freshly initialized MLM's
            // shares are its new head's).
            #expect(r.stdout.contains("encoder.layer.1"), "\(r.stdout)")
        }
    }

    /// The commands that retrain or evaluate a fine-tune, on the other architectures:
    /// evaluate, lds --recipe (subset fine-tunes from the same pretrained weights) and the
    /// label audit.
    @Test(arguments: ["hf-distilbert", "hf-electra", "hf-albert", "hf-deberta", "hf-modernbert"])
    func recipeCommandsRunOnEachArchitecture(name: String) throws {
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        let pretrained = Self.fixtures.appendingPathComponent(name)
        let tune = try CLI.run(
            ["train", "--init", pretrained.path, "--data", "train.jsonl", "--epochs", "1", "--out", "m"], in: w)
        #expect(tune.status == 0, "\(tune.stderr)")
        let evaluate = try CLI.run(["evaluate", "--model", "m", "--data", "test.jsonl"], in: w)
        #expect(evaluate.status == 0 && evaluate.stdout.contains("accuracy"), "\(evaluate.stdout)\(evaluate.stderr)")
        let lds = try CLI.run(
            [
                "lds", "--recipe", "m", "--data", "train.jsonl", "--test", "test.jsonl", "--subsets", "3", "--ensemble",
                "1",
                "--kernels", "proj-pntk,tracin,ekfac", "--proj-dim", "64", "--out", "lds",
            ], in: w)
        #expect(
            lds.status == 0 && lds.stdout.contains("fine-tuned from \(pretrained.standardizedFileURL.path)"),
            "\(lds.stdout)\(lds.stderr)")
        // EK-FAC's factors come from every linear layer of the architecture (shared, fused, relative rows).
        #expect(lds.stdout.contains("ekfac") && lds.stderr.contains("linear tensors"), "\(lds.stdout)\(lds.stderr)")
        let audit = try CLI.run(
            [
                "audit", "--model", "m", "--train", "train.jsonl", "--flip", "0.1", "--epochs", "1", "--proj-dim", "64",
                "--top", "3", "--json", "a.json",
            ], in: w)
        #expect(
            audit.status == 0 && FileManager.default.fileExists(atPath: w.appendingPathComponent("a.json").path),
            "\(audit.stderr)")
    }

    /// `train --init --max-shard-size` saves shards and an index as save_pretrained does,
    /// with the same weights as one file: the same predictions, bit for bit.
    @Test func fineTuneSavesShards() throws {
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        for (out, extra) in [("sharded", ["--max-shard-size", "100KB"]), ("whole", [])] {
            let r = try CLI.run(
                ["train", "--init", Self.bert.path, "--data", "train.jsonl", "--epochs", "1", "--out", out] + extra,
                in: w)
            #expect(r.status == 0, "\(r.stderr)")
        }
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: w.appendingPathComponent("sharded").path))
        #expect(
            names.isSuperset(of: [
                "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
            ])
                && !names.contains("model.safetensors"), "\(names)")
        let a = try CLI.run(["predict", "--model", "sharded", "--data", "test.jsonl", "--json"], in: w)
        let b = try CLI.run(["predict", "--model", "whole", "--data", "test.jsonl", "--json"], in: w)
        #expect(a.status == 0 && !a.stdout.isEmpty && a.stdout == b.stdout, "\(a.stderr)")
    }

    /// A RoBERTa directory with its byte-level BPE files (vocab.json + merges.txt, or the
    /// tokenizer.json transformers 5 saves): the ids transformers gives
    /// (scripts/make_bpe_fixture.py), and a prediction.
    @Test(arguments: [["vocab.json", "merges.txt"], ["saved/tokenizer.json", "saved/tokenizer_config.json"]])
    func robertaWithByteLevelBPE(files: [String]) throws {
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        let dir = w.appendingPathComponent("roberta")
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("hf-xlmr"), to: dir)
        for f in files {
            let target = dir.appendingPathComponent((f as NSString).lastPathComponent)
            try? FileManager.default.removeItem(at: target)
            try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("bpe/\(f)"), to: target)
        }
        try Self.editConfig(dir) {
            $0["model_type"] = "roberta"
            $0["architectures"] = ["RobertaForSequenceClassification"]
        }
        let line = try String(contentsOf: Self.fixtures.appendingPathComponent("bpe/ids.jsonl"), encoding: .utf8).split(
            separator: "\n")[12]
        let c = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        let ids = try CLI.run(["tokenizer", "encode", "--tokenizer", dir.path, "--text", c["text"] as! String], in: w)
        #expect(
            ids.status == 0
                && ids.stdout.split(separator: "\n").first.map(String.init)
                    == (c["ids"] as! [Int]).map(String.init).joined(separator: " "),
            "\(ids.stdout)\(ids.stderr)")
        let r = try CLI.run(["predict", "--model", dir.path, "--text", "don't stop the music!"], in: w)
        #expect(r.status == 0, "\(r.stderr)")
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
        Case(
            name: "unsupported model_type", damage: { try editConfig($0) { $0["model_type"] = "gpt2" } },
            says: ["config.json", "'model_type' is 'gpt2'", "bert"]),
        Case(
            name: "relative positions",
            damage: { try editConfig($0) { $0["position_embedding_type"] = "relative_key" } },
            says: ["config.json", "position_embedding_type"]),
        Case(
            name: "tokenizer larger than vocab_size",
            damage: { dir in
                let vocab = dir.appendingPathComponent("vocab.txt")
                let extra = (0..<50).map { "zzextra\($0)" }.joined(separator: "\n")
                try Data((try String(contentsOf: vocab, encoding: .utf8) + extra + "\n").utf8).write(to: vocab)
            }, says: ["vocab.txt", "vocab_size"]),
        Case(
            name: "missing model.safetensors",
            damage: { try FileManager.default.removeItem(at: $0.appendingPathComponent("model.safetensors")) },
            says: ["model.safetensors: missing"]),
        Case(
            name: "pytorch_model.bin only",
            damage: { dir in
                try FileManager.default.moveItem(
                    at: dir.appendingPathComponent("model.safetensors"),
                    to: dir.appendingPathComponent("pytorch_model.bin"))
            }, says: ["pytorch_model.bin", "safe_serialization"]),
        Case(
            name: "hidden size that does not fit the tensors",
            damage: { try editConfig($0) { $0["intermediate_size"] = 48 } },
            says: ["model.safetensors", "intermediate.dense.weight"]),
        Case(
            name: "sizes beyond memory",
            damage: {
                try editConfig($0) {
                    $0["hidden_size"] = 16_777_216
                    $0["vocab_size"] = 16_777_216
                }
            },
            says: ["config.json", "hidden_size 16777216", "more than half this machine's"]),
        Case(
            name: "labels of another data set",
            damage: { try editConfig($0) { $0["id2label"] = ["0": "ham", "1": "spam"] } },
            says: ["train.jsonl", "line 1", "ham, spam"]),
    ]

    @Test(arguments: cases) func badDirectoriesAreRefusedNamingTheCulprit(_ c: Case) throws {
        let w = try Self.work()
        defer { try? FileManager.default.removeItem(at: w) }
        let dir = w.appendingPathComponent("model")
        try FileManager.default.copyItem(at: Self.bert, to: dir)
        try c.damage(dir)
        let before = try CLI.snapshot(w)
        let r = try CLI.run(
            [
                "attribute", "--model", dir.path, "--train", "train.jsonl", "--text", "a fine film",
                "--kernel", "proj-pntk", "--proj-dim", "32", "--cache", "cache",
            ], in: w)
        #expect(r.status != 0 && !r.signaled)
        for s in c.says { #expect(r.stderr.contains(s), "\(c.name): \(r.stderr)") }
        #expect(try CLI.snapshot(w) == before, "\(c.name): files changed")
    }
}
