import Foundation
import TangentData
import TangentSafetensors
import TangentTokenizer
import Testing

@testable import TangentModel

@Suite(.singleThreadedBLAS) struct CheckpointTests {
    struct Reference: Decodable {
        struct Case: Decodable {
            let text: String
            let ids: [Int32]
            let embedding: [Double]
            let logits: [Double]
        }
        let cases: [Case]
    }

    /// Logits equal those of a NumPy implementation of the spec that reads the same
    /// files with the official safetensors and sentencepiece packages.
    @Test func logitsMatchTheIndependentReferenceImplementation() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: fixture("reference-logits.json")))
        let texts = ref.cases.map(\.text)
        for c in ref.cases { #expect(try clf.encode(c.text) == c.ids) }
        let z = try clf.logits(texts)
        var worst: Float = 0
        for (i, c) in ref.cases.enumerated() {
            for k in 0..<2 { worst = max(worst, abs(z[i * 2 + k] - Float(c.logits[k]))) }
        }
        #expect(worst < 1e-4, "max |logit - reference| = \(worst)")
        let e = clf.model.lastEmbeddings()
        let last = ref.cases.count - 1
        _ = try clf.model.forward(TokenBatch(sequences: [ref.cases[last].ids]))
        let e1 = clf.model.lastEmbeddings()
        #expect(zip(e1, ref.cases[last].embedding).map { abs(Double($0) - $1) }.max()! < 1e-4)
        // The prediction path frees its activations (a kept model holds its weights alone).
        #expect(e.isEmpty, "logits kept \(e.count) embedding values of its last batch")
        #expect(!e1.isEmpty)
    }

    @Test func saveLoadRoundTripGivesIdenticalLogits() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-roundtrip-\(UUID())")
        defer { try? FileManager.default.removeItem(at: dir) }
        try clf.save(to: dir, extra: ["note": "round trip"])
        let back = try Classifier(directory: dir, threads: 1)
        let texts = ["a fine film", "dull and long", "x"]
        #expect(try back.logits(texts) == clf.logits(texts))
        #expect(back.model.parameterArray == clf.model.parameterArray)
        // PyTorch state_dict layout: names, shapes, float32, row-major, data in spec order.
        let file = try SafetensorsFile(url: dir.appendingPathComponent("model.safetensors"))
        #expect(file.orderedNames == clf.model.layout.tensors.map(\.name))
        #expect(try file.info("blocks.0.attn.qkv.weight").shape == [48, 16])
        #expect(try file.info("head.weight").shape == [2, 16])
        let w = try file.float32("blocks.1.mlp.fc1.weight")
        let t = clf.model.layout.tensor("blocks.1.mlp.fc1.weight")!
        // Row-major [out, in]: element (r, c) at r * in + c.
        #expect(w[3 * 16 + 5] == clf.model.parameters[t.offset + 3 * 16 + 5])
    }

    func corrupt(_ mutate: (inout Data) -> Void) throws -> URL {
        let src = fixture("tiny-model")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-corrupt-\(UUID())")
        try FileManager.default.copyItem(at: src, to: dir)
        let f = dir.appendingPathComponent("model.safetensors")
        var d = try Data(contentsOf: f)
        mutate(&d)
        try d.write(to: f)
        return dir
    }

    func loadError(_ dir: URL) -> String {
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            _ = try Classifier(directory: dir)
            return ""
        } catch { return "\(error)" }
    }

    func header(_ d: Data) -> (Int, String) {
        let n = d.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
        return (n, String(decoding: d[8..<(8 + n)], as: UTF8.self))
    }

    func replaceHeader(_ d: inout Data, _ f: (String) -> String) {
        let (n, h) = header(d)
        var nh = f(h)
        while nh.utf8.count < n { nh += " " }
        precondition(nh.utf8.count == n, "edited header must keep its length")
        d.replaceSubrange(8..<(8 + n), with: Data(nh.utf8))
    }

    @Test func truncatedOrCorruptSafetensorsAreRejectedWithTheirReason() throws {
        var msg = loadError(try corrupt { $0 = $0.prefix(5) })
        #expect(msg.contains("model.safetensors") && msg.contains("truncated"))
        msg = loadError(try corrupt { d in d.replaceSubrange(0..<8, with: Data([0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0])) })
        #expect(msg.contains("header length"))
        msg = loadError(try corrupt { $0 = $0.prefix($0.count - 100) })
        #expect(msg.contains("truncated") && msg.contains("ends at byte"))
        msg = loadError(
            try corrupt { d in replaceHeader(&d) { $0.replacingOccurrences(of: "\"head.bias\"", with: "\"head.bia_\"") }
            })
        #expect(msg.contains("head.bia_") || msg.contains("'head.bias' is missing"))
        msg = loadError(
            try corrupt { d in
                replaceHeader(&d) { h in
                    // Make one F32 tensor claim F64: byte count no longer matches its shape.
                    h.replacingOccurrences(
                        of: "{\"dtype\":\"F32\",\"shape\":[2]", with: "{\"dtype\":\"F64\",\"shape\":[2]")
                }
            })
        #expect(msg.contains("F64") || msg.contains("needs"))
        msg = loadError(try corrupt { d in replaceHeader(&d) { h in h.replacingOccurrences(of: "{", with: "[") } })
        #expect(msg.contains("header"))
        // Overlapping data: point the last tensor at the first tensor's bytes.
        msg = loadError(
            try corrupt { d in
                replaceHeader(&d) { h in
                    let r = h.range(of: "\"head.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[")!
                    let tail = h[r.upperBound...]
                    let close = tail.firstIndex(of: "]")!
                    let old = String(h[r.upperBound..<close])
                    let new = "0,8"
                    let padded = new + String(repeating: " ", count: old.count - new.count)
                    return h.replacingCharacters(in: r.upperBound..<close, with: padded)
                }
            })
        #expect(msg.contains("overlaps"))
    }

    @Test func mismatchedTokenizerAndLabelsAreRejected() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-mismatch-\(UUID())")
        try FileManager.default.copyItem(at: fixture("tiny-model"), to: dir)
        defer { try? FileManager.default.removeItem(at: dir) }
        let texts = (0..<200).map { "other words number \($0) here \($0 % 7)" }
        let other = try Tokenizer.train(texts: texts, options: .init(vocabSize: 300))
        try other.serializedModel.write(to: dir.appendingPathComponent("tokenizer.model"))
        #expect(loadError(dir).contains("tokenizer does not match the model"))
        try FileManager.default.copyItem(at: fixture("tiny-model"), to: dir.appendingPathComponent("m2"))
        try Data("[\"a\", \"b\", \"c\"]".utf8).write(to: dir.appendingPathComponent("m2/labels.json"))
        let msg = loadError(dir.appendingPathComponent("m2"))
        #expect(msg.contains("labels.json") && msg.contains("n_classes"))
        try Data("{\"vocab_size\": 600}".utf8).write(to: dir.appendingPathComponent("m3.json"))
        #expect(throws: ModelError.self) { try ModelDirectory.loadConfig(dir.appendingPathComponent("m3.json")) }
    }
}
