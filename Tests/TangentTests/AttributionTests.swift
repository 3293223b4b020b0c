import Foundation
import TangentAttribution
import TangentData
import TangentEvaluation
import TangentFeatures
import TangentModel
import TangentReports
import TangentSafetensors
import TangentSurrogate
import TangentTensor
import TangentTokenizer
import TangentTraining
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

@Suite(.singleThreadedBLAS) struct AttributionTests {
    @Test func attributionsDecomposeTheSurrogateAndTheCacheIsReused() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let train = Array(try DatasetReader().read(fixture("train-sample.jsonl")).prefix(80))
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-attr-\(UUID())")
        let kernel = SurrogateKernel.named("proj-trntk")!
        var log: [String] = []
        let engine = try AttributionEngine(
            classifier: clf, train: train, kernel: kernel, projDim: 256, seed: 2, cache: cache,
            log: { log.append($0) })
        #expect(engine.glm.converged)
        #expect(!engine.grid.isEmpty && engine.grid.contains { $0.lambda == engine.glm.lambda })
        let texts = ["a wonderful, warm film", "dull and lifeless"]
        let explained = try engine.explain(texts, top: 80)
        // Sum of all attributions for class c plus the bias is the surrogate's logit z_c.
        let block = try engine.featurizer!.block(
            texts.enumerated().map { LabeledText(text: $0.element, label: nil, line: $0.offset) })
        let rows = try #require(engine.source as? FeatureKernelSource).kernelRows(features: block.features)
        let z = engine.glm.logits(kernelRows: rows)
        for (t, e) in explained.enumerated() {
            let c = clf.labels.index(of: e.label)!
            let total = (e.proponents + e.opponents).map(\.score).reduce(0, +) + engine.glm.bias[c]
            #expect(abs(total - z[t * 2 + c]) < 1e-4 * max(1, abs(z[t * 2 + c])))
            #expect(e.proponents.allSatisfy { $0.score > 0 } && e.opponents.allSatisfy { $0.score < 0 })
            #expect(zip(e.proponents, e.proponents.dropFirst()).allSatisfy { $0.score >= $1.score })
            // Per-layer shares of the exact trNTK: signed, their magnitudes add up to one.
            for a in e.proponents.prefix(3) {
                let s = try #require(a.layerShares)
                #expect(abs(s.values.reduce(0) { $0 + abs($1) } - 1) < 1e-3)
            }
            // Attribution = W[c, i] * K(x, x_i).
            let first = e.proponents[0]
            #expect(abs(first.score - engine.glm.weights[c * train.count + first.index] * first.kernel) < 1e-6)
        }
        // A second engine finds both the features and the surrogate in the cache.
        var log2: [String] = []
        let again = try AttributionEngine(
            classifier: clf, train: train, kernel: kernel, projDim: 256, seed: 2, cache: cache,
            log: { log2.append($0) })
        #expect(
            log2.contains { $0.contains("using cached training features") }
                && log2.contains { $0.contains("using cached surrogate") })
        #expect(again.glm.weights == engine.glm.weights)
        // A one-model ensemble goes through the same scorer: the plain explanation, bit
        // for bit, without per-layer shares; two models average their scores.
        let plain = try engine.explain(texts, top: 5, layerShares: false)
        let one = try AttributionEngine.explain(texts, engines: [engine], top: 5)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let oneJSON = String(decoding: try encoder.encode(one), as: UTF8.self)
        let plainJSON = String(decoding: try encoder.encode(plain), as: UTF8.self)
        #expect(oneJSON == plainJSON, "\(oneJSON)\n\(plainJSON)")
        let two = try AttributionEngine.explain(texts, engines: [engine, again], top: 5)
        #expect(two.map(\.proponents.first?.score) == plain.map(\.proponents.first?.score))
        #expect(two.map(\.surrogateProbability) == plain.map(\.surrogateProbability))
        // Training labels the model does not know are refused.
        var bad = train
        bad[3] = LabeledText(text: "x", label: "neutral", line: 4)
        let error = #expect(throws: DataError.self) {
            _ = try AttributionEngine(classifier: clf, train: bad, kernel: kernel, projDim: 256, seed: 2, cache: cache)
        }
        #expect(error?.description.contains("'neutral'") == true)
    }

    /// TRAK through the engine, for an ensemble of two models, against a direct dense
    /// computation from the same projected per-class gradients:
    /// (1/N) sum_s phi_s(x)^T (Phi_s^T Phi_s + lambda_s I)^-1 phi_s(x_i) (1 - p_s,y_i(x_i)).
    @Test func trakScoresMatchADenseComputation() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let other = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let rng = CounterRNG.derive(5, 5)
        other.model.setParameters(
            other.model.parameterArray.enumerated().map { $0.element + 0.02 * Float(rng.normal(UInt64($0.offset))) })
        let train = Array(try DatasetReader().read(fixture("train-sample.jsonl")).prefix(30))
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-trak-\(UUID())")
        defer { try? FileManager.default.removeItem(at: cache) }
        let K = 48
        let engine = try AttributionEngine(
            classifier: clf, train: train, kernel: SurrogateKernel.named("trak")!, projDim: K, seed: 3,
            cache: cache, ensemble: [other])
        let texts = ["a wonderful, warm film", "dull and lifeless", "not bad at all"].enumerated().map {
            LabeledText(text: $0.element, label: nil, line: $0.offset)
        }
        let classes = [1, 0, 1]
        let q = try engine.query(texts, source: "query", lossLabels: classes)
        let scores = engine.methodScores(q, classes: classes)
        let labels = try clf.labels.indices(of: train, source: "train")
        var options = FeaturizeOptions(kind: .trntk)
        options.projDim = K
        options.seed = 3
        var expected = [Double](repeating: 0, count: texts.count * train.count)
        for (s, model) in [clf, other].enumerated() {
            let featurizer = try Featurizer(classifier: model, options: options)
            let tr = try featurizer.block(train)
            let te = try featurizer.block(texts)
            // The binary margin log p_y - log(1 - p_y) = z_y - z_{1-y}: phi = J_y - J_{1-y}.
            func phi(_ f: [Float], _ i: Int, _ y: Int) -> [Double] {
                (0..<K).map { Double(f[(i * 2 + y) * K + $0]) - Double(f[(i * 2 + 1 - y) * K + $0]) }
            }
            let Phi = train.indices.map { phi(tr.features, $0, labels[$0]) }
            var G = [Double](repeating: 0, count: K * K)
            for p in Phi { for a in 0..<K { for b in 0..<K { G[a * K + b] += p[a] * p[b] } } }
            for k in 0..<K { G[k * K + k] += engine.transforms[s].lambda }
            for t in texts.indices {
                let x = solveDense(G, phi(te.features, t, classes[t]), n: K)
                for i in train.indices {
                    let zi = (0..<2).map { Double(tr.logits[i * 2 + $0]) }
                    let weight = 1 - Faithfulness.probability(logits: zi, classIndex: labels[i])
                    expected[t * train.count + i] += zip(x, Phi[i]).map(*).reduce(0, +) * weight / 2
                }
            }
        }
        let scale = expected.map(abs).max()!
        for k in expected.indices {
            #expect(abs(scores[k] - expected[k]) < 1e-3 * scale, "score \(k): \(scores[k]) vs \(expected[k])")
        }
        #expect(engine.transforms.count == 2 && engine.transforms[0].lambda != engine.transforms[1].lambda)
    }

    @Test func exactKernelSurrogateUsesTheExactKernel() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        let train = Array(all[0..<30]) + Array(all[300..<330])
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-exact-\(UUID())")
        let engine = try AttributionEngine(
            classifier: clf, train: train, kernel: SurrogateKernel.named("trntk")!, projDim: 64, seed: 0, cache: cache)
        #expect(engine.features == nil && engine.glm.converged)
        let queries = [
            LabeledText(text: "a wonderful, warm film", label: nil, line: 1),
            LabeledText(text: "dull and lifeless", label: nil, line: 2),
        ]
        let q = try engine.query(queries, source: "q", cached: true)
        // The rows are the exact trNTK between the queries and the training texts.
        let computer = try GradientComputer<Float>(model: clf.model, prefixes: ["all"])
        let direct = try ExactKernel.compute(
            computer, a: try queries.map { try clf.encode($0.text) },
            b: try train.map { try clf.encode($0.text) }, kind: .trntk)
        #expect(zip(q.rows, direct.total).allSatisfy { abs($0 - $1) < 1e-5 })
        #expect(zip(q.logits, try clf.logits(queries.map(\.text))).allSatisfy { $0 == $1 })
        // Cached rows come back identical, parts included, and parts add up to the rows.
        let again = try engine.query(queries, source: "q", cached: true)
        #expect(again.rows == q.rows && again.parts!.count == q.parts!.count)
        for j in q.rows.indices {
            #expect(abs(q.parts!.map { $0.values[j] }.reduce(0, +) - q.rows[j]) < 1e-5)
        }
        // Per-layer shares of the top attributions come from the exact parts and sum to one.
        for e in try engine.explain(queries.map(\.text), top: 5) {
            // Signed shares of the sum of |parts|: magnitudes add to one, and the parts' sum
            // has the kernel's sign.
            for a in e.proponents + e.opponents {
                let s = try #require(a.layerShares)
                #expect(abs(s.values.reduce(0) { $0 + abs($1) } - 1) < 1e-4)
                if abs(a.kernel) > 1e-6 { #expect((s.values.reduce(0, +) > 0) == (a.kernel > 0)) }
            }
        }
        // The training self-kernel parts are kept (NFT-K diagonal), one value per text.
        #expect(engine.trainSelfParts?.allSatisfy { $0.values.count == train.count } == true)
    }
}

