import TangentTensor
import Testing

@testable import TangentModel

/// ModernBERT's hand-written backward pass: Float64 finite differences for every tensor
/// (no biases and first-token pooling, as ModernBERT ships; every bias, mean pooling and
/// tanh GELU), sliding windows shorter than the texts; and the per-example and streamed
/// forms against the batch gradient.
@Suite(.singleThreadedBLAS) struct ModernBertGradientTests {
    static func config(_ type: String) throws -> HFEncoderConfig {
        let biased = type == "modernbert-biased"
        var json: [String: Any] = [
            "model_type": "modernbert", "hidden_size": 8, "num_hidden_layers": 3, "num_attention_heads": 2,
            "intermediate_size": 6,
            "vocab_size": 23, "max_position_embeddings": 16, "pad_token_id": 0, "local_attention": 4, "norm_eps": 1e-5,
            "global_rope_theta": 160_000.0, "local_rope_theta": 10.0,
        ]
        if biased {
            json["norm_bias"] = true
            json["attention_bias"] = true
            json["mlp_bias"] = true
            json["classifier_bias"] = true
            json["classifier_pooling"] = "mean"
            json["hidden_activation"] = "gelu_new"
            json["classifier_activation"] = "gelu_new"
            json["layer_types"] = ["sliding_attention", "full_attention", "sliding_attention"]
        }
        return try HFEncoderConfig(json: json, source: "test")
    }

    static func model(_ config: HFEncoderConfig, threads: Int = 2) throws -> ModernBertClassifier<Double> {
        let m = try ModernBertClassifier<Double>(config: config, labels: ["a", "b", "c"], threads: threads)
        var rng = TestRNG(5)
        for t in m.layout.tensors {
            let norm = t.shape.count == 1 && t.name.hasSuffix("norm.weight")
            for k in t.range { m.parameters[k] = norm ? 1 + 0.3 * rng.normal() : 0.4 * rng.normal() }
        }
        return m
    }

    @Test(arguments: [
        ("modernbert", false), ("modernbert", true), ("modernbert-biased", false), ("modernbert-biased", true),
    ])
    func wholeModelMatchesFiniteDifferences(type: String, dropout: Bool) throws {
        let config = try Self.config(type)
        #expect(
            config.modern!.global == (type == "modernbert" ? [true, false, false] : [false, true, false])
                && config.modern!.window == 2)
        let model = try Self.model(config)
        var rng = TestRNG(12)
        let batch = BertGradientTests.batch(&rng)
        let seed = rng.vector(batch.count * 3)
        let drop = dropout ? DropoutConfig(rate: 0.2, seed: 5, step: 3) : nil
        let theta = model.parameterArray
        try model.forward(batch, dropout: drop, rowInvariant: false)
        var grad = [Double](repeating: 0, count: model.layout.count)
        grad.withUnsafeMutableBufferPointer { model.backward(seed: seed, into: $0) }
        for t in model.layout.tensors {
            var idx = Array(t.range)
            if idx.count > 100 { idx = stride(from: 0, to: idx.count, by: idx.count / 100).map { idx[$0] } }
            let (err, at) = maxFiniteDifferenceError(theta, analytic: grad, indices: idx, h: 1e-3, fivePoint: true) {
                x in
                model.setParameters(x)
                let z = try! model.forward(batch, dropout: drop, rowInvariant: false)
                return zip(z, seed).map(*).reduce(0, +)
            }
            #expect(err < 1e-5, "\(t.name): relative error \(err) at \(at - t.offset)")
            // Even the key bias: rotated by position, it no longer shifts a row's scores alike.
            #expect(t.range.contains { grad[$0] != 0 }, "\(t.name) has no gradient")
        }
    }

    /// Per-example gradients sum to the batch gradient; streamed ones equal them bit for
    /// bit, in the streaming order; the token rows give the token table's.
    @Test(arguments: ["modernbert", "modernbert-biased"])
    func perExampleAndStreamedForms(type: String) throws {
        let model = try Self.model(try Self.config(type))
        let h = model.config.hiddenSize
        var rng = TestRNG(22)
        let batch = BertGradientTests.batch(&rng, lengths: [5, 2, 9, 3, 1])
        let seed = rng.vector(batch.count * 3)
        try model.forward(batch, rowInvariant: true)
        var total = [Double](repeating: 0, count: model.layout.count)
        total.withUnsafeMutableBufferPointer { model.backward(seed: seed, into: $0) }
        let all = ParameterSubset(all: model.layout)
        var per = [Double](repeating: 0, count: batch.count * all.count)
        per.withUnsafeMutableBufferPointer { model.perExampleGradients(seed: seed, subset: all, into: $0) }
        var summed = [Double](repeating: 0, count: all.count)
        for b in 0..<batch.count { for k in 0..<all.count { summed[k] += per[b * all.count + k] } }
        #expect(zip(summed, total).map { abs($0 - $1) }.max()! < 1e-12)
        let dense = ParameterSubset(
            layout: model.layout, tensorIndices: model.layout.tensors.indices.filter { $0 != model.tokenTableIndex })
        var d = [Double](repeating: 0, count: batch.count * dense.count)
        var rows = [Double](repeating: 0, count: batch.tokenCount * h)
        d.withUnsafeMutableBufferPointer { dp in
            rows.withUnsafeMutableBufferPointer { rp in
                model.perExampleGradients(seed: seed, subset: dense, into: dp, embeddingRows: rp)
            }
        }
        var streamed = [Double](repeating: 0, count: batch.count * dense.count)
        var order: [Int] = []
        var rows2 = [Double](repeating: 0, count: batch.tokenCount * h)
        rows2.withUnsafeMutableBufferPointer { rp in
            model.perExampleGradients(seed: seed, subset: dense, embeddingRows: rp) { tensor, text, g in
                if text == 0 { order.append(tensor) }
                let off = dense.compactOffsets[tensor]!
                for k in 0..<model.layout.tensors[tensor].count { streamed[text * dense.count + off + k] += g[k] }
            }
        }
        #expect(streamed == d && rows2 == rows)
        #expect(order == model.streamingOrder && Set(order) == Set(dense.tensorIndices))
        let word = model.layout.tensors[model.tokenTableIndex]
        for b in 0..<batch.count {
            var table = [Double](repeating: 0, count: word.count)
            for t in batch.offsets[b]..<batch.offsets[b + 1] {
                for j in 0..<h { table[Int(batch.ids[t]) * h + j] += rows[t * h + j] }
            }
            let expected = Array(per[(b * all.count + word.offset)..<(b * all.count + word.offset + word.count)])
            #expect(zip(table, expected).map { abs($0 - $1) }.max()! < 1e-12)
        }
        // The top groups alone: the pass stops early and gives the same numbers.
        let top = try ParameterSubset(layout: model.layout, prefixes: ["classifier", "head", "layers.2"])
        var ph = [Double](repeating: 0, count: batch.count * top.count)
        ph.withUnsafeMutableBufferPointer { model.perExampleGradients(seed: seed, subset: top, into: $0) }
        for ti in top.tensorIndices {
            let t = model.layout.tensors[ti]
            let off = top.compactOffsets[ti]!
            for b in 0..<batch.count {
                #expect((0..<t.count).allSatisfy { ph[b * top.count + off + $0] == per[b * all.count + t.offset + $0] })
            }
        }
    }
}
