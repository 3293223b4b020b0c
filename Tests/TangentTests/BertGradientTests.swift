import TangentTensor
import Testing

@testable import TangentModel

/// The BERT family's hand-written backward pass: Float64 finite differences for every
/// tensor (BERT, RoBERTa, DistilBERT, ELECTRA and ALBERT layouts, shared layers, erf and tanh
/// GELU, with and without dropout; five-point differences), and
/// the per-example, streamed and token-row forms against the batch gradient.
@Suite(.singleThreadedBLAS) struct BertGradientTests {
    static func config(_ type: String, act: String = "gelu") throws -> HFEncoderConfig {
        if type == "distilbert" {
            return try HFEncoderConfig(
                json: [
                    "model_type": type, "dim": 8, "n_layers": 2, "n_heads": 2, "hidden_dim": 12, "vocab_size": 23,
                    "max_position_embeddings": 12,
                    "activation": act, "pad_token_id": 0,
                ], source: "test")
        }
        if type == "albert" || type == "albert-grouped" {
            // ALBERT with one shared layer, and with 3 layers over 2 groups of 2 inner layers
            // (group int(i / 1.5): 0, 0, 1; 6 layers applied).
            let grouped = type == "albert-grouped"
            return try HFEncoderConfig(
                json: [
                    "model_type": "albert", "hidden_size": 8, "embedding_size": 6, "num_hidden_layers": grouped ? 3 : 2,
                    "num_hidden_groups": grouped ? 2 : 1, "inner_group_num": grouped ? 2 : 1, "num_attention_heads": 2,
                    "intermediate_size": 12,
                    "vocab_size": 23, "max_position_embeddings": 12, "type_vocab_size": 2, "layer_norm_eps": 1e-5,
                    "hidden_act": act, "pad_token_id": 0,
                ], source: "test")
        }
        if type == "deberta" || type == "deberta-own" {
            // DeBERTa-v3's layout (shared key, both terms, log buckets from |i - j| > 2, a
            // normalized table, no position table or token types), and the other settings:
            // own c2p projection, clamped relative positions, raw table, absolute positions,
            // token types, tanh GELU in the pooler.
            let v3 = type == "deberta"
            return try HFEncoderConfig(
                json: [
                    "model_type": "deberta-v2", "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "intermediate_size": 12,
                    "vocab_size": 23, "max_position_embeddings": 12, "type_vocab_size": v3 ? 0 : 2,
                    "layer_norm_eps": 1e-5, "hidden_act": act,
                    "pad_token_id": 0, "relative_attention": true, "pos_att_type": v3 ? "p2c|c2p" : ["c2p"],
                    "position_buckets": v3 ? 4 : -1,
                    "max_relative_positions": v3 ? 6 : 3, "share_att_key": v3,
                    "norm_rel_ebd": v3 ? "layer_norm" : "none",
                    "position_biased_input": !v3, "pooler_hidden_act": v3 ? "gelu" : "gelu_new",
                ], source: "test")
        }
        if type == "electra" || type == "electra-narrow" {
            // ELECTRA with embeddings as wide as the layers, and narrower ones projected to them.
            return try HFEncoderConfig(
                json: [
                    "model_type": "electra", "hidden_size": 8, "embedding_size": type == "electra" ? 8 : 6,
                    "num_hidden_layers": 2,
                    "num_attention_heads": 2, "intermediate_size": 12, "vocab_size": 23, "max_position_embeddings": 12,
                    "type_vocab_size": 2,
                    "layer_norm_eps": 1e-5, "hidden_act": act, "pad_token_id": 0,
                ], source: "test")
        }
        return try HFEncoderConfig(
            json: [
                "model_type": type, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 12,
                "vocab_size": 23, "max_position_embeddings": 12, "type_vocab_size": 2, "layer_norm_eps": 1e-5,
                "hidden_act": act,
                "pad_token_id": type == "bert" ? 0 : 1,
            ], source: "test")
    }

    /// A model with random weights large enough that every path matters.
    static func model(_ config: HFEncoderConfig, threads: Int = 2, seed: UInt64 = 5) throws -> BertClassifier<Double> {
        let m = try BertClassifier<Double>(config: config, labels: ["a", "b", "c"], threads: threads)
        var rng = TestRNG(seed)
        for t in m.layout.tensors {
            for k in t.range {
                let layerNorm = t.name.contains("LayerNorm.weight") || t.name.contains("layer_norm.weight")
                m.parameters[k] = layerNorm ? 1 + 0.3 * rng.normal() : 0.4 * rng.normal()
            }
        }
        return m
    }

