import TangentFeatures
import TangentTensor
import Testing

@testable import TangentModel

@Suite(.singleThreadedBLAS) struct ProjectionTests {
    static func model(threads: Int = 2) throws -> TransformerClassifier<Float> {
        let config = ModelConfig(vocabSize: 40, maxLen: 12, dModel: 16, nHeads: 2, nLayers: 2, dFF: 24, nClasses: 3)
        let m = try TransformerClassifier<Float>.initialized(config: config, seed: 8, threads: threads)
        var rng = TestRNG(8)
        m.setParameters(
            m.parameterArray.map { $0 == 1 ? 1 + Float(0.3 * rng.normal()) : $0 * 15 + Float(0.05 * rng.normal()) })
        return m
    }

    static func texts(_ n: Int, seed: UInt64 = 9) -> [[Int32]] {
        var rng = TestRNG(seed)
        return randomSequences((0..<n).map { 1 + ($0 * 7) % 11 }, vocab: 40, rng: &rng)
    }

    /// Features of `texts` computed in batches of `batch`.
    static func features(
        _ computer: GradientComputer<Float>, _ projector: Projector, _ texts: [[Int32]], batch: Int,
        output: GradientOutput = .pseudoNTK
    ) throws -> [Float] {
        var out: [Float] = []
        for s in stride(from: 0, to: texts.count, by: batch) {
            let block = try computer.gradients(
                TokenBatch(sequences: Array(texts[s..<min(texts.count, s + batch)])), output: output)
            let f = projector.project(block, computer: computer)
            // [O, B, K] -> text-major [B, O, K].
            let B = block.batch.count
            let K = projector.dimension
            for b in 0..<B { for o in 0..<block.outputs { out += f[((o * B) + b) * K..<((o * B) + b + 1) * K] } }
        }
        return out
    }

    /// A projector to test: dense, or a sketch with s nonzeros.
    struct Setup: Sendable, CustomTestStringConvertible {
        let distribution: Projector.Distribution
        var nonzeros = 1
        func projector(_ K: Int, seed: UInt64, threads: Int = 2) -> Projector {
            Projector(dimension: K, seed: seed, distribution: distribution, nonzeros: nonzeros, threads: threads)
        }
        var testDescription: String { distribution == .sketch ? "sketch s=\(nonzeros)" : distribution.rawValue }
        static let sketches = [1, 2, 4].map { Setup(distribution: .sketch, nonzeros: $0) }
        static let all = [Setup(distribution: .rademacher), Setup(distribution: .gaussian)] + sketches
    }

