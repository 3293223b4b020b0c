import Foundation
import Testing

/// The second round of hostile probes: forged metadata, sizes past what the machine holds,
/// swapped tokenizers, NaN in inputs, stale side files, outputs that alias inputs, and
/// errors that must name the option or file. Each case runs the built binary as
/// `BadInputTests` does (non-zero exit without a signal, culprit named, files unchanged);
/// cases that must succeed instead are tests of their own below.
@Suite struct HardeningTests {
    typealias Case = BadInputTests.Case

    static let cases: [Case] = {
        var c: [Case] = []
        func add(
            _ name: String, _ args: String, expect: [String], setup: @escaping @Sendable (URL) throws -> Void = { _ in }
        ) {
            c.append(.line(name, args, expect: expect, setup: setup))
        }
        let attribute = "attribute --model $M --train $W/small.jsonl --text hi --kernel proj-pntk"
        // Forged or damaged feature-file metadata.
        for (value, expect) in [("0", "at least 1"), ("9223372036854775807", "outside"), ("-1", "outside")] {
            add(
                "block_size \(value) in kernel", "kernel --a $W/e.safetensors --out $W/k.safetensors",
                expect: ["e.safetensors", "block_size", expect]
            ) { w in
                try features(w)
                try editHeader(w, "f.safetensors", to: "e.safetensors", metadata: ["block_size": value])
            }
        }
        add(
            "block_size 0 in --train-features", "\(attribute) --proj-dim 16 --train-features $W/e.safetensors",
            expect: ["e.safetensors", "block_size"]
        ) { w in
            try features(w)
            try editHeader(w, "f.safetensors", to: "e.safetensors", metadata: ["block_size": "0"])
        }
        add(
            "block_size 0 in merge", "merge $W/e.safetensors --out $W/m.safetensors",
            expect: ["e.safetensors", "block_size"]
        ) { w in
            try features(w)
            try editHeader(w, "f.safetensors", to: "e.safetensors", metadata: ["block_size": "0"])
        }
        add(
            "width 0 with proj_dim 16", "kernel --a $W/e.safetensors --out $W/k.safetensors",
            expect: ["e.safetensors", "width"]
        ) { w in
            try features(w)
            try editHeader(w, "f.safetensors", to: "e.safetensors", metadata: ["width": "0"])
        }
        add(
            "pntk file claiming 6 outputs", "kernel --a $W/e.safetensors --out $W/k.safetensors",
            expect: ["e.safetensors", "features"]
        ) { w in
            try features(w)
            try editHeader(
                w, "f.safetensors", to: "e.safetensors", metadata: ["outputs": "6"], shapes: ["features": [40, 6, 16]])
        }
        add(
            "shape whose byte count overflows", "kernel --a $W/e.safetensors --out $W/k.safetensors",
            expect: ["e.safetensors", "overflows"]
        ) { w in
            try features(w)
            try editHeader(
                w, "f.safetensors", to: "e.safetensors", shapes: ["features": [2_305_843_009_213_693_952]],
                dtypes: ["features": "F64"])
        }
        add(
            "model weights whose byte count overflows", "predict --model $W/m --text hi",
            expect: ["model.safetensors", "overflows"]
        ) { w in
            try BadInputTests.copyModel(to: w.appendingPathComponent("m"))
            try editHeader(
                w, "m/model.safetensors", to: "m/model.safetensors", shapes: ["head.bias": [2_305_843_009_213_693_952]],
                dtypes: ["head.bias": "F64"])
        }
        add(
            "trntk features of another model, forged to pass",
            "attribute --model $W/ms --train $W/ms.jsonl --text hi --kernel proj-trntk --proj-dim 16 --train-features $W/forged.safetensors",
            expect: ["forged.safetensors", "differs in"]
        ) { w in
            // Features of the 6-class trec6 model, their model and texts fingerprints
            // rewritten to the 2-class movie-snippets model's and its texts'.
            try FileManager.default.copyItem(
                at: CLI.root.appendingPathComponent("models/movie-snippets"), to: w.appendingPathComponent("ms"))
            let lines = try String(
                contentsOf: CLI.root.appendingPathComponent("data/movie-snippets/train.jsonl"), encoding: .utf8
            ).split(separator: "\n").prefix(40)
            try BadInputTests.write(w, "ms.jsonl", lines.joined(separator: "\n") + "\n")
            try cli(w, "featurize --model $W/ms --data $W/ms.jsonl --kernel pntk --proj-dim 16 --out $W/ms.safetensors")
            try cli(
                w, "featurize --model $M --data $W/small.jsonl --kernel trntk --proj-dim 16 --out $W/t6.safetensors")
            let real = try header(w.appendingPathComponent("ms.safetensors"))
            try editHeader(
                w, "t6.safetensors", to: "forged.safetensors",
                metadata: [
                    "model_fingerprint": real["model_fingerprint"]!, "texts_fingerprint": real["texts_fingerprint"]!,
                ])
        }
        add(
            "NaN in --train-features", "\(attribute) --proj-dim 16 --train-features $W/f.safetensors",
            expect: ["f.safetensors", "NaN"]
        ) { w in
            try features(w)
            try poison(w.appendingPathComponent("f.safetensors"), tensor: "features")
        }
        add(
            "NaN in --train-features with --json", "\(attribute) --json --train-features $W/f.safetensors",
            expect: ["f.safetensors", "NaN"]
        ) { w in
            try features(w)
            try poison(w.appendingPathComponent("f.safetensors"), tensor: "features")
        }
        add(
            "pntk file claiming 6 outputs as --train-features", "\(attribute) --train-features $W/e.safetensors",
            expect: ["e.safetensors", "features"]
        ) { w in
            try features(w)
            try editHeader(
                w, "f.safetensors", to: "e.safetensors", metadata: ["outputs": "6"], shapes: ["features": [40, 6, 16]])
        }
        add(
            "width 0 with proj_dim 16 as --train-features", "\(attribute) --train-features $W/e.safetensors",
            expect: ["e.safetensors", "width"]
        ) { w in
            try features(w)
            try editHeader(w, "f.safetensors", to: "e.safetensors", metadata: ["width": "0"])
        }
        add(
            "--proj-dim against --train-features", "\(attribute) --proj-dim 32 --train-features $W/f.safetensors",
            expect: ["--proj-dim 32", "K = 16"]
        ) { w in
            try features(w)
        }
        add(
            "--projector against --train-features",
            "\(attribute) --projector rademacher --train-features $W/f.safetensors", expect: ["--projector", "sketch"]
        ) { w in
            try features(w)
        }
        add(
            "--selection-texts 1", "\(attribute) --proj-dim 16 --memory-budget 1MiB --selection-texts 1",
            expect: ["--selection-texts 1", "at least 10"])
        // Sizes past what the machine holds, refused before any allocation.
        let train = "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/o"
        add(
            "train --batch-size 1e12", "\(train) --batch-size 1000000000000",
            expect: ["--batch-size 1000000000000", "this machine"])
        add("train --d-model 1e12", "\(train) --d-model 1000000000000 --heads 1", expect: ["--d-model 1000000000000"])
        add("train --d-ff 4e9", "\(train) --d-ff 4000000000", expect: ["--d-ff 4000000000"])
        add(
            "train --d-model 2^20 --heads 2^20", "\(train) --d-model 1048576 --heads 1048576",
            expect: ["--d-model 1048576", "parameters", "this machine"])
        add("train --max-len 1e12", "\(train) --max-len 1000000000000", expect: ["--max-len 1000000000000"])
        // K that passes the range check but whose blocks exceed the machine: the CLI
        // refuses before any work (the library only estimates what a run needs).
        add(
            "attribute --proj-dim 16e6",
            "attribute --model $M --train $W/small.jsonl --text hi --kernel proj-trntk --proj-dim 16000000",
            expect: ["--proj-dim 16000000", "trntk features", "this machine"])
        add(
            "featurize --proj-dim 16e6",
            "featurize --model $M --data $W/small.jsonl --kernel trntk --proj-dim 16000000 --out $W/f.safetensors",
            expect: ["--proj-dim 16000000", "this machine"])
        add(
            "lds --subsets 1e12",
            "lds --data $W/small.jsonl --test $W/small.jsonl --recipe $M --subsets 1000000000000 --out $W/l",
            expect: ["--subsets 1000000000000"])
        for (field, value) in [
            ("max_len", "1000000000000"), ("d_model", "4611686018427387904"), ("n_layers", "1000000000"),
            ("n_layers", "200000"),
        ] {
            add("config \(field) \(value)", "predict --model $W/m --text hi", expect: ["config.json", field]) { w in
                try BadInputTests.copyModel(to: w.appendingPathComponent("m"))
                let u = w.appendingPathComponent("m/config.json")
                var json = try JSONSerialization.jsonObject(with: Data(contentsOf: u)) as! [String: Any]
                json[field] = Int(value)!
                try JSONSerialization.data(withJSONObject: json).write(to: u)
            }
        }
        // A tokenizer of the model's vocabulary size that is not its own.
        add(
            "swapped tokenizer", "evaluate --model $W/m --data $W/small.jsonl",
            expect: ["tokenizer.model", "not the tokenizer this model was trained with"]
        ) { w in
            try BadInputTests.copyModel(to: w.appendingPathComponent("m"))
            try cli(
                w,
                "tokenizer train --data \(CLI.root.path)/data/movie-snippets/train.jsonl --vocab-size 2000 --out $W/m/tokenizer.model --overwrite"
            )
        }
        // The same, where attribute's cache holds features and a surrogate made with the
        // model's own tokenizer: the model is refused before the cache is consulted.
        add(
            "swapped tokenizer with a filled cache",
            "attribute --model $W/m --train $W/small.jsonl --text hi --kernel proj-pntk --proj-dim 16 --cache $W/c",
            expect: ["tokenizer.model", "not the tokenizer this model was trained with"]
        ) { w in
            try BadInputTests.copyModel(to: w.appendingPathComponent("m"))
            try cli(
                w,
                "attribute --model $W/m --train $W/small.jsonl --text hi --kernel proj-pntk --proj-dim 16 --cache $W/c")
            try cli(
                w,
                "tokenizer train --data \(CLI.root.path)/data/movie-snippets/train.jsonl --vocab-size 2000 --out $W/m/tokenizer.model --overwrite"
            )
        }
        // Side files that belong to other data.
        add(
            "compare --lds of other texts with the same name and count",
            "compare --model $M --train small.jsonl --test $W/small.jsonl --lds $W/l --out $W/r",
            expect: ["lds.json", "other contents"]
        ) { w in
            try BadInputTests.write(
                w, "l/lds.json",
                "{\"kernels\": [], \"setting\": {\"train\": \"small.jsonl\", \"test\": \"t\", \"trainTexts\": 40, \"testTexts\": 5, \"subsets\": 2, \"fraction\": 0.5, \"seed\": 0, \"recipe\": \"r\", \"modelAccuracy\": 1, \"subsetAccuracy\": 1, \"trainingSeconds\": 1, \"ensemble\": 1, \"seconds\": 1, \"run\": \"x\", \"trainFingerprint\": \"0123\"}}"
            )
        }
        // Outputs that are inputs.
        add(
            "merge --out an input shard",
            "merge $W/s.shard-0-of-2.safetensors $W/s.shard-1-of-2.safetensors --out $W/s.shard-0-of-2.safetensors --overwrite",
            expect: ["--out", "is the shard input"]
        ) { w in
            try CLI.writeTexts(300, to: "t300.jsonl", in: w)
            for i in 0..<2 {
                try cli(
                    w,
                    "featurize --model $M --data $W/t300.jsonl --kernel pntk --proj-dim 16 --shard \(i)/2 --out $W/s.safetensors"
                )
            }
        }
        add(
            "merge a shard that can never be made", "merge $W/s.shard-1-of-2.safetensors --out $W/m.safetensors",
            expect: ["shard 0/2 can never be made", "at most 1 shard"]
        ) { w in
            // 40 texts are one block: shard 1/2 holds it, shard 0/2 gets none.
            try cli(
                w,
                "featurize --model $M --data $W/small.jsonl --kernel pntk --proj-dim 16 --shard 1/2 --out $W/s.safetensors"
            )
        }
        // Errors that name the option or file.
        add(
            "compare --error-dims 1e12",
            "compare --model $M --train $W/small.jsonl --test $W/small.jsonl --error-dims 1000000000000 --out $W/r",
            expect: ["--error-dims", "1000000000000"])
        add(
            "--error-dims= is empty, not missing",
            "compare --model $M --train $W/small.jsonl --test $W/small.jsonl --error-dims= --kernels nope --out $W/r",
            expect: ["nope"])
        add(
            "--shard -1/2",
            "featurize --model $M --data $W/small.jsonl --kernel pntk --proj-dim 16 --shard -1/2 --out $W/f.safetensors",
            expect: ["shard index -1"])
        add(
            "one-class data for train names the file",
            "train --data $W/one.jsonl --tokenizer $M/tokenizer.model --out $W/o", expect: ["one.jsonl", "two classes"]
        ) { w in
            try BadInputTests.write(
                w, "one.jsonl", (0..<30).map { "{\"text\": \"question \($0) ?\", \"label\": \"DESC\"}\n" }.joined())
        }
        add(
            "unknown training label for attribute names the file", "attribute --model $M --train $W/l.jsonl --text hi",
            expect: ["l.jsonl", "line 2", "XYZ"]
        ) { w in
            try BadInputTests.write(
                w, "l.jsonl",
                "{\"text\": \"a\", \"label\": \"DESC\"}\n{\"text\": \"b\", \"label\": \"XYZ\"}\n{\"text\": \"c\", \"label\": \"HUM\"}\n"
            )
        }
        add(
            "negative learning rate in a training record",
            "attribute --model $M --train $W/small.jsonl --text hi --kernel tracin --proj-dim 16 --checkpoints $W/ck --cache $W/c",
            expect: ["epoch-1.safetensors", "epoch_learning_rates", "-0.001"]
        ) { w in
            try cli(
                w,
                "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/tiny --d-model 8 --heads 2 --layers 1 --d-ff 16 --epochs 1 --keep-checkpoints"
            )
            let src = w.appendingPathComponent("tiny/checkpoints/epoch-1.safetensors")
            let record = try header(src)["training_record"]!
            let forged = record.replacingOccurrences(
                of: #""epoch_learning_rates":\[[^\]]*\]"#, with: "\"epoch_learning_rates\":[-0.001]",
                options: .regularExpression)
            #expect(forged != record)
            try FileManager.default.createDirectory(
                at: w.appendingPathComponent("ck"), withIntermediateDirectories: true)
            try editHeader(
                w, "tiny/checkpoints/epoch-1.safetensors", to: "ck/epoch-1.safetensors",
                metadata: ["training_record": forged])
        }
        add("rerunning an interrupted train points to --resume", "\(train)", expect: ["/o", "--resume"]) { w in
            try BadInputTests.copyModel(to: w.appendingPathComponent("o"))
            let u = w.appendingPathComponent("o/config.json")
            var json = try JSONSerialization.jsonObject(with: Data(contentsOf: u)) as! [String: Any]
            json["complete"] = false
            json["epochs_completed"] = 3
            try JSONSerialization.data(withJSONObject: json).write(to: u)
        }
        return c
    }()