    static func batch(_ rng: inout TestRNG, lengths: [Int] = [4, 1, 7, 3]) -> TokenBatch {
        // Ids from 2 up: never the pad id (0 or 1), which packing drops.
        TokenBatch(sequences: lengths.map { L in (0..<L).map { _ in Int32(2 + rng.int(21)) } }, padID: 1)
    }

    @Test(arguments: [
        ("bert", "gelu", false), ("bert", "gelu", true), ("xlm-roberta", "gelu_new", false),
        ("roberta", "gelu_new", true),
        ("distilbert", "gelu", false), ("distilbert", "gelu", true), ("electra", "gelu", false),
        ("electra-narrow", "gelu", false), ("electra-narrow", "gelu", true), ("albert", "gelu_new", false),
        ("albert-grouped", "gelu_new", true), ("deberta", "gelu", false), ("deberta", "gelu", true),
        ("deberta-own", "gelu", false),
    ])
    func wholeModelMatchesFiniteDifferences(type: String, act: String, dropout: Bool) throws {
        let config = try Self.config(type, act: act)
        let model = try Self.model(config)
        var rng = TestRNG(12)
        let batch = Self.batch(&rng)
        let seed = rng.vector(batch.count * 3)
        let drop = dropout ? DropoutConfig(rate: 0.2, seed: 5, step: 3) : nil
        let theta = model.parameterArray
        try model.forward(batch, dropout: drop, rowInvariant: false)
        var grad = [Double](repeating: 0, count: model.layout.count)
        grad.withUnsafeMutableBufferPointer { model.backward(seed: seed, into: $0) }
        for t in model.layout.tensors {
            // DeBERTa with c2p alone: q_i . (k_j + Kr[r_ij]) gains nothing from the key biases either.
            let constantOverKeys =
                ["attention.self.key.bias", "attention.k_lin.bias", "attention.key.bias"]
                + (type == "deberta-own" ? ["key_proj.bias", "pos_key_proj.bias"] : [])
            if constantOverKeys.contains(where: t.name.hasSuffix) {
                // Softmax ignores a constant added to every key score, so this gradient is
                // zero by identity (finite differences would only compare rounding noise).
                #expect(t.range.allSatisfy { abs(grad[$0]) < 1e-10 }, "\(t.name) must have zero gradient")
                continue
            }
            if t.name.contains("rel_embeddings") || t.name.contains("pos_key_proj") {
                // DeBERTa's relative path is in use: its table and projections have gradients.
                #expect(t.range.contains { grad[$0] != 0 }, "\(t.name) has no gradient")
            }
            var idx = Array(t.range)
            if idx.count > 100 { idx = stride(from: 0, to: idx.count, by: idx.count / 100).map { idx[$0] } }
            let (err, at) = maxFiniteDifferenceError(theta, analytic: grad, indices: idx, h: 1e-3, fivePoint: true) {
                x in
                model.setParameters(x)
                let z = try! model.forward(batch, dropout: drop, rowInvariant: false)
                return zip(z, seed).map(*).reduce(0, +)
            }
            #expect(err < 1e-5, "\(t.name): relative error \(err) at \(at - t.offset)")
        }
        // The position table's gradient sits after the offset (RoBERTa: pad_token_id + 1).
        guard let posIndex = model.pos else { return }
        let posTensor = model.layout.tensors[posIndex]
        let E = config.embeddingSize
        let firstRows = (0..<config.firstPosition * E).map { grad[posTensor.offset + $0] }
        #expect(firstRows.allSatisfy { $0 == 0 })
        #expect(grad[posTensor.offset + config.firstPosition * E] != 0)
    }

