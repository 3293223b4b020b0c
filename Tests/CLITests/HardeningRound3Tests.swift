import Foundation
import Testing

/// The third round of hostile probes: Hugging Face directories, `train --init`, `lds` and
/// `audit`. Every case exits non-zero without a signal, names the culprit and leaves
/// every file of its work directory as it was (`BadInputTests.check`: the data-loss
/// check, for the cases whose output aliases an input).
@Suite struct HardeningRound3Tests {
    typealias Case = BadInputTests.Case
    static let fixtures = CLI.root.appendingPathComponent("Tests/TangentTests/Fixtures")

    /// The tiny BERT fixture copied to `W/name`, and 60 movie-snippets texts in `W/ms.jsonl`.
    static func bert(_ w: URL, _ name: String = "b") throws {
        try FileManager.default.copyItem(
            at: fixtures.appendingPathComponent("hf-bert"), to: w.appendingPathComponent(name))
        let lines = try String(
            contentsOf: CLI.root.appendingPathComponent("data/movie-snippets/train.jsonl"), encoding: .utf8
        )
        .split(separator: "\n").prefix(60)
        try BadInputTests.write(w, "ms.jsonl", lines.joined(separator: "\n") + "\n")
    }

    static func editJSON(_ url: URL, _ edit: (inout [String: Any]) -> Void) throws {
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
    }

    /// Multiplies every float32 element of the tensors whose names contain `part` by `factor`.
    static func scale(_ url: URL, _ part: String, by factor: Float) throws {
        let (n, json, data) = try HardeningTests.readHeader(url)
        var d = data
        for (name, value) in json where name.contains(part) {
            let t = value as! [String: Any]
            #expect(t["dtype"] as? String == "F32")
            let o = t["data_offsets"] as! [Int]
            for k in stride(from: 8 + n + o[0], to: 8 + n + o[1], by: 4) {
                let bits = UInt32(d[k]) | UInt32(d[k + 1]) << 8 | UInt32(d[k + 2]) << 16 | UInt32(d[k + 3]) << 24
                let v = (Float(bitPattern: bits) * factor).bitPattern
                for b in 0..<4 { d[k + b] = UInt8((v >> (8 * UInt32(b))) & 0xFF) }
            }
        }
        try d.write(to: url)
    }