    @Test(arguments: cases) func failsCleanlyNamingTheCulpritAndKeepsFiles(_ c: Case) throws {
        try BadInputTests.check(c)
    }

    /// A symbolic link to an output directory takes the same lock as the directory itself:
    /// while the lock of `lk/ct` is held (here by this test, as a running `train` holds
    /// it), `train --out lk/alias` refuses instead of writing the same model.
    @Test func outputLockFollowsSymbolicLinks() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        try FileManager.default.createDirectory(
            at: w.appendingPathComponent("lk/ct"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: w.appendingPathComponent("lk/alias").path, withDestinationPath: "ct")
        // The lock file a run on lk/ct takes (`OutputLock(guarding:)`: .NAME.tangent.lock beside it).
        let fd = open(w.appendingPathComponent("lk/.ct.tangent.lock").path, O_RDWR | O_CREAT, 0o644)
        #expect(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
        defer { close(fd) }
        let train =
            "train --data \(w.path)/small.jsonl --tokenizer \(CLI.model.path)/tokenizer.model --d-model 8 --heads 2 --layers 1 --d-ff 16 --epochs 1 --out"
        let second = try CLI.run(CLI.split("\(train) \(w.path)/lk/alias"), in: w)
        #expect(second.status != 0 && second.stderr.contains("another process"), "\(second.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: w.appendingPathComponent("lk/ct").path).isEmpty)
        // Once the running job has written an epoch, its directory looks interrupted; it is
        // still reported as being written, not with advice to --resume or --overwrite.
        let config = w.appendingPathComponent("lk/ct/config.json")
        try Data(#"{"complete": false, "epochs_completed": 1}"#.utf8).write(to: config)
        let third = try CLI.run(CLI.split("\(train) \(w.path)/lk/alias"), in: w)
        #expect(third.status != 0 && third.stderr.contains("another process"), "\(third.stderr)")
        try FileManager.default.removeItem(at: config)
        // Without the lock held, the same run writes its model through the link.
        flock(fd, LOCK_UN)
        #expect(try CLI.run(CLI.split("\(train) \(w.path)/lk/alias"), in: w).status == 0)
    }

    /// A memory budget below the smallest block is not exceeded silently: the run says so.
    @Test func budgetBelowOneBlockIsReported() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        try HardeningTests.features(w)
        let r = try CLI.run(
            [
                "attribute", "--model", CLI.model.path, "--train", w.appendingPathComponent("small.jsonl").path,
                "--text", "hi",
                "--kernel", "proj-pntk", "--train-features", w.appendingPathComponent("f.safetensors").path,
                "--memory-budget", "1B",
            ], in: w)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("warning: memory budget of 1 B is below"), "\(r.stderr)")
    }

    /// `attribute --html` writes one self-contained page with every explanation, its
    /// prediction, proponents and opponents with training labels and layer shares, and a
    /// class filter; it replaces an earlier page only with --overwrite, and never another file.
    @Test func attributionPage() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        let page = w.appendingPathComponent("page.html")
        let args = [
            "attribute", "--model", CLI.model.path, "--train", w.appendingPathComponent("small.jsonl").path, "--kernel",
            "proj-pntk",
            "--proj-dim", "16", "--top", "3", "--text", "Who wrote Hamlet ?", "--text", "What does NASA stand for ?",
            "--html", page.path,
        ]
        let r = try CLI.run(args, in: w)
        #expect(r.status == 0, "\(r.stderr)")
        let html = try String(contentsOf: page, encoding: .utf8)
        #expect(html.components(separatedBy: "class=\"expl\"").count - 1 == 2)
        #expect(
            html.contains("Who wrote Hamlet ?") && html.contains("Proponents (push toward")
                && html.contains("Opponents (push away from"))
        #expect(html.contains("<select id=\"cls\"") && html.contains("layer shares") && !html.contains("http"))
        // Every training label shown is one of the model's classes.
        let labels = try NSRegularExpression(pattern: "<span class=\"lab\">([^<]*)</span>")
            .matches(in: html, range: NSRange(html.startIndex..., in: html)).map {
                String(html[Range($0.range(at: 1), in: html)!])
            }
        #expect(!labels.isEmpty && labels.allSatisfy { ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"].contains($0) })
        // Again: refused without --overwrite, replaced with it; another file is never replaced.
        let again = try CLI.run(args, in: w)
        #expect(again.status != 0 && again.stderr.contains("--overwrite"))
        #expect(try CLI.run(args + ["--overwrite"], in: w).status == 0)
        try Data("notes".utf8).write(to: page)
        let other = try CLI.run(args + ["--overwrite"], in: w)
        let kept = try String(contentsOf: page, encoding: .utf8)
        #expect(other.status != 0 && kept == "notes")
    }

    /// A CSV saved with a UTF-8 byte-order mark reads like one without.
    @Test func csvWithByteOrderMarkReads() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        try Data([0xEF, 0xBB, 0xBF] + Array("text,label\nWhat is the capital of France ?,LOC\n".utf8)).write(
            to: w.appendingPathComponent("bom.csv"))
        let r = try CLI.run(
            ["predict", "--model", CLI.model.path, "--data", w.appendingPathComponent("bom.csv").path], in: w)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("LOC"))
    }

    /// A poisoning benchmark of another data set in the report directory is left out of
    /// the page, with a note, instead of being shown as this report's.
    @Test func staleBenchmarkOfAnotherDataSetIsLeftOut() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        let r = w.appendingPathComponent("r")
        try FileManager.default.copyItem(at: CLI.root.appendingPathComponent("reports/trec6"), to: r)
        try FileManager.default.removeItem(at: r.appendingPathComponent("poisoning.json"))
        try FileManager.default.copyItem(
            at: CLI.root.appendingPathComponent("reports/sms-spam/poisoning.json"),
            to: r.appendingPathComponent("poisoning.json"))
        let run = try CLI.run(["render-report", r.path], in: w)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("left out of report.html"))
        let html = try String(contentsOf: r.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(!html.contains("sms-spam"))
    }

    /// A damaged `--cache` entry is reported and rebuilt, as the README promises: training
    /// features whose block size was edited to 0 and a surrogate with a NaN weight give
    /// the same answer as the intact cache did.
    @Test func damagedCacheEntriesAreRebuilt() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        let args = [
            "attribute", "--model", CLI.model.path, "--train", w.appendingPathComponent("small.jsonl").path, "--text",
            "Who wrote Hamlet ?",
            "--kernel", "proj-pntk", "--proj-dim", "16", "--cache", w.appendingPathComponent("c").path,
        ]
        let first = try CLI.run(args, in: w)
        #expect(first.status == 0, "\(first.stderr)")
        var damaged: Set<String> = []
        for name in try FileManager.default.contentsOfDirectory(atPath: w.appendingPathComponent("c").path)
        where name.hasSuffix(".safetensors") {
            switch try Self.header(w.appendingPathComponent("c/\(name)"))["format"] {
            case "tangent-features-1":
                try Self.editHeader(w, "c/\(name)", to: "c/\(name)", metadata: ["block_size": "0"])
                damaged.insert("features")
            case "tangent-kglm-3":
                try Self.poison(w.appendingPathComponent("c/\(name)"), tensor: "weights", dtype: "F64")
                damaged.insert("surrogate")
            default: break
            }
        }
        #expect(damaged == ["features", "surrogate"])
        let again = try CLI.run(args, in: w)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("block_size") && again.stderr.contains("rebuilding it"), "\(again.stderr)")
        #expect(again.stderr.contains("NaN") && again.stderr.contains("fitting the surrogate again"), "\(again.stderr)")
        #expect(again.stdout == first.stdout)
    }

    /// The exact kernel with a block size far beyond the texts works: blocks never exceed
    /// the texts, so nothing of size block^2 is allocated.
    @Test func exactKernelClampsItsBlockSize() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        try CLI.writeTexts(8, to: "eight.jsonl", in: w)
        let r = try CLI.run(
            [
                "exact-kernel", "--model", CLI.model.path, "--data", w.appendingPathComponent("eight.jsonl").path,
                "--kernel", "pntk",
                "--params", "head", "--batch-size", "1000000000000", "--out",
                w.appendingPathComponent("k.safetensors").path,
            ], in: w)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("8 x 8"))
    }

    // MARK: helpers

    /// `tangent args` in `w` ($W, $M expanded), which must succeed.
    static func cli(_ w: URL, _ args: String) throws {
        let a = CLI.split(args).map {
            $0.replacingOccurrences(of: "$W", with: w.path).replacingOccurrences(of: "$M", with: CLI.model.path)
        }
        let r = try CLI.run(a, in: w)
        guard r.status == 0 else { throw CLIError("setup `\(args)` failed: \(r.stderr)") }
    }

    struct CLIError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// f.safetensors: pntk features (K = 16) of the 40 texts of small.jsonl.
    static func features(_ w: URL) throws {
        try cli(w, "featurize --model $M --data $W/small.jsonl --kernel pntk --proj-dim 16 --out $W/f.safetensors")
    }

    /// A safetensors file's header: (length, JSON object).
    static func readHeader(_ url: URL) throws -> (Int, [String: Any], Data) {
        let data = try Data(contentsOf: url)
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        return (n, json, data)
    }

    /// A file's `__metadata__`.
    static func header(_ url: URL) throws -> [String: String] {
        try readHeader(url).1["__metadata__"] as? [String: String] ?? [:]
    }

    /// Rewrites `src`'s header into `dst`: metadata values, tensor shapes and dtypes
    /// replaced, the data section kept byte for byte (as a hand-edited file would be).
    static func editHeader(
        _ w: URL, _ src: String, to dst: String, metadata: [String: String] = [:],
        shapes: [String: [Int]] = [:], dtypes: [String: String] = [:]
    ) throws {
        try rewriteHeader(w.appendingPathComponent(src), to: w.appendingPathComponent(dst)) { json in
            var meta = json["__metadata__"] as? [String: String] ?? [:]
            for (k, v) in metadata { meta[k] = v }
            json["__metadata__"] = meta
            for (name, shape) in shapes {
                var t = json[name] as! [String: Any]
                t["shape"] = shape
                json[name] = t
            }
            for (name, dtype) in dtypes {
                var t = json[name] as! [String: Any]
                t["dtype"] = dtype
                json[name] = t
            }
        }
    }

    /// Rewrites `src`'s header by `edit` into `dst`, the data section kept byte for byte.
    static func rewriteHeader(_ src: URL, to dst: URL, _ edit: (inout [String: Any]) -> Void) throws {
        let (n, json0, data) = try readHeader(src)
        var json = json0
        edit(&json)
        var h = try JSONSerialization.data(withJSONObject: json)
        let length = (max(n, h.count) + 7) / 8 * 8
        h.append(Data(repeating: 0x20, count: length - h.count))
        var out = Data((0..<8).map { UInt8((length >> (8 * $0)) & 0xFF) })
        out.append(h)
        out.append(data.subdata(in: (8 + n)..<data.count))
        try out.write(to: dst)
    }

    /// Writes a NaN over the first element of `tensor` (F32 or F64).
    static func poison(_ url: URL, tensor: String, dtype: String = "F32") throws {
        let (n, json, data) = try readHeader(url)
        let offsets = (json[tensor] as! [String: Any])["data_offsets"] as! [Int]
        var d = data
        let bytes: [UInt8] =
            dtype == "F64"
            ? withUnsafeBytes(of: Double.nan.bitPattern.littleEndian, Array.init)
            : withUnsafeBytes(of: Float.nan.bitPattern.littleEndian, Array.init)
        for (k, b) in bytes.enumerated() { d[8 + n + offsets[0] + k] = b }
        try d.write(to: url)
    }
}

