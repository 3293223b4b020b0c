import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import TangentAttribution
import TangentData
import TangentKernels
import TangentModel
import TangentTokenizer
import TangentTraining

@Suite(.singleThreadedBLAS) struct AttributionTests {
    @Test func attributionsDecomposeTheSurrogateAndTheCacheIsReused() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let train = Array(try DatasetReader().read(fixture("train-sample.jsonl")).prefix(80))
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-attr-\(UUID())")
        let kernel = SurrogateKernel.named("proj-trntk")!
        var log: [String] = []
        let engine = try AttributionEngine(classifier: clf, train: train, kernel: kernel, projDim: 256, seed: 2, cache: cache,
                                           log: { log.append($0) })
        #expect(engine.glm.converged)
        #expect(!engine.grid.isEmpty && engine.grid.contains { $0.lambda == engine.glm.lambda })
        let texts = ["a wonderful, warm film", "dull and lifeless"]
        let explained = try engine.explain(texts, top: 80)
        // Sum of all attributions for class c plus the bias is the surrogate's logit z_c.
        let block = try engine.featurizer!.block(texts.enumerated().map { LabeledText(text: $0.element, label: nil, line: $0.offset) })
        let rows = engine.kernelRows(features: block.features)
        let z = engine.glm.logits(kernelRows: rows)
        for (t, e) in explained.enumerated() {
            let c = clf.labels.index(of: e.label)!
            let total = (e.proponents + e.opponents).map(\.score).reduce(0, +) + engine.glm.bias[c]
            #expect(abs(total - z[t * 2 + c]) < 1e-4 * max(1, abs(z[t * 2 + c])))
            #expect(e.proponents.allSatisfy { $0.score > 0 } && e.opponents.allSatisfy { $0.score < 0 })
            #expect(zip(e.proponents, e.proponents.dropFirst()).allSatisfy { $0.score >= $1.score })
            // Per-layer shares of the exact trNTK add up to one.
            for a in e.proponents.prefix(3) {
                #expect(abs((a.layerShares ?? [:]).values.reduce(0, +) - 1) < 1e-3)
            }
            // Attribution = W[c, i] * K(x, x_i).
            let first = e.proponents[0]
            #expect(abs(first.score - engine.glm.weights[c * train.count + first.index] * first.kernel) < 1e-6)
        }
        // A second engine finds both the features and the surrogate in the cache.
        var log2: [String] = []
        let again = try AttributionEngine(classifier: clf, train: train, kernel: kernel, projDim: 256, seed: 2, cache: cache,
                                          log: { log2.append($0) })
        #expect(log2.contains { $0.contains("using cached training features") } && log2.contains { $0.contains("using cached surrogate") })
        #expect(again.glm.weights == engine.glm.weights)
        // Training labels the model does not know are refused.
        var bad = train
        bad[3] = LabeledText(text: "x", label: "neutral", line: 4)
        let error = #expect(throws: DataError.self) {
            _ = try AttributionEngine(classifier: clf, train: bad, kernel: kernel, projDim: 256, seed: 2, cache: cache)
        }
        #expect(error?.description.contains("'neutral'") == true)
    }

    @Test func exactKernelSurrogateUsesTheExactKernel() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        let train = Array(all[0..<30]) + Array(all[300..<330])
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-exact-\(UUID())")
        let engine = try AttributionEngine(classifier: clf, train: train, kernel: SurrogateKernel.named("trntk")!, projDim: 64, seed: 0, cache: cache)
        #expect(engine.features == nil && engine.glm.converged)
        let queries = [LabeledText(text: "a wonderful, warm film", label: nil, line: 1), LabeledText(text: "dull and lifeless", label: nil, line: 2)]
        let q = try engine.query(queries, source: "q", cached: true)
        // The rows are the exact trNTK between the queries and the training texts.
        let computer = try GradientComputer<Float>(model: clf.model, prefixes: ["all"])
        let direct = try ExactKernel.compute(computer, a: try queries.map { try clf.encode($0.text) },
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
            for a in e.proponents + e.opponents { #expect(abs((a.layerShares ?? [:]).values.reduce(0, +) - 1) < 1e-4) }
        }
        // The training self-kernel parts are kept (NFT-K diagonal), one value per text.
        #expect(engine.trainSelfParts?.allSatisfy { $0.values.count == train.count } == true)
    }
}