    static let cases: [Case] = {
        var c: [Case] = []
        func add(
            _ name: String, _ args: String, expect: [String], setup: @escaping @Sendable (URL) throws -> Void = { _ in }
        ) {
            c.append(.line(name, args, expect: expect, setup: setup))
        }
        let fineTune = "train --data $W/ms.jsonl --epochs 1 --init"
        // 1. An output that is, contains or lies inside an input: refused, the input untouched.
        add(
            "train --init DIR --out DIR --overwrite", "\(fineTune) $W/b --out $W/b --overwrite",
            expect: ["--out", "is the --init input"]
        ) { try bert($0) }
        add(
            "the same with a trailing slash", "\(fineTune) $W/b --out $W/b/ --overwrite",
            expect: ["is the --init input"]
        ) { try bert($0) }
        add("the same through ..", "\(fineTune) $W/b --out $W/x/../b --overwrite", expect: ["is the --init input"]) {
            try bert($0)
        }
        add(
            "the same through a symbolic link", "\(fineTune) $W/link --out $W/b --overwrite",
            expect: ["is the --init input"]
        ) { w in
            try bert(w)
            try FileManager.default.createSymbolicLink(
                atPath: w.appendingPathComponent("link").path, withDestinationPath: "b")
        }
        add("--out inside --init", "\(fineTune) $W/b --out $W/b/tuned", expect: ["lies inside the --init input"]) {
            try bert($0)
        }
        add(
            "--out containing --data",
            "train --data $W/d/train.jsonl --tokenizer $M/tokenizer.model --out $W/d --overwrite",
            expect: ["contains the --data input"]
        ) { w in
            try BadInputTests.write(
                w, "d/train.jsonl", try String(contentsOf: w.appendingPathComponent("small.jsonl"), encoding: .utf8))
        }
        add(
            "lds --out is --recipe", "lds --data $W/small.jsonl --test $W/small.jsonl --recipe $W/m --out $W/m",
            expect: ["is the --recipe input"]
        ) { w in
            try BadInputTests.copyModel(to: w.appendingPathComponent("m"))
        }
        add(
            "poison --save-model is --init",
            "poison --data $W/ms.jsonl --test $W/ms.jsonl --init $W/b --save-model $W/b --overwrite --out $W/r",
            expect: ["--save-model", "is the --init input"]
        ) { try bert($0) }
        add(
            "compare --out inside --model",
            "compare --model $W/m --train $W/small.jsonl --test $W/small.jsonl --out $W/m/report",
            expect: ["lies inside the --model input"]
        ) { w in try BadInputTests.copyModel(to: w.appendingPathComponent("m")) }
        add(
            "featurize --out is --data",
            "featurize --model $M --data $W/small.jsonl --kernel pntk --proj-dim 16 --out $W/small.jsonl --overwrite",
            expect: ["is the --data input"])
        add(
            "audit --json and --html one file",
            "audit --model $M --train $W/small.jsonl --json $W/a.out --html $W/a.out",
            expect: ["--json and --html", "same file"])
        // A run that fails before its first epoch leaves the model it would replace intact.
        add(
            "train --overwrite that fails before its first epoch",
            "train --data $W/ms.jsonl --test $W/bad.jsonl --epochs 1 --init $W/b --out $W/m --overwrite",
            expect: ["bad.jsonl", "maybe"]
        ) { w in
            try bert(w)
            try BadInputTests.copyModel(to: w.appendingPathComponent("m"))
            try BadInputTests.write(w, "bad.jsonl", "{\"text\": \"x\", \"label\": \"maybe\"}\n")
        }
        // 2. A forward pass that overflows float32 is an error naming the model, stage and text.
        for (name, args) in [
            ("predict", "predict --model $W/h --text hello"), ("evaluate", "evaluate --model $W/h --data $W/ms.jsonl"),
            (
                "featurize",
                "featurize --model $W/h --data $W/ms.jsonl --kernel pntk --proj-dim 16 --out $W/f.safetensors"
            ),
            (
                "attribute",
                "attribute --model $W/h --train $W/ms.jsonl --text hello --kernel proj-pntk --proj-dim 16 --cache $W/c"
            ),
            ("exact-kernel", "exact-kernel --model $W/h --data $W/ms.jsonl --kernel pntk --out $W/k.safetensors"),
        ] {
            add(
                "\(name) on a model that overflows", args,
                expect: ["/h", "not finite", name == "predict" ? "text 1 ('hello')" : "line 1"]
            ) { w in
                try bert(w, "h")
                try scale(w.appendingPathComponent("h/model.safetensors"), "word_embeddings", by: 1e30)
            }
        }
        // 4. Config values that would fall back silently.
        let predictB = "predict --model $W/b --text hello"
        // Values as JSON text (see `value`).
        for (field, json, says) in [
            ("hidden_act", "42", "hidden_act"), ("problem_type", "\"multi_label_classification\"", "problem_type"),
            ("problem_type", "\"regression\"", "problem_type"), ("pad_token_id", "5", "pad_token_id"),
            ("num_hidden_layers", "true", "num_hidden_layers"),
            ("max_position_embeddings", "1", "max_position_embeddings"),
            ("id2label", "{\"0\": \"a\", \"1\": \"a\"}", "names 'a' twice"),
        ] {
            add("config.json \(field) \(json)", predictB, expect: ["config.json", says]) { w in
                try bert(w)
                try editJSON(w.appendingPathComponent("b/config.json")) { $0[field] = Self.value(json) }
            }
        }
        for (field, json) in [
            ("do_lower_case", "\"no\""), ("model_max_length", "-1"), ("model_max_length", "\"8\""),
            ("strip_accents", "1"),
        ] {
            add("tokenizer_config.json \(field) \(json)", predictB, expect: ["tokenizer_config.json", field]) { w in
                try bert(w)
                try editJSON(w.appendingPathComponent("b/tokenizer_config.json")) { $0[field] = Self.value(json) }
            }
        }
        // 5. train --init takes its shape from the checkpoint.
        for flag in ["--d-model 64", "--layers 3", "--pooling cls"] {
            add(
                "train --init with \(flag)", "\(fineTune) $W/b --out $W/o \(flag)",
                expect: [String(flag.split(separator: " ")[0]), "--init"]
            ) { try bert($0) }
        }
        add("--resume with another --init", "\(fineTune) $W/b2 --out $W/o --resume", expect: ["--init", "/b2"]) { w in
            try bert(w)
            try FileManager.default.copyItem(at: w.appendingPathComponent("b"), to: w.appendingPathComponent("b2"))
            try cli(w, "\(fineTune) $W/b --out $W/o")
            try editJSON(w.appendingPathComponent("o/config.json")) { json in
                var record = json["tangent"] as! [String: Any]
                record["complete"] = false
                json["tangent"] = record
            }
        }
        add(
            "--resume with another --max-len", "\(fineTune) $W/b --out $W/o --resume --max-len 16",
            expect: ["--max-len (64 then, 16 now)"]
        ) { w in
            try bert(w)
            try cli(w, "\(fineTune) $W/b --out $W/o")
            try editJSON(w.appendingPathComponent("o/config.json")) { json in
                var record = json["tangent"] as! [String: Any]
                record["complete"] = false
                json["tangent"] = record
            }
        }
        // 6. Unbounded work is refused before any.
        add(
            "lds --ensemble 1e12",
            "lds --data $W/small.jsonl --test $W/small.jsonl --recipe $M --ensemble 1000000000000 --out $W/l",
            expect: ["--ensemble 1000000000000"])
        add(
            "lds --selection-subsets 1e12",
            "lds --data $W/small.jsonl --test $W/small.jsonl --recipe $M --selection-subsets 1000000000000 --out $W/l",
            expect: ["--selection-subsets 1000000000000"])
        // 7. Messages that name the real fault.
        add("no config.json", "predict --model $W/e --text hi", expect: ["/e", "no config.json", "model_type"]) { w in
            try BadInputTests.write(w, "e/vocab.txt", "[PAD]\n")
        }
        add("empty config.json", "predict --model $W/e --text hi", expect: ["config.json", "empty"]) { w in
            try BadInputTests.write(w, "e/config.json", "")
        }
        add(
            "config.json without model_type", "predict --model $W/b --text hi",
            expect: ["config.json", "'model_type'", "'architecture'"]
        ) { w in
            try bert(w)
            try editJSON(w.appendingPathComponent("b/config.json")) { $0["model_type"] = nil }
        }
        add(
            "sharded checkpoint with an empty index", "predict --model $W/b --text hi",
            expect: ["model.safetensors.index.json", "weight_map"]
        ) { w in
            try bert(w)
            try FileManager.default.moveItem(
                at: w.appendingPathComponent("b/model.safetensors"),
                to: w.appendingPathComponent("b/model-00001-of-00001.safetensors"))
            try BadInputTests.write(w, "b/model.safetensors.index.json", "{\"metadata\": {}, \"weight_map\": {}}")
        }
        add(
            "tensors of another model type", "\(fineTune) $W/b --out $W/o",
            expect: ["model.safetensors", "named for model type roberta", "'bert'"]
        ) { w in
            try bert(w)
            try renameTensors(w.appendingPathComponent("b/model.safetensors")) {
                $0.hasPrefix("bert.") ? "roberta." + $0.dropFirst(5) : $0
            }
        }
        add(
            "a head of another model type", "predict --model $W/b --text hi",
            expect: ["model.safetensors", "laid out for another model type", "'bert'"]
        ) { w in
            try bert(w)
            try renameTensors(w.appendingPathComponent("b/model.safetensors")) {
                $0 == "classifier.weight"
                    ? "classifier.out_proj.weight" : $0 == "classifier.bias" ? "classifier.out_proj.bias" : $0
            }
        }
        add(
            "tensors with and without the prefix", "predict --model $W/b --text hi",
            expect: ["model.safetensors", "both with and without"]
        ) { w in
            try bert(w)
            try renameTensors(w.appendingPathComponent("b/model.safetensors")) {
                $0.hasPrefix("bert.encoder.") ? String($0.dropFirst(5)) : $0
            }
        }
        // 8. A damaged report.json gives an error or a page, never a trap.
        add("report.json with a count that is not a number", "render-report $W/r", expect: ["report.json"]) { w in
            try BadInputTests.write(w, "r/report.json", "{\"kernels\": \"many\"}")
        }
        return c
    }()

