import Foundation
import TangentData
import TangentFeatures
import TangentIO
import TangentModel
import TangentSurrogate
import TangentTensor
import TangentTokenizer
import TangentTraining

/// How an LDS run makes each fresh model it trains: tangent's own architecture
/// initialized from the seed, or a pretrained encoder with its head (new heads drawn from
/// the seed), so that every subset model starts where the model under study started.
public struct ModelRecipe {
    /// For logs and the report.
    public let summary: String
    /// What identifies the starting point (part of the run's key).
    public let identity: String
    /// A fresh classifier for the seed, on `threads` threads.
    public let make: (_ seed: UInt64, _ threads: Int) throws -> Classifier

    public init(
        summary: String, identity: String, make: @escaping (_ seed: UInt64, _ threads: Int) throws -> Classifier
    ) {
        self.summary = summary
        self.identity = identity
        self.make = make
    }
}

/// The models of an LDS run (kernels spec: linear datamodeling score): the model under
/// study and TRAK's ensemble on all training texts, and subset models on random halves,
/// each trained by one recipe, kept in a `DatamodelingRunDirectory` so that an interrupted
/// run resumes. Only the subset models' test margins are kept.
public struct DatamodelingRun {
    public let directory: DatamodelingRunDirectory
    public let recipe: ModelRecipe
    public let options: TrainingOptions
    public let labels: LabelSet
    public let train: [LabeledText]
    public let test: [LabeledText]
    /// Where the training texts came from (errors name it).
    public let trainFile: URL
    public let seed: UInt64
    public let threads: Int

    public init(
        directory: DatamodelingRunDirectory, recipe: ModelRecipe, options: TrainingOptions, labels: LabelSet,
        train: [LabeledText], test: [LabeledText], trainFile: URL, seed: UInt64, threads: Int
    ) {
        self.directory = directory
        self.recipe = recipe
        self.options = options
        self.labels = labels
        self.train = train
        self.test = test
        self.trainFile = trainFile
        self.seed = seed
        self.threads = threads
    }

    /// Trains a model of the recipe on `texts`, initialized from `seed` and trained (dropout
    /// masks, batch order) with `trainingSeed` (default: the same), keeping every epoch's
    /// weights with its training record in `checkpoints` (TracIn) when given; and its seconds.
    public func trainModel(
        _ texts: [LabeledText], seed modelSeed: UInt64, trainingSeed: UInt64? = nil, checkpoints: URL? = nil,
        progress: @escaping (_ epoch: Int, _ done: Int, _ total: Int, _ status: String) -> Void
    ) throws -> (Classifier, Double) {
        var options = self.options
        options.seed = trainingSeed ?? modelSeed
        let clf = try recipe.make(modelSeed, threads)
        let model = clf.model
        let set = EncodedSet(
            sequences: try texts.map { try clf.encode($0.text) },
            labels: try labels.indices(of: texts, source: trainFile.path))
        let t0 = Date()
        _ = try Trainer(model: model, options: options).train(
            set, test: nil, progress: progress,
            onEpochEnd: { s in
                guard let checkpoints else { return }
                try TrainingRecord(
                    epoch: s.epoch, options: options, trainTexts: texts.count,
                    dataFingerprint: fingerprint(labelled: texts),
                    model: model, labels: labels.names, threads: threads
                )
                .writeCheckpoint(model, to: checkpoints.appendingPathComponent("epoch-\(s.epoch).safetensors"))
            })
        return (clf, Date().timeIntervalSince(t0))
    }

    /// A model's log-odds of the compared class on every test text, and its test accuracy.
    public func margins(_ clf: Classifier) throws -> (margins: [Double], accuracy: Double) {
        let C = labels.count
        let testLabels = try labels.indices(of: test, source: "test texts")
        let z = try clf.logits(test.map(\.text))
        var correct = 0
        let m = test.indices.map { t -> Double in
            let row = (0..<C).map { Double(z[t * C + $0]) }
            if Softmax.argmax(row) == testLabels[t] { correct += 1 }
            return Softmax.logOdds(row, classIndex: Faithfulness.comparedClass(classes: C, label: testLabels[t]))
        }
        return (m, Double(correct) / Double(max(1, test.count)))
    }

