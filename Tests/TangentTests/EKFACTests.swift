import Foundation
import TangentData
import TangentFeatures
import TangentTensor
import Testing

@testable import TangentModel

/// EK-FAC influence against kronfluence 1.0.1 on the same tiny BERT, texts and labels
/// (scripts/make_ekfac_reference.py), and its limit: with a damping far above the
/// curvature, lambda x influence is the plain gradient product.
@Suite(.singleThreadedBLAS) struct EKFACTests {
    struct Reference {
        let train: [[Int32]], trainLabels: [Int], queries: [[Int32]], queryLabels: [Int]
        let settings: [String: (measurement: String, damping: Double?, scores: [Double])]
    }

    static func reference() throws -> Reference {
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("ekfac/reference.json"))) as! [String: Any]
        func texts(_ key: String) -> [[Int32]] { (json[key] as! [[Int]]).map { $0.map(Int32.init) } }
        var settings: [String: (String, Double?, [Double])] = [:]
        for (name, raw) in json["settings"] as! [String: [String: Any]] {
            settings[name] = (
                raw["measurement"] as! String, raw["damping"] as? Double, (raw["scores"] as! [[Double]]).flatMap { $0 }
            )
        }
        return Reference(
            train: texts("train"), trainLabels: json["trainLabels"] as! [Int], queries: texts("queries"),
            queryLabels: json["queryLabels"] as! [Int], settings: settings)
    }

    static func correlation(_ a: [Double], _ b: [Double]) -> Double {
        let ma = a.reduce(0, +) / Double(a.count)
        let mb = b.reduce(0, +) / Double(b.count)
        var ab = 0.0
        var aa = 0.0
        var bb = 0.0
        for (x, y) in zip(a, b) {
            ab += (x - ma) * (y - mb)
            aa += (x - ma) * (x - ma)
            bb += (y - mb) * (y - mb)
        }
        return ab / (aa * bb).squareRoot()
    }

    @Test(arguments: ["margin-heuristic", "loss-1e-3"])
    func scoresMatchKronfluence(setting: String) throws {
        let ref = try Self.reference()
        let model = try BertClassifier<Float>.load(directory: fixture("hf-bert"), threads: 2)
        let ekfac = try EKFAC(
            model: model, texts: ref.train, labels: ref.trainLabels, fisher: .empirical, batchSize: 16)
        // Every linear layer: 2 x (query, key, value, attention output, intermediate, output), pooler, classifier.
        #expect(ekfac.layers.count == 14 && ekfac.layers.allSatisfy { $0.bias != nil })
        let s = try #require(ref.settings[setting])
        let ours = try ekfac.influence(
            model: model, queries: ref.queries, queryLabels: ref.queryLabels,
            measurement: s.measurement == "loss" ? .loss : .margin, train: ref.train,
            trainLabels: ref.trainLabels, damping: s.damping.map { .absolute($0) } ?? .heuristic
        ).map(Double.init)
        #expect(ours.count == s.scores.count)
        let r = Self.correlation(ours, s.scores)
        let scale = s.scores.map(abs).max()!
        let worst = zip(ours, s.scores).map { abs($0 - $1) }.max()! / scale
        print("EK-FAC \(setting): correlation with kronfluence \(r), largest difference \(worst) of the largest score")
        #expect(r >= 0.99 && worst < 1e-4)
    }

    /// The rotation from the linear layers' rows (what `ekfac` features and the eigenvalue
    /// correction use) equals the rotation of the formed per-text gradients, on every
    /// architecture (DeBERTa's relative rows through the key and query projections included).
    @Test(arguments: ["hf-bert", "hf-deberta", "hf-modernbert-biased", "tiny-model"])
    func rotationFromRowsMatchesTheRotatedGradient(name: String) throws {
        let clf = try Classifier(directory: fixture(name), threads: 2)
        let model = clf.model
        let texts = try [
            "a tedious, overlong mess", "one of the best films of the year", "fine", "not bad at all, really",
            "the plot goes nowhere and the jokes fall flat",
        ].map { try clf.encode($0) }
        let labels = texts.indices.map { $0 % model.shape.classes }
        let ekfac = try EKFAC(model: model, texts: texts, labels: labels, fisher: .empirical, batchSize: 3)
        let C = model.shape.classes
        let logits = try model.forward(TokenBatch(sequences: texts, padID: model.shape.padID), rowInvariant: true)
        var seed = [Float](repeating: 0, count: texts.count * C)
        for b in texts.indices {
            let r = Softmax.lossResidual((0..<C).map { Double(logits[b * C + $0]) }, label: labels[b])
            for c in 0..<C { seed[b * C + c] = Float(r[c]) }
        }
        let P = ekfac.subset.count
        var formed = [Float](repeating: 0, count: texts.count * P)
        formed.withUnsafeMutableBufferPointer {
            model.perExampleGradients(seed: seed, subset: ekfac.subset, into: $0)
            ekfac.rotate($0.baseAddress!, texts: texts.count, subset: ekfac.subset)
        }
        var fromRows = [Float](repeating: .nan, count: texts.count * P)
        fromRows.withUnsafeMutableBufferPointer {
            ekfac.rotatedGradients(model: model, seed: seed, subset: ekfac.subset, into: $0)
        }
        let scale = formed.map(abs).max()!
        let worst = zip(formed, fromRows).map { abs($0 - $1) }.max()!
        #expect(scale > 0 && !fromRows.contains { $0.isNaN })
        #expect(worst <= 1e-4 * scale, "\(name): largest difference \(worst) of \(scale)")
    }

    @Test func hugeDampingGivesTheGradientProduct() throws {
        let ref = try Self.reference()
        let model = try BertClassifier<Float>.load(directory: fixture("hf-bert"), threads: 2)
        let train = Array(ref.train.prefix(16))
        let labels = Array(ref.trainLabels.prefix(16))
        let ekfac = try EKFAC(model: model, texts: train, labels: labels, fisher: .sampled(seed: 3), batchSize: 7)
        let queries = Array(ref.queries.prefix(3))
        let queryLabels: [Int?] = [0, 1, nil]
        let lambda = 1e7
        let scaled = try ekfac.influence(
            model: model, queries: queries, queryLabels: queryLabels, measurement: .loss, train: train,
            trainLabels: labels, damping: .absolute(lambda), blockSize: 5
        ).map { Double($0) * lambda }
        // The plain product of the same per-text gradients over the linear tensors.
        func gradients(_ texts: [[Int32]], _ labels: [Int?]) throws -> [[Double]] {
            let logits = try model.forward(TokenBatch(sequences: texts, padID: model.shape.padID), rowInvariant: true)
            let C = model.shape.classes
            var seed = [Float](repeating: 0, count: texts.count * C)
            for b in texts.indices {
                let z = (0..<C).map { Double(logits[b * C + $0]) }
                let p = Softmax.probabilities(z)
                let y = labels[b] ?? Softmax.argmax(z)
                for c in 0..<C { seed[b * C + c] = Float(p[c] - (c == y ? 1 : 0)) }
            }
            var g = [Float](repeating: 0, count: texts.count * ekfac.subset.count)
            g.withUnsafeMutableBufferPointer { model.perExampleGradients(seed: seed, subset: ekfac.subset, into: $0) }
            return texts.indices.map { b in
                g[(b * ekfac.subset.count)..<((b + 1) * ekfac.subset.count)].map(Double.init)
            }
        }
        let gq = try gradients(queries, queryLabels)
        let gt = try gradients(train, labels)
        let plain = gq.flatMap { q in gt.map { t in zip(q, t).map(*).reduce(0, +) } }
        let scale = plain.map(abs).max()!
        let worst = zip(scaled, plain).map { abs($0 - $1) }.max()! / scale
        #expect(worst < 1e-3, "largest difference \(worst) of the largest product")
    }

    /// `ekfac` features (whitened loss gradients, projected) give, as products, the exact
    /// influence with the loss measured at the query's predicted label: close at large K.
    @Test func projectedFeaturesApproachTheExactInfluence() throws {
        let clf = try Classifier(directory: fixture("hf-bert"), threads: 2)
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("hf-bert/reference.json")))
            as! [String: Any]
        let all = (json["cases"] as! [[String: Any]]).map { $0["text"] as! String }.filter { $0.count > 12 }
        let train = all.prefix(40).enumerated().map {
            LabeledText(text: $1, label: clf.labels.names[$0 % 2], line: $0 + 1)
        }
        let queries = all.dropFirst(40).prefix(6).enumerated().map { LabeledText(text: $1, label: nil, line: $0 + 1) }
        let labels = train.indices.map { $0 % 2 }
        let trainIDs = try train.map { try clf.encode($0.text) }
        let queryIDs = try queries.map { try clf.encode($0.text) }
        let names = try EKFAC.linearTensors(model: clf.model, probe: trainIDs[0]).map {
            clf.model.layout.tensors[$0].name
        }
        let curvature = Curvature(identity: "test", dampings: [.heuristic], tensorNames: names) {
            try EKFAC(model: clf.model, texts: trainIDs, labels: labels, fisher: .sampled(seed: 5))
        }
        var options = FeaturizeOptions(kind: .ekfac)
        options.projDim = 1 << 16
        options.curvature = curvature
        options.predictedLossLabels = false
        let featurizer = try Featurizer(classifier: clf, options: options)
        let ft = try featurizer.block(train).features
        options.predictedLossLabels = true
        let fq = try Featurizer(classifier: clf, options: options).block(queries).features
        let K = options.projDim
        var projected = [Double](repeating: 0, count: queries.count * train.count)
        for q in queries.indices {
            for t in train.indices {
                projected[q * train.count + t] = (0..<K).reduce(0.0) {
                    $0 + Double(fq[q * K + $1]) * Double(ft[t * K + $1])
                }
            }
        }
        let exact = try curvature.factors().influence(
            model: clf.model, queries: queryIDs, queryLabels: [Int?](repeating: nil, count: queries.count),
            measurement: .loss, train: trainIDs, trainLabels: labels, damping: .heuristic
        ).map(Double.init)
        let r = Self.correlation(projected, exact)
        print("ekfac features at K = \(K): correlation with the exact influence \(r)")
        #expect(r > 0.99)
    }
}