    /// Per-example gradients sum to the batch gradient; with the token table as rows, the
    /// streamed form gives the materialized numbers, and subsets are exact slices.
    @Test(arguments: ["bert", "camembert", "distilbert", "electra-narrow", "albert-grouped", "deberta", "deberta-own"])
    func perExampleStreamedAndSubsetForms(type: String) throws {
        let model = try Self.model(try Self.config(type))
        let E = model.config.embeddingSize
        var rng = TestRNG(22)
        let batch = Self.batch(&rng, lengths: [5, 2, 9, 3, 1])
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
        // Dense part plus token rows, materialized and streamed.
        let dense = ParameterSubset(
            layout: model.layout, tensorIndices: model.layout.tensors.indices.filter { $0 != model.tokenTableIndex })
        var d = [Double](repeating: 0, count: batch.count * dense.count)
        var rows = [Double](repeating: 0, count: batch.tokenCount * E)
        d.withUnsafeMutableBufferPointer { dp in
            rows.withUnsafeMutableBufferPointer { rp in
                model.perExampleGradients(seed: seed, subset: dense, into: dp, embeddingRows: rp)
            }
        }
        // Streamed parts sum to the gradient (ALBERT's shared tensors come once per layer
        // that uses them; elsewhere each tensor comes once and equals it bit for bit).
        var streamed = [Double](repeating: 0, count: batch.count * dense.count)
        var order: [Int] = []
        var rows2 = [Double](repeating: 0, count: batch.tokenCount * E)
        rows2.withUnsafeMutableBufferPointer { rp in
            model.perExampleGradients(seed: seed, subset: dense, embeddingRows: rp) { tensor, text, g in
                if text == 0 { order.append(tensor) }
                let off = dense.compactOffsets[tensor]!
                for k in 0..<model.layout.tensors[tensor].count { streamed[text * dense.count + off + k] += g[k] }
            }
        }
        if model.config.appliedLayers == model.config.parameterSets {
            #expect(streamed == d && rows2 == rows)
        } else {
            #expect(zip(streamed, d).map { abs($0 - $1) }.max()! < 1e-12 && rows2 == rows)
            #expect(order.count > Set(order).count)
        }
        #expect(
            order == model.streamingOrder && Set(order) == Set(dense.tensorIndices),
            "\(Set(dense.tensorIndices).subtracting(order).map { model.layout.tensors[$0].name }) \(Set(order).subtracting(dense.tensorIndices))"
        )
        // Token rows scattered to their ids give the token table's per-example gradient.
        let word = model.layout.tensors[model.tokenTableIndex]
        for b in 0..<batch.count {
            var table = [Double](repeating: 0, count: word.count)
            for t in batch.offsets[b]..<batch.offsets[b + 1] {
                for j in 0..<E { table[Int(batch.ids[t]) * E + j] += rows[t * E + j] }
            }
            let expected = Array(per[(b * all.count + word.offset)..<(b * all.count + word.offset + word.count)])
            #expect(zip(table, expected).map { abs($0 - $1) }.max()! < 1e-12)
            for ti in dense.tensorIndices {
                let t = model.layout.tensors[ti]
                let off = dense.compactOffsets[ti]!
                #expect(
                    (0..<t.count).allSatisfy { d[b * dense.count + off + $0] == per[b * all.count + t.offset + $0] })
            }
        }
        try Self.checkTopLayerSubset(model, type: type, batch: batch, seed: seed, all: all, per: per)
    }

    /// Groups select by the user's names, and the pass stops early for the top layers: the
    /// gradients of a subset of the top layers are slices of the whole one's.
    static func checkTopLayerSubset(
        _ model: BertClassifier<Double>, type: String, batch: TokenBatch, seed: [Double], all: ParameterSubset,
        per: [Double]
    ) throws {
        if type == "electra-narrow" {
            // The projection of narrow embeddings is a group of its own, named as the checkpoint names it.
            #expect(Set(model.layout.tensors.map(\.group)).contains("embeddings_project"))
        }
        let layer1 =
            type == "distilbert"
            ? "transformer.layer.1" : type.hasPrefix("albert") ? "encoder.albert_layer_groups.1" : "encoder.layer.1"
        let top = try ParameterSubset(layout: model.layout, prefixes: ["classifier", layer1])
        #expect(top.tensorIndices.allSatisfy { ["classifier", layer1].contains(model.layout.tensors[$0].group) })
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

    /// Logits and gradients do not depend on how many shards compute them.
    @Test func resultsDoNotDependOnShardCount() throws {
        let config = try Self.config("bert")
        var rng = TestRNG(41)
        let batch = Self.batch(&rng, lengths: [5, 2, 9, 3, 1, 4, 7])
        let seed = rng.vector(batch.count * 3)
        var grads: [[Double]] = []
        for threads in [1, 2, 3] {
            let model = try Self.model(config, threads: threads)
            try model.forward(batch, rowInvariant: true)
            var g = [Double](repeating: 0, count: model.layout.count)
            g.withUnsafeMutableBufferPointer { model.backward(seed: seed, into: $0) }
            grads.append(g)
        }
        for g in grads.dropFirst() { #expect(zip(g, grads[0]).map { abs($0 - $1) }.max()! < 1e-12) }
    }
}