@Suite(.singleThreadedBLAS) struct TracInTests {
    /// `n` texts of each class of the sample, and options for `epochs` epochs of batches of 8.
    static func run(texts n: Int, epochs: Int) throws -> ([LabeledText], TrainingOptions) {
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        var options = TrainingOptions()
        options.epochs = epochs
        options.batchSize = 8
        return (Array(all[0..<n]) + Array(all[300..<(300 + n)]), options)
    }

    /// A model directory trained on `train` with a checkpoint and training record per epoch,
    /// and config.json recording the run as `tangent train` does.
    static func trainWithCheckpoints(
        _ train: [LabeledText], options: TrainingOptions, modelSeed: UInt64 = 2,
        recordInConfig: Bool = true
    ) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-tracin-\(UUID())")
        let labels = try LabelSet(collecting: train).names
        let clf = try trainSmallClassifier(
            train, dModel: 16, seed: modelSeed, options: options,
            onEpochEnd: { model, s in
                let record = TrainingRecord(
                    epoch: s.epoch, options: options, trainTexts: train.count, dataFingerprint: "data-\(train.count)",
                    model: model, labels: labels, threads: 1)
                try record.writeCheckpoint(
                    model, to: dir.appendingPathComponent("checkpoints/epoch-\(s.epoch).safetensors"))
            })
        try clf.save(
            to: dir,
            extra: recordInConfig
                ? [
                    "training": try JSONSerialization.jsonObject(with: JSONEncoder().encode(options)),
                    "dataset": ["train_texts": train.count], "train_fingerprint": "data-\(train.count)",
                ] : [:])
        return dir
    }

    /// Checkpoints are weighted by their own records, never by a default, and must be the
    /// model's run; a retraining of the same recipe with other weights is accepted and said so.
    @Test func checkpointsNeedARecordOfTheModelsRun() throws {
        let (train, options) = try TracInTests.run(texts: 12, epochs: 2)
        let dir = try TracInTests.trainWithCheckpoints(train, options: options)
        let clf = try Classifier(directory: dir, threads: 1)
        let ck = dir.appendingPathComponent("checkpoints")
        // A retraining with the same recipe whose weights differ (here: another initialization,
        // as another CPU's kernels would give): accepted, with the distance stated.
        let other = try TracInTests.trainWithCheckpoints(train, options: options, modelSeed: 5)
        let retrained = try TracIn.checkpoints(of: clf, directory: other.appendingPathComponent("checkpoints"))
        let d = try #require(retrained.finalWeightDistance)
        #expect(d > 0.01 && retrained.summary.contains("retraining"))
        #expect(
            retrained.checkpoints.map(\.learningRate)
                == (try TracIn.checkpoints(of: clf)).checkpoints.map(\.learningRate))
        // ... but not when the model records no training run to compare the recipe with.
        let bare = try Classifier(
            directory: try TracInTests.trainWithCheckpoints(train, options: options, recordInConfig: false), threads: 1)
        #expect(try TracIn.checkpoints(of: bare).finalWeightDistance == 0)
        #expect(throws: DataError.self) {
            try TracIn.checkpoints(of: bare, directory: other.appendingPathComponent("checkpoints"))
        }
        // Another recipe (learning rate) is not the model's run.
        var faster = options
        faster.learningRate = 2e-3
        let foreign = try TracInTests.trainWithCheckpoints(train, options: faster)
        do {
            _ = try TracIn.checkpoints(of: clf, directory: foreign.appendingPathComponent("checkpoints"))
            Issue.record("checkpoints of another recipe were accepted")
        } catch let e as DataError {
            #expect(e.description.contains("training options") && e.description.contains(foreign.path))
        }
        // Checkpoints of two runs mixed in one directory.
        try FileManager.default.removeItem(at: ck.appendingPathComponent("epoch-2.safetensors"))
        try FileManager.default.copyItem(
            at: foreign.appendingPathComponent("checkpoints/epoch-2.safetensors"),
            to: ck.appendingPathComponent("epoch-2.safetensors"))
        #expect(throws: DataError.self) { try TracIn.checkpoints(of: clf) }
        // A checkpoint without a record has no learning rate: an error naming it, not eta = 1.
        let model = try clf.model.emptyCopy(threads: 1)
        try ModelDirectory.loadWeights(model, from: ck.appendingPathComponent("epoch-1.safetensors"))
        try ModelDirectory.saveWeights(
            model, to: ck.appendingPathComponent("epoch-2.safetensors"), metadata: ["epoch": "2"])
        do {
            _ = try TracIn.checkpoints(of: clf)
            Issue.record("a checkpoint without a training record was accepted")
        } catch let e as TrainingError {
            #expect(e.description.contains("epoch-2.safetensors") && e.description.contains("no training record"))
        }
        // A damaged record names its field.
        var w = SafetensorsWriter()
        w.metadata = [
            "format": "pt", TrainingRecord.metadataKey: #"{"format":"tangent-training-record-1","epoch":"two"}"#,
        ]
        for t in model.layout.tensors { w.add(t.name, shape: t.shape, float32: Array(model.parameters[t.range])) }
        try w.write(to: ck.appendingPathComponent("epoch-2.safetensors"))
        do {
            _ = try TracIn.checkpoints(of: clf)
            Issue.record("a damaged training record was accepted")
        } catch let e as TrainingError {
            #expect(e.description.contains("epoch-2.safetensors") && e.description.contains("'epoch'"))
        }
    }

    /// TracIn sums eta_k-weighted loss-gradient products over saved checkpoints.
    @Test func tracinSumsCheckpoints() throws {
        let (train, options) = try TracInTests.run(texts: 24, epochs: 3)
        let dir = try TracInTests.trainWithCheckpoints(train, options: options)
        let clf = try Classifier(directory: dir, threads: 2)
        let run = try TracIn.checkpoints(of: clf)
        let cks = run.checkpoints
        #expect(cks.map(\.epoch) == [1, 2, 3] && run.finalWeightDistance == 0)
        // eta_k: the epoch's mean rate under the recorded schedule (6 steps per epoch, 1 of warm-up).
        let schedule = LearningRateSchedule(peak: 1e-3, warmupSteps: 1, totalSteps: 18, decay: .linear)
        for c in cks {
            let mean = (0..<6).map { schedule.rate(at: (c.epoch - 1) * 6 + $0) }.reduce(0, +) / 6
            #expect(abs(c.learningRate - mean) < 1e-15)
        }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-tracin-cache-\(UUID())")
        let engine = try AttributionEngine(
            classifier: clf, train: train, kernel: SurrogateKernel.named("tracin")!, projDim: 128, seed: 3, cache: cache
        )
        let queries = [
            LabeledText(text: "a wonderful film", label: nil, line: 1),
            LabeledText(text: "boring", label: nil, line: 2),
        ]
        let q = try engine.query(queries, source: "q")
        // Direct: per checkpoint, projected loss gradients (queries at the final model's
        // predicted label, training texts at their own), weighted by eta_k.
        let predicted = try clf.predict(queries.map(\.text)).map(\.label)
        var expected = [Double](repeating: 0, count: 2 * train.count)
        for c in cks {
            var o = FeaturizeOptions(kind: .grad)
            o.projDim = 128
            o.seed = 3
            let f = try Featurizer(classifier: try TracIn.load(c, like: clf, threads: 2), options: o)
            let a = try f.block(zip(queries, predicted).map { LabeledText(text: $0.text, label: $1, line: 1) }).features
            let b = try f.block(train).features
            for i in 0..<2 {
                for j in 0..<train.count {
                    expected[i * train.count + j] +=
                        c.learningRate
                        * (0..<128).reduce(0.0) { $0 + Double(a[i * 128 + $1]) * Double(b[j * 128 + $1]) }
                }
            }
        }
        let scale = expected.map(abs).max()!
        #expect(zip(q.rows, expected).allSatisfy { abs(Double($0) - $1) < 1e-4 * scale })
        #expect(zip(q.logits, try clf.logits(queries.map(\.text))).allSatisfy { $0 == $1 })
    }
}

