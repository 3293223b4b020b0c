import ArgumentParser
import Foundation
import TangentFeatures
import TangentIO
import TangentTensor

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Join the shard files of a sharded `featurize` into one feature file.",
        discussion: """
            The shards (in any order) must come from one sharded run: the same model, kernel, parameters, \
            projector, K, seed and texts, each shard of the N exactly once. The output is byte-identical to \
            the file one `featurize` process would have written, whatever batch sizes and thread counts the \
            shards ran with. It is built in OUT.partial and renamed when complete; an interrupted merge resumes.
            """)

    @Argument(help: "Shard files (NAME.shard-I-of-N.safetensors).") var shards: [String]
    @Option(help: "Output feature file (.safetensors).") var out: String
    @Flag(help: "Replace an existing output feature file.") var overwrite = false

    func validate() throws {
        if shards.isEmpty { throw ValidationError("give the shard files to merge") }
    }

    func run() throws {
        try reportingErrors {
            try refuseOverlaps([("--out", out)], inputs: shards.map { ("shard", Optional($0)) })
            let files = try shards.map { path -> FeatureFile in
                let url = fileURL(path)
                guard FileManager.default.fileExists(atPath: url.path) else {
                    let partial = FileManager.default.fileExists(atPath: url.path + ".partial")
                    throw ShardError(
                        "\(path): no such shard file"
                            + (partial
                                ? " (only its unfinished .partial: that task did not complete; run it again)" : ""))
                }
                return try FeatureFile(url: url)
            }
            // The output must not be one of the inputs (by any path): --overwrite would
            // replace a shard with the merge of itself and the others.
            let output = OutputLock.resolved(fileURL(out))
            if let same = shards.first(where: { OutputLock.resolved(fileURL($0)) == output }) {
                throw ShardError("--out \(out) is the input shard \(same); write the merged file under another name")
            }
            let t0 = Date()
            let whole = try FeatureMerger.check(files).metadata
            let bar = ProgressBar(total: whole.texts, label: "merge")
            let merged = try FeatureMerger.merge(files, to: fileURL(out), replace: overwrite ? .featureFile : .never) {
                done, _ in bar.update(done)
            }
            bar.finish()
            let m = merged.metadata
            print(
                "wrote \(out): \(m.texts) texts from \(files.count) shards (\(m.kernel), K \(m.projDim), \(m.projector.isEmpty ? "no projection" : m.projector), seed \(m.seed)) in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s"
            )
        }
    }
}
