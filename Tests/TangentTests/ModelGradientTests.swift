import TangentTensor
import Testing

@testable import TangentModel

/// The whole model's backward against Float64 finite differences, per-example
/// gradients against the batch gradient, and padding invariance.
@Suite(.singleThreadedBLAS) struct ModelGradientTests {
    /// Loss = sum_b,c seed[b,c] * logits[b,c] for a model with parameters `theta`.
    static func seededLoss(
        _ model: TransformerClassifier<Double>, _ theta: [Double], _ batch: TokenBatch,
        _ seed: [Double], dropout: DropoutConfig? = nil
    ) -> Double {
        model.setParameters(theta)
        let z = try! model.forward(batch, dropout: dropout, rowInvariant: false)
        return zip(z, seed).map(*).reduce(0, +)
    }

    @Test(arguments: [ModelConfig.Pooling.mean, .cls], [false, true])
    func wholeModelMatchesFiniteDifferences(pooling: ModelConfig.Pooling, dropout: Bool) throws {
        let config = tinyConfig(pooling: pooling)
        let model = try TransformerClassifier<Double>.initialized(config: config, seed: 11, threads: 2)
        var rng = TestRNG(12)
        // Larger weights than the 0.02 initialization make every path matter.
        let theta = model.parameterArray.enumerated().map { i, v in
            v == 1 ? 1 + 0.3 * rng.normal() : v * 15 + 0.05 * rng.normal()
        }
        let batch = TokenBatch(sequences: randomSequences([4, 1, 7, 3], vocab: config.vocabSize, rng: &rng))
        let seed = rng.vector(batch.count * config.nClasses)
        let drop = dropout ? DropoutConfig(rate: 0.2, seed: 5, step: 3) : nil
        model.setParameters(theta)
        try model.forward(batch, dropout: drop, rowInvariant: false)
        var grad = [Double](repeating: 0, count: model.layout.count)
        grad.withUnsafeMutableBufferPointer { model.backward(seed: seed, into: $0) }
        // Check a sample of coordinates of every tensor (all of the small ones).
        for t in model.layout.tensors {
            var idx = Array(t.range)
            if t.name == "embeddings.token.weight" {
                // Only rows of tokens present have non-zero gradient; check those and a few others.
                let present = Set(batch.ids.map(Int.init))
                idx = idx.filter { present.contains(($0 - t.offset) / config.dModel) || ($0 - t.offset) % 17 == 0 }
            }
            if idx.count > 120 { idx = stride(from: 0, to: idx.count, by: idx.count / 120).map { idx[$0] } }
            let (err, at) = maxFiniteDifferenceError(theta, analytic: grad, indices: idx) {
                ModelGradientTests.seededLoss(model, $0, batch, seed, dropout: drop)
            }
            #expect(err < 1e-5, "\(t.name): relative error \(err) at \(at - t.offset)")
        }
    }

    @Test func perExampleGradientsSumToBatchGradient() throws {
        let config = tinyConfig()
        let model = try TransformerClassifier<Double>.initialized(config: config, seed: 21, threads: 2)
        var rng = TestRNG(22)
        let batch = TokenBatch(sequences: randomSequences([5, 2, 9, 3, 1], vocab: config.vocabSize, rng: &rng))
        let seed = rng.vector(batch.count * config.nClasses)
        try model.forward(batch)
        var total = [Double](repeating: 0, count: model.layout.count)
        total.withUnsafeMutableBufferPointer { model.backward(seed: seed, into: $0) }
        let all = ParameterSubset(all: model.layout)
        var per = [Double](repeating: 0, count: batch.count * all.count)
        per.withUnsafeMutableBufferPointer { model.perExampleGradients(seed: seed, subset: all, into: $0) }
        var summed = [Double](repeating: 0, count: all.count)
        for b in 0..<batch.count { for k in 0..<all.count { summed[k] += per[b * all.count + k] } }
        let diff = zip(summed, total).map { abs($0 - $1) }.max()!
        #expect(diff < 1e-12, "max |sum of per-example - batch| = \(diff)")
        // Each example's gradient equals the gradient of that text alone.
        let alone = TokenBatch(sequences: [Array(batch.ids[batch.offsets[2]..<batch.offsets[3]])])
        try model.forward(alone)
        var g2 = [Double](repeating: 0, count: model.layout.count)
        g2.withUnsafeMutableBufferPointer { model.backward(seed: Array(seed[6..<9]), into: $0) }
        let d2 = (0..<all.count).map { abs(per[2 * all.count + $0] - g2[$0]) }.max()!
        #expect(d2 < 1e-12)
        // A subset holds exactly the subset's slices of the full per-example gradient.
        try model.forward(batch)
        let head = try ParameterSubset(layout: model.layout, prefixes: ["head", "blocks.1"])
        var ph = [Double](repeating: 0, count: batch.count * head.count)
        ph.withUnsafeMutableBufferPointer { model.perExampleGradients(seed: seed, subset: head, into: $0) }
        for ti in head.tensorIndices {
            let t = model.layout.tensors[ti]
            let off = head.compactOffsets[ti]!
            for b in 0..<batch.count {
                for k in 0..<t.count {
                    #expect(ph[b * head.count + off + k] == per[b * all.count + t.offset + k])
                }
            }
        }
    }

    @Test func paddingInvariance() throws {
        let config = ModelConfig(vocabSize: 50, maxLen: 16, dModel: 16, nHeads: 4, nLayers: 2, dFF: 32, nClasses: 2)
        let model = try TransformerClassifier<Float>.initialized(config: config, seed: 3, threads: 2)
        var rng = TestRNG(31)
        let seqs = randomSequences([6, 16, 2, 11, 9], vocab: config.vocabSize, rng: &rng)
        let together = try model.forward(TokenBatch(sequences: seqs))
        // Explicit right-padding with pad id 0 is masked exactly like no padding.
        let padded = seqs.map { $0 + [Int32](repeating: 0, count: 16 - $0.count) }
        let viaPadding = try model.forward(TokenBatch(sequences: padded))
        for (b, s) in seqs.enumerated() {
            let alone = try model.forward(TokenBatch(sequences: [s]))
            for c in 0..<2 {
                #expect(abs(alone[c] - together[b * 2 + c]) <= 1e-5 * max(1, abs(alone[c])))
                #expect(abs(viaPadding[b * 2 + c] - together[b * 2 + c]) <= 1e-5 * max(1, abs(alone[c])))
            }
        }
    }

    @Test func resultsDoNotDependOnShardCount() throws {
        let config = tinyConfig()
        var rng = TestRNG(41)
        let batch = TokenBatch(sequences: randomSequences([5, 2, 9, 3, 1, 4, 7], vocab: config.vocabSize, rng: &rng))
        let seed = rng.vector(batch.count * config.nClasses)
        var grads: [[Double]] = []
        for threads in [1, 2, 3] {
            let model = try TransformerClassifier<Double>.initialized(config: config, seed: 9, threads: threads)
            try model.forward(batch)
            var g = [Double](repeating: 0, count: model.layout.count)
            g.withUnsafeMutableBufferPointer { model.backward(seed: seed, into: $0) }
            grads.append(g)
        }
        for g in grads.dropFirst() { #expect(zip(g, grads[0]).map { abs($0 - $1) }.max()! < 1e-12) }
    }
}
