import Foundation
import Testing

/// The built `tangent` binary run as a subprocess on bad input: every case must exit
/// non-zero (a clean error, not a signal), name the file, line or option at fault, and
/// leave every existing file and directory as it was.
@Suite struct BadInputTests {
    /// One bad invocation. `setup` prepares the case's directory (the working directory
    /// of the run); `$W` in arguments stands for it, `$M` for the shipped trec6 model.
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let args: [String]
        var env: [String: String] = [:]
        /// Every one of these must appear in standard error.
        let expect: [String]
        var setup: @Sendable (URL) throws -> Void = { _ in }
        var testDescription: String { name }

        /// A case from a command line written as one string (see `CLI.split`).
        static func line(
            _ name: String, _ args: String, expect: [String], env: [String: String] = [:],
            setup: @escaping @Sendable (URL) throws -> Void = { _ in }
        ) -> Case {
            Case(name: name, args: CLI.split(args), env: env, expect: expect, setup: setup)
        }
    }

    static let cases: [Case] = {
        var c: [Case] = []
        func add(
            _ name: String, _ args: String, expect: [String], env: [String: String] = [:],
            setup: @escaping @Sendable (URL) throws -> Void = { _ in }
        ) {
            c.append(.line(name, args, expect: expect, env: env, setup: setup))
        }
        let featurize = "featurize --model $M --data $W/small.jsonl --kernel pntk --proj-dim 16"
        // Numeric and list options, checked at parse time.
        add(
            "compare --kernels empty",
            "compare --model $M --train $W/small.jsonl --test $W/small.jsonl --kernels '' --out $W/r",
            expect: ["--kernels"])
        add(
            "compare --kernels comma",
            "compare --model $M --train $W/small.jsonl --test $W/small.jsonl --kernels , --out $W/r",
            expect: ["--kernels"])
        add(
            "compare --max-train 0",
            "compare --model $M --train $W/small.jsonl --test $W/small.jsonl --max-train 0 --out $W/r",
            expect: ["--max-train"])
        add(
            "compare unknown kernel",
            "compare --model $M --train $W/small.jsonl --test $W/small.jsonl --kernels proj-trntk,nope --out $W/r",
            expect: ["nope"])
        add(
            "exact-kernel --batch-size 0",
            "exact-kernel --model $M --data $W/small.jsonl --kernel pntk --batch-size 0 --out $W/k.safetensors",
            expect: ["--batch-size"])
        add(
            "exact-kernel unknown kernel",
            "exact-kernel --model $M --data $W/small.jsonl --kernel ntk --out $W/k.safetensors", expect: ["ntk"])
        add("bench featurize --proj-dim 0", "bench featurize --proj-dim 0", expect: ["--proj-dim"])
        add("bench featurize --texts 0", "bench featurize --texts 0", expect: ["--texts"])
        add("bench train --steps 0", "bench train --steps 0", expect: ["--steps"])
        add("bench featurize --kernel embedding", "bench featurize --kernel embedding", expect: ["--kernel"])
        add("featurize --threads 100000", "\(featurize) --threads 100000 --out $W/f.safetensors", expect: ["--threads"])
        add("featurize --threads 0", "\(featurize) --threads 0 --out $W/f.safetensors", expect: ["--threads"])
        add(
            "train --threads -3", "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/m --threads -3",
            expect: ["--threads"])
        add(
            "TANGENT_THREADS=100000", "\(featurize) --out $W/f.safetensors", expect: ["TANGENT_THREADS"],
            env: ["TANGENT_THREADS": "100000"])
        add(
            "TANGENT_THREADS=abc", "predict --model $M --text hello", expect: ["TANGENT_THREADS"],
            env: ["TANGENT_THREADS": "abc"])
        add(
            "TANGENT_THREADS=0", "\(featurize) --out $W/f.safetensors", expect: ["TANGENT_THREADS"],
            env: ["TANGENT_THREADS": "0"])
        add(
            "train --epochs -1", "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/m --epochs -1",
            expect: ["--epochs", "positive"])
        add(
            "train --lr -1", "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/m --lr -1",
            expect: ["--lr", "positive"])
        add(
            "train --batch-size 0",
            "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/m --batch-size 0",
            expect: ["--batch-size"])
        add(
            "train --dropout 1.5",
            "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/m --dropout 1.5", expect: ["--dropout"]
        )
        add(
            "train --heads 3", "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/m --heads 3",
            expect: ["--heads"])
        add("featurize --params empty", "\(featurize) --params '' --out $W/f.safetensors", expect: ["--params"])
        add("featurize --params comma", "\(featurize) --params , --out $W/f.safetensors", expect: ["--params"])
        add("featurize --params unknown", "\(featurize) --params blocks.9 --out $W/f.safetensors", expect: ["blocks.9"])
        add(
            "featurize --proj-dim -5",
            "featurize --model $M --data $W/small.jsonl --kernel pntk --proj-dim -5 --out $W/f.safetensors",
            expect: ["--proj-dim"])
        add(
            "featurize --projector unknown", "\(featurize) --projector dense --out $W/f.safetensors",
            expect: ["--projector", "dense"])
        add(
            "featurize --sketch-nonzeros 3",
            "\(featurize) --projector sketch --sketch-nonzeros 3 --out $W/f.safetensors", expect: ["--sketch-nonzeros"])
        add(
            "compare --sketch-nonzeros without sketch",
            "compare --model $M --train $W/small.jsonl --test $W/small.jsonl --projector rademacher --sketch-nonzeros 2 --out $W/r",
            expect: ["--sketch-nonzeros"])
        add(
            "bench featurize sketch K below s", "bench featurize --projector sketch --sketch-nonzeros 4 --proj-dim 2",
            expect: ["--proj-dim", "--sketch-nonzeros"])
        add(
            "compare --error-seeds 0",
            "compare --model $M --train $W/small.jsonl --test $W/small.jsonl --error-seeds 0 --out $W/r",
            expect: ["--error-seeds"])
        add("featurize --shard I >= N", "\(featurize) --shard 2/2 --out $W/f.safetensors", expect: ["outside 0..<2"])
        add("featurize --shard N = 0", "\(featurize) --shard 0/0 --out $W/f.safetensors", expect: ["at least 1"])
        add("featurize --shard malformed", "\(featurize) --shard 1:2 --out $W/f.safetensors", expect: ["I/N"])
        add(
            "featurize shard without texts", "\(featurize) --shard 0/2 --out $W/f.safetensors",
            expect: ["gets no texts", "at most 1 shard"])
        add(
            "featurize Slurm array without count", "\(featurize) --out $W/f.safetensors",
            expect: ["SLURM_ARRAY_TASK_ID", "number of shards"],
            env: ["SLURM_ARRAY_TASK_ID": "1"])
        add(
            "featurize Indexed Job without --shard-count", "\(featurize) --out $W/f.safetensors",
            expect: ["--shard-count"], env: ["JOB_COMPLETION_INDEX": "0"])
        add(
            "merge a missing shard file", "merge $W/f.shard-0-of-2.safetensors --out $W/m.safetensors",
            expect: ["f.shard-0-of-2.safetensors", "no such shard file"])
        add(
            "merge a file that is no shard", "merge $M/model.safetensors --out $W/m.safetensors",
            expect: ["model.safetensors", "not a tangent feature file"])
        add(
            "featurize unknown kernel",
            "featurize --model $M --data $W/small.jsonl --kernel ntk --out $W/f.safetensors", expect: ["ntk"])
        add("attribute --top 0", "attribute --model $M --train $W/small.jsonl --text hi --top 0", expect: ["--top"])
        add(
            "poison --fraction 2",
            "poison --data $W/small.jsonl --test $W/small.jsonl --tokenizer $M/tokenizer.model --fraction 2 --out $W/p",
            expect: ["--fraction"])
        add(
            "lds --subsets 1", "lds --data $W/small.jsonl --test $W/small.jsonl --recipe $M --subsets 1 --out $W/l",
            expect: ["--subsets"])
        add(
            "lds --fraction 1", "lds --data $W/small.jsonl --test $W/small.jsonl --recipe $M --fraction 1 --out $W/l",
            expect: ["--fraction"])
        add(
            "lds without a recipe", "lds --data $W/small.jsonl --test $W/small.jsonl --out $W/l",
            expect: ["--tokenizer", "--recipe"])
        add(
            "lds over another run",
            "lds --data $W/mixed.jsonl --test $W/mixed.jsonl --recipe $M --subsets 2 --out $W/l",
            expect: ["/l", "other settings", "--overwrite"]
        ) { w in
            try writeMixed(w)
            try write(w, "l/run.json", "{\"format\": \"tangent-lds-run-1\", \"run\": \"0000000000000000\"}")
        }
        add(
            "lds into a foreign directory",
            "lds --data $W/mixed.jsonl --test $W/mixed.jsonl --recipe $M --subsets 2 --out $W/l",
            expect: ["/l", "not empty", "notes.txt"]
        ) { w in
            try writeMixed(w)
            try write(w, "l/notes.txt", "notes")
        }
        add(
            "render-report --lds of other texts", "render-report $W/r --lds $W/l",
            expect: ["lds.json", "not the report's"]
        ) { w in
            try write(
                w, "l/lds.json",
                "{\"kernels\": [], \"setting\": {\"train\": \"other.jsonl\", \"test\": \"t\", \"trainTexts\": 5, \"testTexts\": 5, \"subsets\": 2, \"fraction\": 0.5, \"seed\": 0, \"recipe\": \"r\", \"modelAccuracy\": 1, \"subsetAccuracy\": 1, \"trainingSeconds\": 1, \"ensemble\": 1, \"seconds\": 1, \"run\": \"x\"}}"
            )
            try FileManager.default.copyItem(
                at: CLI.root.appendingPathComponent("reports/trec6"), to: w.appendingPathComponent("r"))
        }
        add(
            "tokenizer train --vocab-size -1", "tokenizer train --data $W/small.jsonl --vocab-size -1 --out $W/t.model",
            expect: ["--vocab-size"])
        // TracIn checkpoints carry their learning rate and run; without a record there is none.
        add(
            "tracin checkpoint without record",
            "attribute --model $M --train $W/small.jsonl --text hi --kernel tracin --proj-dim 16 --checkpoints $W/ck --cache $W/c",
            expect: ["epoch-1.safetensors", "no training record"]
        ) { w in
            try FileManager.default.createDirectory(
                at: w.appendingPathComponent("ck"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                at: CLI.model.appendingPathComponent("model.safetensors"),
                to: w.appendingPathComponent("ck/epoch-1.safetensors"))
        }
        // Data files.
        add("CSV unterminated quote", "predict --model $M --data $W/bad.csv", expect: ["bad.csv", "line 3"]) { w in
            try write(w, "bad.csv", "text,label\nwhat is this,DESC\n\"never closed,DESC\nok,DESC\n")
        }
        add("CSV text after closing quote", "predict --model $M --data $W/bad.csv", expect: ["bad.csv", "line 2"]) {
            w in
            try write(w, "bad.csv", "text,label\n\"quoted\"tail,DESC\n")
        }
        add("CSV duplicate text column", "predict --model $M --data $W/dup.csv", expect: ["dup.csv", "'text' 2 times"])
        { w in
            try write(w, "dup.csv", "text,label,text\na,DESC,b\n")
        }
        add("CSV wrong field count", "predict --model $M --data $W/n.csv", expect: ["n.csv", "row 2"]) { w in
            try write(w, "n.csv", "text,label\na,DESC\nb,DESC,extra\n")
        }
        add("TSV header only", "predict --model $M --data $W/h.tsv", expect: ["h.tsv", "no texts"]) { w in
            try write(w, "h.tsv", "text\tlabel\n")
        }
        add("JSONL malformed line", "predict --model $M --data $W/m.jsonl", expect: ["m.jsonl:3", "malformed"]) { w in
            try write(w, "m.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"\n")
        }
        add(
            "JSONL missing label for training", "attribute --model $M --train $W/nl.jsonl --text hi",
            expect: ["nl.jsonl:2", "label"]
        ) { w in
            try write(w, "nl.jsonl", "{\"text\": \"a\", \"label\": \"DESC\"}\n{\"text\": \"b\"}\n")
        }
        add("JSONL empty text", "predict --model $M --data $W/e.jsonl", expect: ["e.jsonl", "line 2", "empty text"]) {
            w in
            try write(w, "e.jsonl", "{\"text\": \"a\"}\n{\"text\": \"  \"}\n")
        }
        add("invalid UTF-8", "predict --model $M --data $W/u.jsonl", expect: ["u.jsonl", "line 2", "UTF-8"]) { w in
            var d = Data("{\"text\": \"a\"}\n{\"text\": \"".utf8)
            d.append(contentsOf: [0xC3, 0x28])
            d.append(Data("\"}\n".utf8))
            try d.write(to: w.appendingPathComponent("u.jsonl"))
        }
        add(
            "unknown label", "\(featurize) --data $W/l.jsonl --out $W/f.safetensors",
            expect: ["l.jsonl", "line 1", "XYZ"]
        ) { w in
            try write(w, "l.jsonl", "{\"text\": \"a\", \"label\": \"XYZ\"}\n")
        }
        add("unknown extension", "predict --model $M --data $W/d.txt", expect: ["d.txt", "format"]) { w in
            try write(w, "d.txt", "x\n")
        }
        add("missing data file", "predict --model $M --data $W/none.jsonl", expect: ["none.jsonl", "no such file"])
        add(
            "data directory without train", "\(featurize) --data $W/d --out $W/f.safetensors",
            expect: ["no train.jsonl"]
        ) { w in
            try write(w, "d/notes.txt", "notes")
        }
        add(
            "one-class training data", "attribute --model $M --train $W/one.jsonl --text hi",
            expect: ["one.jsonl", "at least two classes"]
        ) { w in
            try write(
                w, "one.jsonl", (0..<30).map { "{\"text\": \"question \($0) ?\", \"label\": \"DESC\"}\n" }.joined())
        }
        // Models.
        add("missing model", "predict --model $W/nomodel --text hi", expect: ["nomodel"])
        add("corrupt config.json", "predict --model $W/m --text hi", expect: ["config.json"]) { w in
            try copyModel(to: w.appendingPathComponent("m"))
            try write(w, "m/config.json", "{\"d_model\": 12")
        }
        add("truncated weights", "predict --model $W/m --text hi", expect: ["model.safetensors"]) { w in
            try copyModel(to: w.appendingPathComponent("m"))
            let u = w.appendingPathComponent("m/model.safetensors")
            try Data(try Data(contentsOf: u).prefix(5000)).write(to: u)
        }
        add("malformed labels.json", "predict --model $W/m --text hi", expect: ["labels.json"]) { w in
            try copyModel(to: w.appendingPathComponent("m"))
            try write(w, "m/labels.json", "[\"ABBR\", 3")
        }
        add("garbage tokenizer", "predict --model $W/m --text hi", expect: ["tokenizer.model"]) { w in
            try copyModel(to: w.appendingPathComponent("m"))
            try write(w, "m/tokenizer.model", "not a sentencepiece model")
        }
        // Outputs.
        add(
            "featurize --out directory --overwrite", "\(featurize) --out $W/f/ --overwrite",
            expect: ["/f", "is a directory"]
        ) { w in
            try write(w, "f/notes.txt", "notes")
        }
        add(
            "featurize --out other file --overwrite", "\(featurize) --out $W/notes.txt --overwrite",
            expect: ["notes.txt", "not a feature file"]
        ) { w in
            try write(w, "notes.txt", "notes")
        }
        add(
            "featurize --out existing", "\(featurize) --out $W/notes.safetensors",
            expect: ["notes.safetensors", "already exists"]
        ) { w in
            try write(w, "notes.safetensors", "notes")
        }
        add(
            "featurize --out under a file", "\(featurize) --out $W/notes.txt/f.safetensors",
            expect: ["notes.txt", "not a directory"]
        ) { w in
            try write(w, "notes.txt", "notes")
        }
        add(
            "featurize resume with other K", "\(featurize) --out $W/f.safetensors",
            expect: ["f.safetensors.partial", "K (8 vs 16 now)"]
        ) { w in
            try CLI.run(
                [
                    "featurize", "--model", CLI.model.path, "--data", w.appendingPathComponent("small.jsonl").path,
                    "--kernel", "pntk",
                    "--proj-dim", "8", "--out", w.appendingPathComponent("f.safetensors").path,
                ], in: w)
            // An unfinished file: the finished one renamed back to its partial name.
            try FileManager.default.moveItem(
                at: w.appendingPathComponent("f.safetensors"), to: w.appendingPathComponent("f.safetensors.partial"))
        }
        add(
            "train --out is a file", "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/notes.txt",
            expect: ["notes.txt", "not a directory"]
        ) { w in
            try write(w, "notes.txt", "notes")
        }
        add(
            "train --out holds other files",
            "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/d --overwrite",
            expect: ["/d", "other files"]
        ) { w in
            try write(w, "d/notes.txt", "notes")
        }
        add(
            "train --out holds a model", "train --data $W/small.jsonl --tokenizer $M/tokenizer.model --out $W/m",
            expect: ["/m", "--overwrite"]
        ) { w in
            try copyModel(to: w.appendingPathComponent("m"))
        }
        add("kernel --out directory", "kernel --a $W/notes.txt --out $W/d", expect: ["/d", "is a directory"]) { w in
            try write(w, "d/notes.txt", "notes")
            try write(w, "notes.txt", "notes")
        }
        add("kernel on a non-feature file", "kernel --a $W/notes.txt --out $W/k.safetensors", expect: ["notes.txt"]) {
            w in
            try write(w, "notes.txt", "notes")
        }
        add(
            "exact-kernel --out other file --overwrite",
            "exact-kernel --model $M --data $W/small.jsonl --kernel pntk --out $W/notes.txt --overwrite",
            expect: ["notes.txt", "not a kernel file"]
        ) { w in try write(w, "notes.txt", "notes") }
        add(
            "tokenizer train --out directory", "tokenizer train --data $W/small.jsonl --vocab-size 300 --out $W/d",
            expect: ["/d", "is a directory"]
        ) { w in
            try write(w, "d/notes.txt", "notes")
        }
        add(
            "tokenizer train --out other file --overwrite",
            "tokenizer train --data $W/small.jsonl --vocab-size 300 --out $W/notes.txt --overwrite",
            expect: ["notes.txt", "not a SentencePiece model"]
        ) { w in try write(w, "notes.txt", "notes") }
        add(
            "compare --out holds a report",
            "compare --model $M --train $W/small.jsonl --test $W/small.jsonl --out $W/r",
            expect: ["/r", "report.json", "--overwrite"]
        ) { w in
            try write(w, "r/report.json", "{}")
        }
        add(
            "compare --cache is a file",
            "compare --model $M --train $W/small.jsonl --test $W/small.jsonl --cache $W/notes.txt --out $W/r",
            expect: ["notes.txt", "not a directory"]
        ) { w in
            try write(w, "notes.txt", "notes")
        }
        add("render-report corrupt JSON", "render-report $W/r", expect: ["report.json", "not a readable report"]) { w in
            try write(w, "r/report.json", "{\"model\": 3}")
        }
        add("render-report without a report", "render-report $W/r", expect: ["report.json", "no such report"]) { w in
            try write(w, "r/notes.txt", "notes")
        }
        add(
            "memory refusal prints K", "\(featurize) --proj-dim 4294967296 --out $W/f.safetensors",
            expect: ["K = 4294967296"])
        return c
    }()

    @Test(arguments: cases) func failsCleanlyNamingTheCulpritAndKeepsFiles(_ c: Case) throws {
        try BadInputTests.check(c)
    }

    /// Runs one case in a fresh working directory and checks its exit, message and files;
    /// returns what the run gave.
    @discardableResult
    static func check(_ c: Case) throws -> CLI.Result {
        let w = try CLI.workDirectory()
        defer { try? FileManager.default.removeItem(at: w) }
        try c.setup(w)
        let before = try CLI.snapshot(w)
        let modelBefore = try CLI.snapshot(CLI.model)
        let args = c.args.map {
            $0.replacingOccurrences(of: "$W", with: w.path).replacingOccurrences(of: "$M", with: CLI.model.path)
        }
        let r = try CLI.run(args, in: w, env: c.env)
        #expect(r.status != 0 && r.status < 128 && !r.signaled, "\(c.name): exit \(r.status)\n\(r.stderr)")
        for e in c.expect {
            #expect(
                r.stderr.contains(e.replacingOccurrences(of: "$W", with: w.path)),
                "\(c.name): '\(e)' not in: \(r.stderr)")
        }
        #expect(
            !r.stderr.contains("NSCocoaErrorDomain") && !r.stderr.contains("Fatal error")
                && !r.stderr.contains("DecodingError"), "\(c.name): \(r.stderr)")
        let after = try CLI.snapshot(w)
        for (path, state) in before {
            #expect(after[path] == state, "\(c.name): \(path) was \(after[path] == nil ? "removed" : "changed")")
        }
        #expect(try CLI.snapshot(CLI.model) == modelBefore)
        return r
    }

    static func write(_ w: URL, _ name: String, _ s: String) throws {
        let u = w.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: u.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(s.utf8).write(to: u)
    }

    /// mixed.jsonl: every 100th trec6 training text, so that every class is there.
    static func writeMixed(_ w: URL) throws {
        let lines = try String(contentsOf: CLI.root.appendingPathComponent("data/trec6/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        try write(w, "mixed.jsonl", stride(from: 0, to: lines.count, by: 100).map { lines[$0] + "\n" }.joined())
    }

    static func copyModel(to dir: URL) throws {
        try FileManager.default.copyItem(at: CLI.model, to: dir)
    }
}