/// The benchmark commands run to the end on a small workload and print their figures
/// (`bench train` once failed on its second trainer call, with no test to notice).
@Suite struct BenchCommandTests {
    @Test func benchmarksRun() throws {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        let train = try CLI.run(
            [
                "bench", "train", "--d-model", "16", "--heads", "2", "--layers", "1", "--d-ff", "32", "--vocab", "300",
                "--tokens", "16", "--batch-size", "4", "--steps", "2",
            ], in: w)
        #expect(train.status == 0 && train.stdout.contains("throughput:"), "\(train.stderr)")
        let featurize = try CLI.run(
            ["bench", "featurize", "--d-model", "16", "--tokens", "16", "--texts", "8", "--proj-dim", "32"], in: w)
        #expect(
            featurize.status == 0 && featurize.stdout.contains("examples/s")
                && featurize.stdout.contains("speed-up of sketch"),
            "\(featurize.stdout)\n\(featurize.stderr)")
        // A Hugging Face architecture from its config.json (the tiny BERT fixture's).
        let config = CLI.root.appendingPathComponent("Tests/TangentTests/Fixtures/hf-bert/config.json").path
        let hf = try CLI.run(
            [
                "bench", "featurize", "--model-config", config, "--tokens", "16", "--texts", "8", "--proj-dim", "32",
                "--no-dense-reference",
            ], in: w)
        #expect(
            hf.status == 0 && hf.stdout.contains("bert hidden 32, 2 layers") && hf.stdout.contains("examples/s"),
            "\(hf.stdout)\n\(hf.stderr)")
    }
}