@Suite(.singleThreadedBLAS) struct TracInTests {
    /// TracIn sums eta_k-weighted loss-gradient products over saved checkpoints.
    @Test func tracinSumsCheckpoints() throws {
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        let train = Array(all[0..<24]) + Array(all[300..<324])
        var options = TrainingOptions()
        options.epochs = 3
        options.batchSize = 8
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-tracin-\(UUID())")
        let clf0 = try trainSmallClassifier(train, dModel: 16, seed: 2, options: options, onEpochEnd: { model, s in
            try ModelDirectory.saveWeights(model, to: dir.appendingPathComponent("checkpoints/epoch-\(s.epoch).safetensors"), metadata: [:])
        })
        try clf0.save(to: dir, extra: ["training": try JSONSerialization.jsonObject(with: JSONEncoder().encode(options)),
                                       "dataset": ["train_texts": train.count]])
        let clf = try Classifier(directory: dir, threads: 2)
        let cks = try TracIn.checkpoints(of: clf)
        #expect(cks.map(\.epoch) == [1, 2, 3])
        // eta_k: the epoch's mean rate under the recorded schedule (6 steps per epoch, 1 of warm-up).
        let schedule = LearningRateSchedule(peak: 1e-3, warmupSteps: 1, totalSteps: 18, decay: .linear)
        for c in cks {
            let mean = (0..<6).map { schedule.rate(at: (c.epoch - 1) * 6 + $0) }.reduce(0, +) / 6
            #expect(abs(c.learningRate - mean) < 1e-15)
        }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-tracin-cache-\(UUID())")
        let engine = try AttributionEngine(classifier: clf, train: train, kernel: SurrogateKernel.named("tracin")!, projDim: 128, seed: 3, cache: cache)
        let queries = [LabeledText(text: "a wonderful film", label: nil, line: 1), LabeledText(text: "boring", label: nil, line: 2)]
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
            for i in 0..<2 { for j in 0..<train.count {
                expected[i * train.count + j] += c.learningRate * (0..<128).reduce(0.0) { $0 + Double(a[i * 128 + $1]) * Double(b[j * 128 + $1]) }
            } }
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
        let train = Array(all[0..<40]) + Array(all[300..<340]), test = Array(all[200..<220])
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-rep-\(UUID())")
        let runs = try [1, 2].map { seed in
            try Comparison.run(classifier: clf, train: train, test: test, kernels: [SurrogateKernel.named("proj-pntk")!], projDim: 32,
                               seed: UInt64(seed), cache: cache, modelName: "m\(seed)", trainName: "train", testName: "test")
        }
        let merged = Comparison.merge(runs)
        let rep = try #require(merged.kernels[0].replicates)
        #expect(rep.models == ["m1", "m2"] && rep.tau == runs.map { $0.kernels[0].tau } && rep.tad == runs.map { $0.kernels[0].tad })
        let m = (rep.tau[0] + rep.tau[1]) / 2
        #expect(abs(rep.tauMean - m) < 1e-15 && abs(rep.tauSD - abs(rep.tau[0] - rep.tau[1]) / 2.0.squareRoot()) < 1e-12)
        let html = ReportHTML.render(merged)
        _ = try XMLDocument(xmlString: html, options: [])
        #expect(html.contains("Over 2 models") && html.contains(String(format: "%.3f", rep.tauMean)))
        #expect(Comparison.markdown(merged).contains("## Over 2 models"))
    }

    @Test func comparisonReportsEveryKernel() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let all = try DatasetReader().read(fixture("train-sample.jsonl"))
        let train = Array(all[0..<60]) + Array(all[300..<340]), test = Array(all[200..<230])
        let kernels = ["embedding", "proj-pntk", "if-head", "if-proj", "trntk"].map { SurrogateKernel.named($0)! }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-cmp-\(UUID())")
        var r = try Comparison.run(classifier: clf, train: train, test: test, kernels: kernels, projDim: 64, seed: 1, cache: cache,
                                   modelName: "tiny", trainName: "train", testName: "test")
        // Projected kernels approach the exact ones as K grows.
        r.projectionError = try Comparison.projectionError(classifier: clf, train: train, test: test, kernels: ["proj-pntk", "embedding"],
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
            #expect(k.grid.count == AttributionEngine.lambdaGrid.count)
            #expect(k.tau >= -1 && k.tau <= 1 && k.agreement >= 0 && k.agreement <= 1)
            #expect(abs(k.tad - (k.surrogateAccuracy - r.networkTestAccuracy)) < 1e-12)
            #expect(k.grid.contains { $0.lambda == k.lambda })
        }
        let md = Comparison.markdown(r)
        #expect(md.contains("| embedding |") && md.contains("| proj-pntk |") && md.contains("tau over the regularization grid"))
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
        #expect(html.contains("Projection error against K") && html.contains(String(format: "%.4f", pe[1].relativeError)))
        #expect(html.contains("NFT-K") && html.contains("trntk: top proponents"))
    }
}
