import Foundation
import TangentData
import TangentFeatures
import TangentModel
import TangentSafetensors
import Testing

@Suite(.singleThreadedBLAS) struct FeatureStoreTests {
    static func texts(_ n: Int) throws -> [LabeledText] {
        Array(try DatasetReader().read(fixture("train-sample.jsonl")).prefix(n))
    }

    static func tempURL(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("tangent-fs-\(UUID())").appendingPathComponent(
            name)
    }

    static func options(_ kind: FeatureKind, seed: UInt64 = 1, k: Int = 48, block: Int = 7) -> FeaturizeOptions {
        var o = FeaturizeOptions(kind: kind)
        o.projDim = k
        o.seed = seed
        o.blockSize = block
        o.batchSize = block
        o.threads = 2
        return o
    }

    /// One prediction path: the classifier's logits are the bits the featurizer stores
    /// (for every feature kind), whatever the batch size.
    @Test func classifierLogitsAreTheFeaturizersLogits() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let texts = try Self.texts(23)
        let z = try clf.logits(texts.map(\.text))
        #expect(try clf.logits(texts.map(\.text), batchSize: 5) == z)
        #expect(try clf.predict(texts.map(\.text)).flatMap(\.logits) == z)
        for kind in [FeatureKind.pntk, .trntk, .embedding, .grad] {
            let f = try Featurizer(classifier: clf, options: Self.options(kind)).run(
                texts: texts, source: "s", to: Self.tempURL("z.safetensors"), replace: .never)
            #expect(try f.logits() == z, "\(kind)")
        }
    }

    @Test func featuresRoundTripAndInterruptedRunsResume() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let texts = try Self.texts(30)
        let url = Self.tempURL("a.safetensors")
        let f = try Featurizer(classifier: clf, options: Self.options(.trntk))
        let full = try f.run(texts: texts, source: "sample", to: url, replace: .never)
        #expect(full.metadata.texts == 30 && full.metadata.outputs == 2 && full.metadata.width == 48)
        let all = try full.features(0..<30)
        // Block 1 computed directly equals what the file holds.
        let direct = try f.block(Array(texts[7..<14]))
        #expect(Array(all[(7 * 96)..<(14 * 96)]) == direct.features)
        #expect(try full.labels() == texts.map { Int64(clf.labels.index(of: $0.label!)!) })
        #expect(try full.lines() == texts.map { Int64($0.line) })
        // Interrupt: write only blocks 0 and 2 of a new run, then run again.
        let url2 = Self.tempURL("b.safetensors")
        do {
            let w = try FeatureWriter(
                url: url2, metadata: full.metadata, labels: try full.labels(), lines: try full.lines(), replace: .never)
            for b in [0, 2] {
                let out = try f.block(Array(texts[w.range(ofBlock: b)]))
                try w.write(block: b, features: out.features, logits: out.logits)
            }
        }
        #expect(!FileManager.default.fileExists(atPath: url2.path))
        var firstReport = -1
        let resumed = try f.run(texts: texts, source: "sample", to: url2, replace: .never) { done, _ in
            if firstReport < 0 { firstReport = done }
        }
        #expect(firstReport == 14)
        // A gradient budget too small for a block computes it in sub-batches, unchanged.
        var small = Self.options(.trntk)
        small.gradientBudget = 3 * 2 * f.classifier.model.layout.count * 4
        let split = try Featurizer(classifier: clf, options: small).block(Array(texts[7..<14]))
        #expect(split.features == direct.features && split.logits == direct.logits)
        #expect(try resumed.features(0..<30) == all)
        #expect(try resumed.logits() == full.logits())
    }

    func message(_ body: () throws -> Void) -> String {
        do {
            try body()
            return ""
        } catch { return "\(error)" }
    }

    /// The featurizer's streamed sketch: the same features whatever the block size and thread count.
    @Test func sketchedFeaturesAreBitIdenticalAcrossBlocksAndThreads() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let texts = try Self.texts(30)
        var results: [[Float]] = []
        for (threads, block) in [(1, 30), (2, 7), (3, 4), (2, 1)] {
            var o = Self.options(.trntk, block: block)
            o.projector = .sketch(1)
            o.threads = threads
            o.perLayer = true
            let f = try Featurizer(classifier: clf, options: o)
            var features: [Float] = []
            var layers: [Float] = []
            for s in stride(from: 0, to: texts.count, by: block) {
                let r = try f.block(Array(texts[s..<min(texts.count, s + block)]))
                features += r.features
                layers += r.layerFeatures!
            }
            results.append(features + layers)
        }
        for (i, r) in results.enumerated().dropFirst() {
            let differing = zip(r, results[0]).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
            #expect(
                differing.isEmpty,
                "configuration \(i): \(differing.count) of \(r.count) values differ, first at \(differing.first ?? -1)")
        }
    }

    @Test func mismatchedOrDamagedFilesAreRefused() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let texts = try Self.texts(10)
        let a = try Featurizer(classifier: clf, options: Self.options(.pntk, seed: 1)).run(
            texts: texts, source: "s", to: Self.tempURL("a.safetensors"), replace: .never)
        let b = try Featurizer(classifier: clf, options: Self.options(.pntk, seed: 2)).run(
            texts: texts, source: "s", to: Self.tempURL("b.safetensors"), replace: .never)
        let c = try Featurizer(classifier: clf, options: Self.options(.pntk, seed: 1, k: 64)).run(
            texts: texts, source: "s", to: Self.tempURL("c.safetensors"), replace: .never)
        var m = message { try KernelMatrix.compute(a: a, b: b, normalize: false, to: Self.tempURL("k.safetensors")) }
        #expect(m.contains("cannot be combined: they differ in seed (1 vs 2)"), "\(m)")
        m = message { try KernelMatrix.compute(a: a, b: c, normalize: false, to: Self.tempURL("k.safetensors")) }
        #expect(m.contains("K (48 vs 64)"), "\(m)")
        // A different model (changed weights) is refused too.
        let other = try Classifier(directory: fixture("tiny-model"), threads: 2)
        other.model.parameters[0] += 1
        let d = try Featurizer(classifier: other, options: Self.options(.pntk, seed: 1)).run(
            texts: texts, source: "s", to: Self.tempURL("d.safetensors"), replace: .never)
        m = message { try KernelMatrix.compute(a: a, b: d, normalize: false, to: Self.tempURL("k.safetensors")) }
        #expect(m.contains("they differ in model ("), "\(m)")
        // Existing output without overwrite.
        m = message {
            _ = try Featurizer(classifier: clf, options: Self.options(.pntk)).run(
                texts: texts, source: "s", to: a.url, replace: .never)
        }
        #expect(m.contains("already exists"))
        // An unfinished file made with other settings is not silently reused.
        let url = Self.tempURL("p.safetensors")
        _ = try FeatureWriter(
            url: url, metadata: a.metadata, labels: try a.labels(), lines: try a.lines(), replace: .never)
        m = message {
            _ = try Featurizer(classifier: clf, options: Self.options(.pntk, seed: 9)).run(
                texts: texts, source: "s", to: url, replace: .never)
        }
        // ... and the refusal says which setting differs.
        #expect(m.contains("cannot be resumed") && m.contains("seed (1 vs 9 now)"), "\(m)")
        // Projectors: the file records its projector; files or runs of another one do not mix.
        var sketched = Self.options(.pntk, seed: 1)
        sketched.projector = .sketch(2)
        let e = try Featurizer(classifier: clf, options: sketched).run(
            texts: texts, source: "s", to: Self.tempURL("e.safetensors"), replace: .never)
        #expect(e.metadata.projector == "sketch-s2" && a.metadata.projector == ProjectorChoice.default.tag)
        m = message { try KernelMatrix.compute(a: a, b: e, normalize: false, to: Self.tempURL("k.safetensors")) }
        #expect(m.contains("projector (\(ProjectorChoice.default.tag) vs sketch-s2)"), "\(m)")
        m = message {
            _ = try Featurizer(classifier: clf, options: sketched).run(
                texts: texts, source: "s", to: url, replace: .never)
        }
        #expect(
            m.contains("cannot be resumed")
                && m.contains("projector (\(ProjectorChoice.default.tag) vs sketch-s2 now)"), "\(m)")
        // Truncated and unfinished files.
        let t = Self.tempURL("t.safetensors")
        try FileManager.default.createDirectory(at: t.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(contentsOf: a.url).prefix(500).write(to: t)
        m = message { _ = try FeatureFile(url: t) }
        #expect(m.contains("t.safetensors") && m.contains("truncated"))
        m = message { _ = try FeatureFile(url: URL(fileURLWithPath: url.path + ".partial")) }
        #expect(m.contains("never finished"))
        // Not a feature file at all.
        m = message { _ = try FeatureFile(url: fixture("tiny-model/model.safetensors")) }
        #expect(m.contains("not a tangent feature file"))
    }

    @Test func kernelMatricesAreProductsOfFeatures() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let texts = try Self.texts(23)
        let f = try Featurizer(classifier: clf, options: Self.options(.embedding, block: 5)).run(
            texts: texts, source: "s", to: Self.tempURL("e.safetensors"), replace: .never)
        let g = try Featurizer(classifier: clf, options: Self.options(.embedding, block: 9)).run(
            texts: Array(texts[3..<11]), source: "s2", to: Self.tempURL("e2.safetensors"), replace: .never)
        let out = Self.tempURL("k.safetensors")
        try KernelMatrix.compute(a: f, b: g, normalize: false, to: out, rowBlock: 4, columnBlock: 3)
        let k = try SafetensorsFile(url: out).float32("kernel", shape: [23, 8])
        let e = try f.features(0..<23)
        let e2 = try g.features(0..<8)
        let D = f.metadata.width
        // ck = <e, e'>; texts[3..<11] are the same texts, so K[3 + j, j] = |e|^2.
        for i in 0..<23 {
            for j in 0..<8 {
                let dot = (0..<D).map { e[i * D + $0] * e2[j * D + $0] }.reduce(0, +)
                #expect(abs(k[i * 8 + j] - dot) <= 1e-4 * max(1, abs(dot)))
            }
        }
        let outN = Self.tempURL("kn.safetensors")
        try KernelMatrix.compute(a: f, b: f, normalize: true, to: outN)
        let kn = try SafetensorsFile(url: outN).float32("kernel", shape: [23, 23])
        for i in 0..<23 { #expect(abs(kn[i * 23 + i] - 1) < 1e-5) }
        #expect(kn.allSatisfy { $0 <= 1.00001 && $0 >= -1.00001 })
    }

    @Test(arguments: [ProjectorChoice.rademacher, .sketch(1), .sketch(4)])
    func perLayerKernelsEstimateTheExactPerLayerParts(projector: ProjectorChoice) throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let rows = try Self.texts(12)
        var o = Self.options(.pntk, k: 4096, block: 5)
        o.perLayer = true
        o.projector = projector
        let f = try Featurizer(classifier: clf, options: o).run(
            texts: rows, source: "s", to: Self.tempURL("l.safetensors"), replace: .never)
        #expect(f.metadata.groupList == ["embeddings", "blocks.0", "blocks.1", "norm", "head"])
        let computer = try GradientComputer(model: clf.model, prefixes: ["all"])
        let exact = try ExactKernel.compute(computer, a: try rows.map { try clf.encode($0.text) }, b: nil, kind: .pntk)
        for (g, part) in zip(f.metadata.groupList, exact.parts) {
            #expect(part.group == g)
            let out = Self.tempURL("\(g).safetensors")
            try KernelMatrix.compute(a: f, b: f, normalize: false, layer: g, to: out)
            let k = try SafetensorsFile(url: out).float32("kernel")
            // The file's layer kernel is the Gram matrix of that layer's stored features.
            let lf = try f.layerFeatures(0..<12, group: g)
            let gram01 = (0..<4096).map { lf[$0] * lf[4096 + $0] }.reduce(0, +)
            #expect(abs(k[1] - gram01) <= 1e-4 * max(1, abs(gram01)))
            // And it estimates the exact part (relative Frobenius error ~ 1/sqrt(K)).
            let err = zip(k, part.values).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            let norm = part.values.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
            #expect(err / norm < 0.15, "group \(g): relative error \(err / norm)")
        }
        let m = message {
            try KernelMatrix.compute(a: f, b: f, normalize: false, layer: "blocks.7", to: Self.tempURL("x.safetensors"))
        }
        #expect(m.contains("no features of layer group 'blocks.7'"))
    }

    @Test func overwriteNeverRemovesADirectoryOrAFileOfAnotherKind() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let texts = try Self.texts(9)
        let dir = Self.tempURL("f")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("notes".utf8).write(to: dir.appendingPathComponent("notes.txt"))
        let f = try Featurizer(classifier: clf, options: Self.options(.pntk))
        var m = message { _ = try f.run(texts: texts, source: "s", to: dir, replace: .featureFile) }
        #expect(m.contains("is a directory"), "\(m)")
        #expect(try String(contentsOf: dir.appendingPathComponent("notes.txt"), encoding: .utf8) == "notes")
        let other = dir.appendingPathComponent("notes.txt")
        m = message { _ = try f.run(texts: texts, source: "s", to: other, replace: .featureFile) }
        #expect(m.contains("is not a feature file"), "\(m)")
        #expect(try String(contentsOf: other, encoding: .utf8) == "notes")
        // A finished feature file is replaced in one rename: a new inode, same path.
        let out = dir.appendingPathComponent("a.safetensors")
        _ = try f.run(texts: texts, source: "s", to: out, replace: .never)
        let before = try FileManager.default.attributesOfItem(atPath: out.path)[.systemFileNumber] as? Int
        let again = try Featurizer(classifier: clf, options: Self.options(.pntk, seed: 2)).run(
            texts: texts, source: "s", to: out, replace: .featureFile)
        #expect(again.metadata.seed == 2)
        #expect(try FileManager.default.attributesOfItem(atPath: out.path)[.systemFileNumber] as? Int != before)
        #expect(!FileManager.default.fileExists(atPath: out.path + ".partial"))
    }

    @Test func aSecondWriterOfTheSameOutputRefusesAtOnce() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let texts = try Self.texts(9)
        let url = Self.tempURL("c.safetensors")
        let first = try Featurizer(classifier: clf, options: Self.options(.pntk))
        let a = try first.run(texts: texts, source: "s", to: Self.tempURL("ref.safetensors"), replace: .never)
        let writer = try FeatureWriter(
            url: url, metadata: a.metadata, labels: try a.labels(), lines: try a.lines(), replace: .never)
        for replace in [FeatureWriter.Replace.never, .featureFile, .anyFile] {
            let m = message { _ = try first.run(texts: texts, source: "s", to: url, replace: replace) }
            #expect(m.contains("c.safetensors.partial") && m.contains("another process is writing"), "\(m)")
        }
        // The first writer is unharmed and finishes.
        for b in 0..<writer.blocks {
            let r = writer.range(ofBlock: b)
            try writer.write(
                block: b, features: try a.features(r),
                logits: Array(try a.logits()[(r.lowerBound * a.metadata.classes)..<(r.upperBound * a.metadata.classes)])
            )
        }
        try writer.finish()
        #expect(try FeatureFile(url: url).features(0..<9) == a.features(0..<9))
    }

    @Test func aDamagedCacheEntryIsReportedAndRebuilt() throws {
        let clf = try Classifier(directory: fixture("tiny-model"), threads: 2)
        let texts = try Self.texts(9)
        let url = Self.tempURL("cache.safetensors")
        let f = try Featurizer(classifier: clf, options: Self.options(.pntk))
        let good = try f.run(texts: texts, source: "s", to: url, replace: .never)
        let bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 100).write(to: url)
        var logged: [String] = []
        #expect(FeatureFile.cached(url, log: { logged.append($0) }) == nil)
        #expect(logged.count == 1 && logged[0].contains("cache.safetensors") && logged[0].contains("rebuilding"))
        let rebuilt = try f.run(texts: texts, source: "s", to: url, replace: .anyFile)
        #expect(try rebuilt.features(0..<9) == good.features(0..<9))
        #expect(
            FeatureFile.cached(Self.tempURL("none.safetensors"), log: { logged.append($0) }) == nil && logged.count == 1
        )
    }
}