    @Test(arguments: [Setup(distribution: .rademacher)] + Setup.sketches)
    func projectionEqualsAnExplicitMatrix(setup: Setup) throws {
        let m = try Self.model()
        let computer = try GradientComputer(model: m, prefixes: ["all"])
        let K = 70
        let projector = setup.projector(K, seed: 3)
        let texts = Self.texts(5)
        let block = try computer.gradients(TokenBatch(sequences: texts), output: .everyLogit)
        let f = projector.project(block, computer: computer)
        let g = computer.materialize(block)
        // Explicit R, tensor by tensor, in the subset's compact order.
        let P = computer.subset.count
        var R = [Float](repeating: 0, count: P * K)  // row j = column j of R
        for ti in computer.subset.tensorIndices {
            let t = m.layout.tensors[ti]
            R.withUnsafeMutableBufferPointer {
                projector.generate(
                    projector.generator(for: t.name), columns: 0..<t.count,
                    into: $0.baseAddress! + computer.subset.compactOffsets[ti]! * K)
            }
        }
        var worst: Float = 0
        for row in 0..<(block.outputs * texts.count) {
            for k in 0..<K {
                var s: Float = 0
                for j in 0..<P { s += g[row * P + j] * R[j * K + k] }
                worst = max(worst, abs(s - f[row * K + k]) / max(1, abs(s)))
            }
        }
        #expect(worst < 1e-4, "max relative difference \(worst)")
        if setup.distribution == .sketch {
            // s nonzeros +-1/sqrt(s) per column, in distinct rows; rows used evenly, signs balanced.
            let s = setup.nonzeros
            var perRow = [Int](repeating: 0, count: K)
            var positive = 0
            for j in 0..<P {
                let column = (0..<K).filter { R[j * K + $0] != 0 }
                #expect(column.count == s)
                for k in column {
                    #expect(abs(abs(R[j * K + k]) - 1 / Float(s).squareRoot()) < 1e-7)
                    perRow[k] += 1
                    if R[j * K + k] > 0 { positive += 1 }
                }
            }
            let expected = Double(P * s) / Double(K)
            #expect(
                perRow.allSatisfy { abs(Double($0) - expected) < 5 * expected.squareRoot() }, "bucket loads \(perRow)")
            #expect(abs(Double(positive) / Double(P * s) - 0.5) < 0.02)
            return
        }
        // Rademacher entries are +-1/sqrt(K), and each of the K positions is positive
        // for about half of the columns.
        #expect(R.allSatisfy { abs(abs($0) - 1 / Float(K).squareRoot()) < 1e-7 })
        for k in 0..<K {
            let positive = (0..<P).filter { R[$0 * K + k] > 0 }.count
            #expect(abs(Double(positive) / Double(P) - 0.5) < 0.05, "position \(k): \(positive) of \(P) positive")
        }
    }

    /// The featurizer's sketch path streams each text's gradient of each tensor into the
    /// sketch as the backward pass produces it: the same numbers, bit for bit, as sketching
    /// the stored per-example gradients, whose gradients the stream reproduces exactly.
    @Test(arguments: [false, true])
    func streamedSketchEqualsTheSketchOfStoredGradients(perLayer: Bool) throws {
        let m = try Self.model()
        let computer = try GradientComputer(model: m, prefixes: ["all"])
        let texts = Self.texts(7)
        let batch = TokenBatch(sequences: texts)
        let projector = Setup(distribution: .sketch, nonzeros: 2).projector(48, seed: 6)
        let codes = SketchCodes(projector: projector, computer: computer)
        let stored = try computer.gradients(batch, output: .everyLogit)
        let acc = SketchAccumulator(codes: codes, outputs: stored.outputs, texts: texts.count, perLayer: perLayer)
        var streamed = [Float](repeating: 0, count: stored.dense.count)
        let Pd = computer.dense.count
        let B = texts.count
        let r = try computer.streamOutputs(
            batch, output: .everyLogit,
            sink: { o, t, b, g in
                acc.add(output: o, tensor: t, text: b, gradient: g)
                let at = (o * B + b) * Pd + computer.dense.compactOffsets[t]!
                for k in 0..<m.layout.tensors[t].count { streamed[at + k] = g[k] }
            }, rows: { o, rows in acc.addTokenRows(output: o, rows: rows, batch: batch) })
        #expect(streamed == stored.dense && r.logits == stored.logits)
        #expect(acc.features == projector.project(stored, computer: computer, perLayer: perLayer))
    }

    /// The exact pNTK of `texts` and the sketched one for a seed (n x n, Double).
    static func kernels(_ computer: GradientComputer<Float>, _ texts: [[Int32]], setup: Setup, K: Int) throws
        -> (exact: [Double], projected: (UInt64) throws -> [Double])
    {
        let exact = try ExactKernel.compute(computer, a: texts, b: nil, kind: .pntk).total.map(Double.init)
        let n = texts.count
        return (
            exact,
            { seed in
                let f = try Self.features(computer, setup.projector(K, seed: seed), texts, batch: 5)
                var k = [Double](repeating: 0, count: n * n)
                for x in 0..<n {
                    for y in 0..<n {
                        var sum = 0.0
                        for c in 0..<K { sum += Double(f[x * K + c]) * Double(f[y * K + c]) }
                        k[x * n + y] = sum
                    }
                }
                return k
            }
        )
    }

    /// Unbiased: the mean of the sketched kernel over m seeds approaches the exact kernel,
    /// its error shrinking like 1/sqrt(m) (root-mean-square over disjoint seed sets).
    @Test(arguments: Setup.sketches)
    func sketchIsUnbiased(setup: Setup) throws {
        let computer = try GradientComputer(model: try Self.model(), prefixes: ["all"])
        let (exact, projected) = try Self.kernels(computer, Self.texts(10), setup: setup, K: 64)
        let norm = exact.map { $0 * $0 }.reduce(0, +).squareRoot()
        let draws = try (0..<64).map { try projected(UInt64(1000 + $0)) }
        func meanError(_ group: ArraySlice<[Double]>) -> Double {
            var mean = [Double](repeating: 0, count: exact.count)
            for d in group { for i in mean.indices { mean[i] += d[i] / Double(group.count) } }
            return zip(mean, exact).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot() / norm
        }
        func rms(_ m: Int) -> Double {
            let errors = stride(from: 0, to: 64, by: m).map { meanError(draws[$0..<($0 + m)]) }
            return (errors.map { $0 * $0 }.reduce(0, +) / Double(errors.count)).squareRoot()
        }
        let e1 = rms(1)
        let e4 = rms(4)
        let e16 = rms(16)
        let e32 = meanError(draws[0..<32])
        #expect(e4 / e1 > 0.35 && e4 / e1 < 0.7, "errors \(e1), \(e4), \(e16)")
        #expect(e16 / e4 > 0.35 && e16 / e4 < 0.7, "errors \(e1), \(e4), \(e16)")
        #expect(e32 < 0.3 * e1, "mean of 32 seeds: \(e32), one seed: \(e1)")
    }

    /// Every projector here has E<Rg, Rg'> = <g, g'> and, for Rademacher and any sketch,
    /// Var<Rg, Rg'> = (|g|^2 |g'|^2 + <g, g'>^2 - 2 sum_i g_i^2 g'_i^2) / K (a sketch's
    /// buckets are uniform and its signs independent, so s does not change it; Gaussian
    /// lacks the last term). The mean squared error of the kernel over seeds must match
    /// this sum over pairs: the sketch is as accurate as the dense projection it replaces.
    @Test(arguments: Setup.all)
    func meanSquaredErrorMatchesTheVarianceFormula(setup: Setup) throws {
        let m = try Self.model()
        let computer = try GradientComputer(model: m, prefixes: ["all"])
        let texts = Self.texts(8)
        let n = 8
        let K = 64
        let g = computer.materialize(try computer.gradients(TokenBatch(sequences: texts), output: .pseudoNTK)).map(
            Double.init)
        let P = g.count / n
        var expected = 0.0
        for x in 0..<n {
            for y in 0..<n {
                var gx = 0.0
                var gy = 0.0
                var dot = 0.0
                var fourth = 0.0
                for i in 0..<P {
                    let a = g[x * P + i]
                    let b = g[y * P + i]
                    gx += a * a
                    gy += b * b
                    dot += a * b
                    fourth += a * a * b * b
                }
                expected += (gx * gy + dot * dot - (setup.distribution == .gaussian ? 0 : 2 * fourth)) / Double(K)
            }
        }
        let (exact, projected) = try Self.kernels(computer, texts, setup: setup, K: K)
        let seeds = 256
        var observed = 0.0
        for seed in 0..<seeds {
            observed +=
                zip(try projected(UInt64(500 + seed)), exact).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Double(seeds)
        }
        #expect(
            observed / expected > 0.8 && observed / expected < 1.25,
            "mean squared error \(observed), formula \(expected)")
    }

    @Test(arguments: Setup.all)
    func errorFallsLikeOneOverSqrtKAndIsUnbiased(setup: Setup) throws {
        let m = try Self.model()
        let computer = try GradientComputer(model: m, prefixes: ["all"])
        let texts = Self.texts(12)
        let exact = try ExactKernel.compute(computer, a: texts, b: nil, kind: .pntk).total.map(Double.init)
        let norm = exact.map { $0 * $0 }.reduce(0, +).squareRoot()
        func projected(_ K: Int, seed: UInt64) throws -> [Double] {
            let f = try Self.features(computer, setup.projector(K, seed: seed), texts, batch: 5)
            let n = texts.count
            return (0..<(n * n)).map { i in
                let x = i / n
                let y = i % n
                return (0..<K).map { Double(f[x * K + $0]) * Double(f[y * K + $0]) }.reduce(0, +)
            }
        }
        func relError(_ k: [Double]) -> Double {
            zip(k, exact).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot() / norm
        }
        // Root-mean-square error over seeds: its expectation scales exactly as 1/sqrt(K),
        // while single draws are heavy-tailed (a few diagonal entries dominate).
        var errors: [Double] = []
        for K in [256, 1024, 4096] {
            let each = try (0..<10).map { try relError(projected(K, seed: UInt64(10 + $0))) }
            errors.append((each.map { $0 * $0 }.reduce(0, +) / Double(each.count)).squareRoot())
        }
        let r1 = errors[1] / errors[0]
        let r2 = errors[2] / errors[1]
        #expect(r1 > 0.35 && r1 < 0.7, "errors \(errors)")
        #expect(r2 > 0.35 && r2 < 0.7, "errors \(errors)")
        // Unbiased: the mean over 16 seeds is much closer than one draw (about 1/4 as far).
        var mean = [Double](repeating: 0, count: exact.count)
        for s in 0..<16 { for (i, v) in try projected(256, seed: UInt64(100 + s)).enumerated() { mean[i] += v / 16 } }
        #expect(relError(mean) < 0.45 * errors[0], "mean error \(relError(mean)) vs single \(errors[0])")
    }

    @Test(arguments: [Setup(distribution: .rademacher)] + Setup.sketches)
    func featuresAreBitIdenticalAcrossBatchSizesThreadsAndShards(setup: Setup) throws {
        let texts = Self.texts(41)
        var results: [[Float]] = []
        for (threads, batch) in [(1, 41), (2, 7), (3, 16), (2, 1)] {
            let m = try Self.model(threads: threads)
            let computer = try GradientComputer(model: m, prefixes: ["all"])
            let projector = setup.projector(96, seed: 5, threads: threads)
            results.append(try Self.features(computer, projector, texts, batch: batch, output: .everyLogit))
        }
        // Two shards of the data, processed separately and concatenated.
        let m = try Self.model(threads: 2)
        let computer = try GradientComputer(model: m, prefixes: ["all"])
        let projector = setup.projector(96, seed: 5)
        results.append(
            try Self.features(computer, projector, Array(texts[0..<20]), batch: 8, output: .everyLogit)
                + Self.features(computer, projector, Array(texts[20...]), batch: 13, output: .everyLogit))
        for r in results.dropFirst() { #expect(r == results[0]) }
    }

    /// What `featurize --kernel embedding` stores: e(x) and the logits of a row-invariant
    /// forward pass.
    @Test func embeddingsAndLogitsAreBitIdenticalAcrossBatchSizesAndThreads() throws {
        let texts = Self.texts(41)
        var results: [[Float]] = []
        for (threads, batch) in [(1, 41), (2, 7), (3, 16), (2, 1)] {
            let m = try Self.model(threads: threads)
            var embeddings: [Float] = []
            var logits: [Float] = []
            for s in stride(from: 0, to: texts.count, by: batch) {
                logits += try m.forward(
                    TokenBatch(sequences: Array(texts[s..<min(texts.count, s + batch)])), rowInvariant: true)
                embeddings += m.lastEmbeddings()
            }
            results.append(embeddings + logits)
        }
        for (i, r) in results.enumerated().dropFirst() { #expect(r == results[0], "configuration \(i) differs") }
    }

    @Test(arguments: [Setup(distribution: .rademacher), Setup(distribution: .sketch, nonzeros: 2)])
    func perLayerFeaturesAreTheGroupsProjectionsAndSumToTheWhole(setup: Setup) throws {
        let m = try Self.model()
        let all = try GradientComputer(model: m, prefixes: ["all"])
        let projector = setup.projector(64, seed: 4)
        let texts = Self.texts(9)
        let block = try all.gradients(TokenBatch(sequences: texts), output: .everyLogit)
        let layers = projector.project(block, computer: all, perLayer: true)
        let whole = projector.project(block, computer: all)
        let slab = block.outputs * texts.count * 64
        #expect(all.groups.map(\.name) == ["embeddings", "blocks.0", "blocks.1", "norm", "head"])
        for (l, group) in all.groups.enumerated() {
            // R is keyed by tensor name: a group's part is that group projected alone.
            let only = try GradientComputer(model: m, prefixes: [group.name])
            let alone = projector.project(
                try only.gradients(TokenBatch(sequences: texts), output: .everyLogit), computer: only)
            #expect(Array(layers[(l * slab)..<((l + 1) * slab)]) == alone, "group \(group.name)")
        }
        for i in 0..<slab {
            let sum = (0..<all.groups.count).map { layers[$0 * slab + i] }.reduce(0, +)
            #expect(abs(sum - whole[i]) <= 1e-4 * max(1, abs(whole[i])))
        }
    }
}