    /// The model under study (seed `seed`) and the ensemble's other models (seeds
    /// `seed + 1`, ...) on all training texts, read back when finished earlier. `label`
    /// names the k-th model in progress.
    public func fullModels(
        _ count: Int,
        progress: @escaping (_ label: String, _ epoch: Int, _ done: Int, _ total: Int, _ status: String) -> Void
    ) throws -> [Classifier] {
        try (0..<count).map { k in
            let dir = directory.modelDirectory(k)
            if let clf = directory.finishedModel(dir, threads: threads) { return clf }
            let modelSeed = seed &+ UInt64(k)
            let label = k == 0 ? "model under study" : "ensemble model \(k + 1)/\(count)"
            // Every model keeps its checkpoints: TracIn sums over each one's.
            let (clf, seconds) = try trainModel(
                train, seed: modelSeed, checkpoints: dir.appendingPathComponent(ModelDirectory.checkpointsDirectory)
            ) {
                progress(label, $0, $1, $2, $3)
            }
            var options = self.options
            options.seed = modelSeed
            try clf.save(
                to: dir,
                extra: [
                    "lds_run": directory.key, "complete": true, "seconds": seconds, "train_texts": train.count,
                    "train_fingerprint": fingerprint(labelled: train), "threads": threads,
                    "training": try JSONSerialization.jsonObject(with: JSONEncoder().encode(options)),
                ])
            // Loaded back, so that it carries its directory and training record like a resumed run's.
            return try Classifier(directory: dir, threads: threads)
        }
    }

    /// The training seed of the noise ceiling's second training of every subset model: the
    /// same initialization (seed `seed`), other dropout masks and batch order.
    public static func ceilingTrainingSeed(_ seed: UInt64) -> UInt64 { seed &+ 0x5EED }

    /// The seed of the subsets whose models choose the surrogates' lambda
    /// (`lds --lambda-selection subsets`): another draw than the evaluation subsets'.
    public static func selectionSubsetSeed(_ seed: UInt64) -> UInt64 { seed &+ 0x5E1EC7 }

    /// The subset models of `plan` (initialized from seed `seed`), trained or read back:
    /// each one's test margins, accuracy and training seconds. `replicate` 0 are the
    /// evaluation subsets' models, 1 the noise ceiling's second training of each (training
    /// seed `ceilingTrainingSeed(seed)`), 2 the models of the lambda-selection subsets.
    public func subsetModels(
        _ plan: [[Int]], replicate: Int = 0,
        progress: @escaping (_ label: String, _ epoch: Int, _ done: Int, _ total: Int, _ status: String) -> Void
    ) throws
        -> (margins: [[Double]], accuracies: [Double], seconds: [Double])
    {
        precondition((0...2).contains(replicate))
        let trainingSeed = replicate == 1 ? DatamodelingRun.ceilingTrainingSeed(seed) : seed
        var margins: [[Double]] = []
        var accuracies: [Double] = []
        var seconds: [Double] = []
        for (m, s) in plan.enumerated() {
            if let done = directory.subsetResult(m, replicate: replicate, size: s.count, tests: test.count) {
                margins.append(done.margins)
                accuracies.append(done.accuracy)
                seconds.append(done.seconds)
                continue
            }
            let label =
                ["subset model", "ceiling: subset model retrained", "lambda selection: subset model"][replicate]
                + " \(m + 1)/\(plan.count)"
            let (clf, t) = try trainModel(s.map { train[$0] }, seed: seed, trainingSeed: trainingSeed) {
                progress(label, $0, $1, $2, $3)
            }
            let r = try self.margins(clf)
            try directory.saveSubset(
                m, replicate: replicate, size: s.count, margins: r.margins, accuracy: r.accuracy, seconds: t)
            margins.append(r.margins)
            accuracies.append(r.accuracy)
            seconds.append(t)
        }
        return (margins, accuracies, seconds)
    }
}

/// The files of an LDS run: OUT/run.json (what the run is), OUT/model-K (the model under
/// study, K = 0, and the ensemble), OUT/subsets/NNNN.json (a subset model's margins) and
/// OUT/subsets/NNNN-ceiling.json (its second training's, for the noise ceiling) and
/// OUT/subsets/selection-NNNN.json (the lambda-selection subsets' models).
public struct DatamodelingRunDirectory: Sendable {
    public let url: URL
    public let key: String
    static let format = "tangent-lds-run-1"