    @Test(arguments: cases) func failsCleanlyNamingTheCulpritAndKeepsFiles(_ c: Case) throws {
        let r = try BadInputTests.check(c)
        // The case, its exit status and the first line it printed, for the record.
        let first =
            r.stderr.split(separator: "\n").first { $0.hasPrefix("error") } ?? r.stderr.split(separator: "\n").first
            ?? ""
        print("probe | \(c.name) | exit \(r.status) | \(first)")
    }

    /// A JSON value given as JSON text.
    static func value(_ json: String) -> Any {
        (try? JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)) ?? NSNull()
    }

    static func cli(_ w: URL, _ args: String) throws {
        try HardeningTests.cli(w, args)
    }

    /// Renames every tensor of a safetensors file by `rename` (header rewritten, data kept).
    static func renameTensors(_ url: URL, _ rename: (String) -> String) throws {
        try HardeningTests.rewriteHeader(url, to: url) { json in
            json = Dictionary(
                uniqueKeysWithValues: json.map { ($0.key == "__metadata__" ? $0.key : rename($0.key), $0.value) })
        }
    }

    /// --overwrite replaces a model directory whole, either way between tangent's layout
    /// and Hugging Face's: no file of the old model survives.
    @Test func overwriteReplacesTheWholeDirectory() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        try Self.bert(w)
        try BadInputTests.copyModel(to: w.appendingPathComponent("m"))
        let hf = try CLI.run(
            CLI.split("train --data \(w.path)/ms.jsonl --epochs 1 --init \(w.path)/b --out \(w.path)/m --overwrite"),
            in: w)
        #expect(hf.status == 0, "\(hf.stderr)")
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: w.appendingPathComponent("m").path))
        #expect(names == ["config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"], "\(names)")
        let back = try CLI.run(
            CLI.split(
                "train --data \(w.path)/small.jsonl --tokenizer \(CLI.model.path)/tokenizer.model --d-model 8 --heads 2 --layers 1 --d-ff 16 --epochs 1 --out \(w.path)/m --overwrite"
            ), in: w)
        #expect(back.status == 0, "\(back.stderr)")
        let again = Set(try FileManager.default.contentsOfDirectory(atPath: w.appendingPathComponent("m").path))
        #expect(again == ["config.json", "model.safetensors", "tokenizer.model", "labels.json"], "\(again)")
        // No staging directory is left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: w.path).filter { $0.contains("tangent-") }.isEmpty)
        // tokenizer encode on a Hugging Face directory prints the ids its model sees.
        let ids = try CLI.run(
            ["tokenizer", "encode", "--tokenizer", w.appendingPathComponent("b").path, "--text", "a [MASK] film"], in: w
        )
        #expect(
            ids.status == 0 && ids.stdout.hasPrefix("2 ") && ids.stdout.contains(" 4 ")
                && ids.stdout.contains("[MASK]"), "\(ids.stdout)\(ids.stderr)")
    }
}