@Suite(.singleThreadedBLAS) struct ComparisonTests {
    @Test func measuresOnHandMadeLogits() {
        // Three texts, two classes; labels 1, 0, 1.
        let net: [Double] = [0, 2, 1, 0, 0, 5]
        let same = Comparison.measure(surrogate: net, network: net, labels: [1, 0, 1], classes: 2)
        #expect(same.tau == 1 && same.agreement == 1 && same.surrogateAccuracy == 1)
        // Reversed log-odds ranking: tau -1; predictions flip on every text.
        let flipped: [Double] = [2, 0, 0, 1, 5, 0]
        let r = Comparison.measure(surrogate: flipped, network: net, labels: [1, 0, 1], classes: 2)
        #expect(r.tau == -1 && r.agreement == 0 && r.surrogateAccuracy == 0)
        // The paper's variant drops texts whose probability rounds to exactly 0 or 1.
        let saturated: [Double] = [0, 2, 1, 0, 0, 200]
        let s = Comparison.measure(surrogate: saturated, network: net, labels: [1, 0, 1], classes: 2)
        #expect(s.kept == 2 && s.tau == 1)
    }

    @Test func severalModelsGiveErrorBars() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        let train = Array(all[0..<40]) + Array(all[300..<340])
        let test = Array(all[200..<220])
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-rep-\(UUID())")
        let runs = try [1, 2].map { seed in
            try Comparison.run(
                classifier: clf, train: train, test: test, kernels: [SurrogateKernel.named("proj-pntk")!], projDim: 32,
                seed: UInt64(seed), cache: cache, modelName: "m\(seed)", trainName: "train", testName: "test")
        }
        let merged = Comparison.merge(runs)
        let rep = try #require(merged.kernels[0].replicates)
        #expect(
            rep.models == ["m1", "m2"] && rep.tau == runs.map { $0.kernels[0].tau }
                && rep.tad == runs.map { $0.kernels[0].tad })
        let m = (rep.tau[0] + rep.tau[1]) / 2
        #expect(
            abs(rep.tauMean - m) < 1e-15 && abs(rep.tauSD - abs(rep.tau[0] - rep.tau[1]) / 2.0.squareRoot()) < 1e-12)
        let html = ReportHTML.render(merged)
        _ = try XMLDocument(xmlString: html, options: [])
        #expect(html.contains("Over 2 models") && html.contains(String(format: "%.3f", rep.tauMean)))
        #expect(ReportMarkdown.comparison(merged).contains("## Over 2 models"))
    }

    @Test func comparisonReportsEveryKernel() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        let train = Array(all[0..<60]) + Array(all[300..<340])
        let test = Array(all[200..<230])
        let kernels = ["embedding", "proj-pntk", "if-head", "if-proj", "trntk"].map { SurrogateKernel.named($0)! }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-cmp-\(UUID())")
        var r = try Comparison.run(
            classifier: clf, train: train, test: test, kernels: kernels, projDim: 64, seed: 1, cache: cache,
            modelName: "tiny", trainName: "train", testName: "test")
        // Projected kernels approach the exact ones as K grows.
        r.projectionError = try Comparison.projectionError(
            classifier: clf, train: train, test: test, kernels: [.projPntk, .embedding],
            dims: [16, 1024], seed: 1, trainCount: 40, testCount: 10)
        let pe = try #require(r.projectionError)
        #expect(pe.map(\.kernel) == ["proj-pntk", "proj-pntk"] && pe.map(\.projDim) == [16, 1024])
        #expect(pe[1].relativeError < 0.5 * pe[0].relativeError && pe[1].relativeError > 0)
        #expect(r.kernels.map(\.kernel) == ["embedding", "proj-pntk", "if-head", "if-proj", "trntk"])
        // The exact kernel carries its NFT-K decomposition; each view's shares sum to one.
        let shares = try #require(r.kernels.last?.layerShares)
        #expect(shares.map(\.group).contains("head") && r.kernels.dropLast().allSatisfy { $0.layerShares == nil })
        for view in [shares.map(\.pairs), shares.map(\.topProponents), shares.map(\.selfKernel)] {
            #expect(abs(view.reduce(0, +) - 1) < 1e-3)
        }
        #expect(r.trainTexts == 100 && r.testTexts == 30)
        for k in r.kernels {
            // The whole grid (a report does not stop early), plus stronger lambdas only where
            // the grid's strongest was best (the edge extension, up to 1e4).
            let lambdas = k.grid.map(\.lambda)
            let strongest = LambdaSelector.defaultGrid.max()!
            #expect(Set(LambdaSelector.defaultGrid).isSubset(of: Set(lambdas)) && k.selection == "network-tau, 5 folds")
            #expect(
                lambdas.allSatisfy {
                    LambdaSelector.defaultGrid.contains($0) || ($0 > strongest && $0 <= 1e4 * (1 + 1e-9))
                })
            #expect(k.tau >= -1 && k.tau <= 1 && k.agreement >= 0 && k.agreement <= 1)
            #expect(abs(k.tad - (k.surrogateAccuracy - r.networkTestAccuracy)) < 1e-12)
            #expect(k.grid.contains { $0.lambda == k.lambda })
        }
        let md = ReportMarkdown.comparison(r)
        #expect(
            md.contains("| embedding |") && md.contains("| proj-pntk |")
                && md.contains("tau over the regularization grid"))
        // The HTML report is well-formed (parses as XML), self-contained, and shows every
        // kernel's numbers and one scatter point per test text.
        let html = ReportHTML.render(r)
        let doc = try XMLDocument(xmlString: html, options: [])
        #expect(doc.rootElement()?.name == "html")
        #expect(!html.contains("<script") && !html.contains("src=\"http"))
        for k in r.kernels {
            #expect(html.contains("<td>\(k.kernel)</td><td>\(String(format: "%.3f", k.tau))</td>"))
            #expect(html.contains("\(k.kernel): tau \(String(format: "%.3f", k.tau))"))
        }
        #expect(html.components(separatedBy: "<circle").count - 1 == r.kernels.count * r.testTexts)
        #expect(
            html.contains("Projection error against K") && html.contains(String(format: "%.4f", pe[1].relativeError)))
        #expect(html.contains("NFT-K") && html.contains("trntk: top proponents"))
    }
}