    /// Refuses a directory holding another run (or removes its files with `overwrite`),
    /// and records this run.
    public init(url: URL, key: String) {
        self.url = url
        self.key = key
    }

    public func claim(overwrite: Bool) throws {
        let runURL = url.appendingPathComponent("run.json")
        let fm = FileManager.default
        if fm.fileExists(atPath: runURL.path) {
            let json = (try? JSONSerialization.jsonObject(with: WholeFile.read(runURL))) as? [String: Any]
            if json?["format"] as? String == DatamodelingRunDirectory.format && json?["run"] as? String == key {
                return
            }
            guard overwrite else {
                throw DataError(
                    "\(url.path) holds an LDS run of other settings (data, recipe, tokenizer, fraction or seed; run \(json?["run"] as? String ?? "unknown")); "
                        + "give another --out, or --overwrite to discard it")
            }
            for name in (try? fm.contentsOfDirectory(atPath: url.path)) ?? []
            where name == "subsets" || name.hasPrefix("model-") || name == "lds.json" || name == "lds.md" {
                try fm.removeItem(at: url.appendingPathComponent(name))
            }
        } else if let other = ((try? fm.contentsOfDirectory(atPath: url.path)) ?? []).first(where: {
            $0 != ".lock" && !$0.hasPrefix(".")
        }) {
            throw DataError("\(url.path) is not empty (\(other)) and holds no LDS run; give an empty or new directory")
        }
        try fm.createDirectory(at: url.appendingPathComponent("subsets"), withIntermediateDirectories: true)
        try AtomicFile.write(
            Data(
                try JSONSerialization.data(
                    withJSONObject: ["format": DatamodelingRunDirectory.format, "run": key], options: [.sortedKeys])),
            to: runURL)
    }

    public func modelDirectory(_ k: Int) -> URL { url.appendingPathComponent("model-\(k)") }

    /// A model of this run that finished training, or nil (to be trained again).
    public func finishedModel(_ dir: URL, threads: Int) -> Classifier? {
        guard let clf = try? Classifier(directory: dir, threads: threads), clf.configJSON["lds_run"] as? String == key,
            clf.configJSON["complete"] as? Bool == true
        else { return nil }
        return clf
    }

    private func subsetURL(_ m: Int, replicate: Int) -> URL {
        url.appendingPathComponent(
            "subsets/\(replicate == 2 ? "selection-" : "")\(String(format: "%04d", m))\(replicate == 1 ? "-ceiling" : "").json"
        )
    }

    /// A finished subset model's record (replicate 0), its noise-ceiling retraining's (1),
    /// or a lambda-selection subset model's (2).
    public func subsetResult(_ m: Int, replicate: Int = 0, size: Int, tests: Int) -> (
        margins: [Double], accuracy: Double, seconds: Double
    )? {
        guard let data = try? WholeFile.read(subsetURL(m, replicate: replicate)),
            let r = try? JSONDecoder().decode(SubsetRecord.self, from: data),
            r.run == key, r.subset == m, (r.replicate ?? 0) == replicate, r.size == size, r.margins.count == tests,
            r.margins.allSatisfy(\.isFinite)
        else { return nil }
        return (r.margins, r.accuracy, r.seconds)
    }

    public func saveSubset(
        _ m: Int, replicate: Int = 0, size: Int, margins: [Double], accuracy: Double, seconds: Double
    ) throws {
        try AtomicFile.write(
            try JSONEncoder.sorted.encode(
                SubsetRecord(
                    run: key, subset: m, replicate: replicate == 0 ? nil : replicate, size: size,
                    margins: margins, accuracy: accuracy, seconds: seconds)),
            to: subsetURL(m, replicate: replicate))
    }

    private struct SubsetRecord: Codable {
        let run: String
        let subset: Int
        /// nil for the first training (records written before the ceiling existed have none).
        let replicate: Int?
        let size: Int
        let margins: [Double]
        let accuracy: Double, seconds: Double
    }
}
