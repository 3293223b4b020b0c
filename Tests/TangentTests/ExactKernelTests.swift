import TangentFeatures
import TangentTensor
import Testing

@testable import TangentModel

/// Exact kernels against Gram matrices of explicitly materialized per-example
/// gradients, and the identities of the kernels spec.
@Suite(.singleThreadedBLAS) struct ExactKernelTests {
    static func setup(classes: Int = 3, seed: UInt64 = 51) throws -> (
        TransformerClassifier<Double>, [[Int32]], [[Int32]]
    ) {
        let config = tinyConfig(classes: classes)
        let model = try TransformerClassifier<Double>.initialized(config: config, seed: seed, threads: 2)
        var rng = TestRNG(seed)
        // Larger weights than the 0.02 initialization so every layer contributes.
        model.setParameters(
            model.parameterArray.map { $0 == 1 ? 1 + 0.3 * rng.normal() : $0 * 15 + 0.05 * rng.normal() })
        // Repeated tokens inside and across texts exercise the sparse token-table part.
        let a = randomSequences([5, 3, 8, 2, 6], vocab: 8, rng: &rng)
        let b = randomSequences([4, 7, 1], vocab: 8, rng: &rng)
        return (model, a, b)
    }

    /// Per-class gradients over `subset`, materialized densely: [C][n][P].
    static func classGradients(_ model: TransformerClassifier<Double>, _ seqs: [[Int32]], _ subset: ParameterSubset)
        throws -> [[[Double]]]
    {
        let C = model.config.nClasses
        let batch = TokenBatch(sequences: seqs)
        try model.forward(batch)
        return try (0..<C).map { c in
            var out = [Double](repeating: 0, count: seqs.count * subset.count)
            let seed = (0..<(seqs.count * C)).map { $0 % C == c ? 1.0 : 0.0 }
            out.withUnsafeMutableBufferPointer { model.perExampleGradients(seed: seed, subset: subset, into: $0) }
            _ = try model.forward(batch)
            return (0..<seqs.count).map { Array(out[($0 * subset.count)..<(($0 + 1) * subset.count)]) }
        }
    }

    static func dot(_ x: [Double], _ y: [Double]) -> Double { zip(x, y).map(*).reduce(0, +) }

    @Test(arguments: [["all"], ["embeddings"], ["blocks.1", "head"], ["head"]])
    func exactKernelsEqualGramOfMaterializedGradients(prefixes: [String]) throws {
        let (model, a, b) = try Self.setup()
        let C = model.config.nClasses
        let computer = try GradientComputer(model: model, prefixes: prefixes)
        let g = try Self.classGradients(model, a, computer.subset)
        let h = try Self.classGradients(model, b, computer.subset)
        // eNTK blocks <g_c(x), g_c'(x')> from materialized gradients.
        func entk(_ x: Int, _ y: Int, _ c: Int, _ d: Int) -> Double { Self.dot(g[c][x], h[d][y]) }
        func selfA(_ x: Int, _ c: Int, _ d: Int) -> Double { Self.dot(g[c][x], g[d][x]) }
        func selfB(_ y: Int, _ c: Int, _ d: Int) -> Double { Self.dot(h[c][y], h[d][y]) }
        for kind in NTKKind.allCases {
            let r = try ExactKernel.compute(computer, a: a, b: b, kind: kind, blockSize: 2)
            var worst = 0.0
            for x in 0..<a.count {
                for y in 0..<b.count {
                    var expected: Double
                    var da: Double
                    var db: Double
                    switch kind {
                    case .pntk, .pntkNorm:
                        // pntk = (1/C) sum of the eNTK block.
                        expected =
                            (0..<C).flatMap { c in (0..<C).map { d in entk(x, y, c, d) } }.reduce(0, +) / Double(C)
                        da = (0..<C).flatMap { c in (0..<C).map { d in selfA(x, c, d) } }.reduce(0, +) / Double(C)
                        db = (0..<C).flatMap { c in (0..<C).map { d in selfB(y, c, d) } }.reduce(0, +) / Double(C)
                    case .trntk, .trntk0:
                        // trntk0 = trace of the eNTK block.
                        expected = (0..<C).map { entk(x, y, $0, $0) }.reduce(0, +)
                        da = (0..<C).map { selfA(x, $0, $0) }.reduce(0, +)
                        db = (0..<C).map { selfB(y, $0, $0) }.reduce(0, +)
                    }
                    if kind.normalized { expected /= (da * db).squareRoot() }
                    let got = r.total[x * b.count + y]
                    worst = max(worst, abs(got - expected) / max(1e-12, abs(expected)))
                    // Per-layer parts add up to the whole.
                    let sum = r.parts.map { $0.values[x * b.count + y] }.reduce(0, +)
                    #expect(abs(sum - got) <= 1e-12 * max(1, abs(got)))
                }
            }
            #expect(worst < 1e-10, "\(kind) over \(prefixes): relative error \(worst)")
        }
    }

    @Test func symmetricKernelEqualsTheTwoSetComputation() throws {
        let (model, a, _) = try Self.setup()
        let computer = try GradientComputer(model: model, prefixes: ["all"])
        let s = try ExactKernel.compute(computer, a: a, b: nil, kind: .trntk, blockSize: 2)
        let t = try ExactKernel.compute(computer, a: a, b: a, kind: .trntk, blockSize: 3)
        #expect(zip(s.total, t.total).map { abs($0 - $1) }.max()! < 1e-12)
        for x in 0..<a.count { #expect(abs(s.total[x * a.count + x] - 1) < 1e-12) }
        #expect(s.parts.map(\.group) == ["embeddings", "blocks.0", "blocks.1", "norm", "head"])
    }

    @Test func lastLayerPseudoNTKIsEmbeddingDotPlusOne() throws {
        let (model, a, b) = try Self.setup()
        let computer = try GradientComputer(model: model, prefixes: ["head"])
        let r = try ExactKernel.compute(computer, a: a, b: b, kind: .pntk)
        try model.forward(TokenBatch(sequences: a))
        let ea = model.lastEmbeddings()
        try model.forward(TokenBatch(sequences: b))
        let eb = model.lastEmbeddings()
        let D = model.config.dModel
        for x in 0..<a.count {
            for y in 0..<b.count {
                let e = Self.dot(Array(ea[(x * D)..<((x + 1) * D)]), Array(eb[(y * D)..<((y + 1) * D)])) + 1
                #expect(abs(r.total[x * b.count + y] - e) < 1e-12 * max(1, abs(e)))
            }
        }
    }

    @Test func logitGradientsMatchFiniteDifferences() throws {
        let (model, a, _) = try Self.setup(classes: 2)
        let computer = try GradientComputer(model: model, prefixes: ["all"])
        let block = try computer.gradients(TokenBatch(sequences: [a[2]]), output: .everyLogit)
        let full = computer.materialize(block)
        let theta = model.parameterArray
        let P = computer.subset.count
        var rng = TestRNG(3)
        let idx = (0..<200).map { _ in rng.int(P) } + Array(model.layout.tensor("head.weight")!.range)
        for c in 0..<2 {
            let (err, at) = maxFiniteDifferenceError(
                theta, analytic: Array(full[(c * P)..<((c + 1) * P)]), indices: idx
            ) { th in
                model.setParameters(th)
                return try! model.forward(TokenBatch(sequences: [a[2]]))[c]
            }
            #expect(err < 1e-5, "class \(c): relative error \(err) at \(at)")
        }
        model.setParameters(theta)
    }
}