@Suite(.singleThreadedBLAS) struct EnsembleLDSTests {
    /// lds --ensemble: the LDS of N models equals the LDS of the mean of N separate runs'
    /// attributions (each with its own engine and surrogate), for a surrogate's representer
    /// and influence forms and for a kernel-value method; N = 1 is the first run alone.
    @Test func ensembleAveragesSeparateRuns() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let other = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let rng = CounterRNG.derive(6, 6)
        other.model.setParameters(
            other.model.parameterArray.enumerated().map { $0.element + 0.05 * Float(rng.normal(UInt64($0.offset))) })
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        let train = Array(all.prefix(30))
        let test = Array(all.dropFirst(30).prefix(8))
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-ens-\(UUID())")
        defer { try? FileManager.default.removeItem(at: cache) }
        let subsets = Datamodeling.subsets(n: train.count, count: 12, fraction: 0.5, seed: 1)
        let margins = (0..<12).map { m in (0..<test.count).map { t in rng.normal(UInt64(1000 + m * 10 + t)) } }
        let selector = LambdaSelector(folds: 3)
        let report = try Datamodeling.evaluate(
            models: [clf, other], sizes: [1, 2], train: train, test: test, subsets: subsets, margins: margins,
            kernels: [.ck, .gradCos], projDim: 32, seed: 3, cache: cache, resamples: 10, selector: selector)
        let compared = try clf.labels.indices(of: test, source: "test").map {
            Faithfulness.comparedClass(classes: 2, label: $0)
        }
        var rep = [[Double]]()
        var infl = [[Double]]()
        var grad = [[Double]]()
        for model in [clf, other] {
            for k in [SurrogateKernel.ck, .gradCos] {
                let e = try AttributionEngine(
                    classifier: model, train: train, kernel: k, projDim: 32, seed: 3, cache: cache,
                    selector: selector.exhaustive)
                let q = try e.query(test, source: "test", lossLabels: k == .gradCos ? compared : nil)
                if k == .ck {
                    rep.append(e.methodScores(q, classes: compared))
                    infl.append(try e.surrogateInfluence().scores(rows: q.rows, classes: compared))
                } else {
                    grad.append(e.methodScores(q, classes: compared))
                }
            }
        }
        func lds(_ runs: [[Double]]) -> Double {
            let mean = (0..<runs[0].count).map { a in runs.reduce(0) { $0 + $1[a] } / Double(runs.count) }
            return Datamodeling.score(mean, n: train.count, subsets: subsets, margins: margins, resamples: 10, seed: 3)
                .mean
        }
        func row(_ name: String, _ size: Int) -> Double? {
            report.curve?.first { $0.kernel == name && $0.ensemble == size }?.lds.mean
        }
        for (name, runs) in [("ck", rep), ("ck-infl", infl), ("grad-cos", grad)] {
            #expect(row(name, 1).map { abs($0 - lds([runs[0]])) < 1e-9 } == true, "\(name) N = 1")
            #expect(row(name, 2).map { abs($0 - lds(runs)) < 1e-9 } == true, "\(name) N = 2")
        }
        // The ensemble changes the attributions: N = 2 differs from the first model alone.
        #expect(lds(rep) != lds([rep[0]]))
        // The class prior (the model under study's label residuals alone) closes the list.
        #expect(
            report.kernels.map(\.kernel) == ["ck", "ck-infl", "grad-cos", "class-prior"]
                && report.kernels.map(\.ensemble) == [2, 2, 2, 1])
    }
}
