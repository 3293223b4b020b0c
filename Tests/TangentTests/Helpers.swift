import Foundation
import TangentData
import TangentTensor
import TangentTokenizer
import TangentTraining
import Testing

@testable import TangentModel

/// Deterministic pseudo-random numbers for tests.
struct TestRNG {
    var rng: CounterRNG
    var counter: UInt64 = 0
    init(_ seed: UInt64) { rng = CounterRNG.derive(seed, 77) }
    mutating func normal() -> Double {
        counter += 1
        return rng.normal(counter)
    }
    mutating func uniform() -> Double {
        counter += 1
        return rng.uniform(counter)
    }
    mutating func int(_ n: Int) -> Int { Int(uniform() * Double(n)) % n }
    mutating func vector(_ n: Int, scale: Double = 1) -> [Double] { (0..<n).map { _ in scale * normal() } }
}

/// Central finite differences of `f` at coordinates `indices` of `x`, compared with
/// `analytic`. Returns the largest relative error |a-n| / max(|a|+|n|, floor), where the
/// floor is 1e-4 of the largest analytic entry checked: entries that are exactly zero
/// in theory (e.g. the key bias under softmax) are then judged against the tensor's scale
/// instead of against rounding noise.
func maxFiniteDifferenceError(
    _ x: [Double], analytic: [Double], indices: [Int], h: Double = 1e-5, fivePoint: Bool = false,
    _ f: ([Double]) -> Double
) -> (error: Double, index: Int) {
    var worst = 0.0
    var at = -1
    var xp = x
    let floor = max(1e-12, 1e-4 * (indices.map { abs(analytic[$0]) }.max() ?? 0))
    for i in indices {
        let x0 = xp[i]
        xp[i] = x0 + h
        let fp = f(xp)
        xp[i] = x0 - h
        let fm = f(xp)
        var numeric = (fp - fm) / (2 * h)
        if fivePoint {
            // O(h^4) truncation: a larger step keeps rounding small in deep networks, whose
            // outputs are large beside a small gradient entry.
            xp[i] = x0 + 2 * h
            let fpp = f(xp)
            xp[i] = x0 - 2 * h
            let fmm = f(xp)
            numeric = (8 * (fp - fm) - (fpp - fmm)) / (12 * h)
        }
        xp[i] = x0
        let err = abs(analytic[i] - numeric) / max(floor, abs(analytic[i]) + abs(numeric))
        if err > worst {
            worst = err
            at = i
        }
    }
    return (worst, at)
}

/// A tiny model configuration for gradient checks.
func tinyConfig(pooling: ModelConfig.Pooling = .mean, classes: Int = 3) -> ModelConfig {
    ModelConfig(
        vocabSize: 23, maxLen: 9, dModel: 8, nHeads: 2, nLayers: 2, dFF: 12, nClasses: classes, pooling: pooling)
}

/// Random token sequences (BOS first) of the given lengths.
func randomSequences(_ lengths: [Int], vocab: Int, rng: inout TestRNG) -> [[Int32]] {
    lengths.map { L in [Int32(2)] + (1..<L).map { _ in Int32(4 + rng.int(vocab - 4)) } }
}

/// Path of a test fixture file.
func fixture(_ name: String) -> URL {
    Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)!
}

/// Solves the dense system A x = b ([n, n] row-major) by Gaussian elimination with partial
/// pivoting: an independent reference for the library's solvers.
func solveDense(_ a: [Double], _ b: [Double], n: Int) -> [Double] {
    var m = a
    var v = b
    for col in 0..<n {
        let piv = (col..<n).max { abs(m[$0 * n + col]) < abs(m[$1 * n + col]) }!
        if piv != col {
            for j in 0..<n { m.swapAt(col * n + j, piv * n + j) }
            v.swapAt(col, piv)
        }
        for r in (col + 1)..<n {
            let f = m[r * n + col] / m[col * n + col]
            if f == 0 { continue }
            for j in col..<n { m[r * n + j] -= f * m[col * n + j] }
            v[r] -= f * v[col]
        }
    }
    var x = [Double](repeating: 0, count: n)
    for r in stride(from: n - 1, through: 0, by: -1) {
        x[r] = (v[r] - ((r + 1)..<n).map { m[r * n + $0] * x[$0] }.reduce(0, +)) / m[r * n + r]
    }
    return x
}

/// A small one-block classifier trained on `train` with the 600-piece fixture tokenizer
/// (labels in sorted order); `onEpochEnd` sees each epoch's model.
func trainSmallClassifier(
    _ train: [LabeledText], dModel: Int, seed: UInt64, options: TrainingOptions,
    onEpochEnd: (TransformerClassifier<Float>, EpochSummary) throws -> Void = { _, _ in }
) throws -> Classifier {
    let tok = try Tokenizer(contentsOf: fixture("tokenizer-600.model"))
    var config = ModelConfig(
        vocabSize: tok.vocabSize, maxLen: 24, dModel: dModel, nHeads: 2, nLayers: 1, dFF: 2 * dModel, nClasses: 2,
        pooling: .mean)
    config.padID = Int(tok.padID)
    config.bosID = Int(tok.bosID)
    let labels = try LabelSet(collecting: train)
    let model = try TransformerClassifier<Float>.initialized(config: config, seed: seed, threads: 2)
    let set = EncodedSet(
        sequences: try train.map { try TextEncoding.encode($0.text, tokenizer: tok, config: config) },
        labels: try labels.indices(of: train, source: "train"))
    _ = try Trainer(model: model, options: options).train(set, test: nil, onEpochEnd: { try onEpochEnd(model, $0) })
    return try Classifier(model: model, tokenizer: tok, labels: labels)
}

/// Runs a suite's tests with single-threaded BLAS, the process-wide setting the `tangent`
/// entry point makes (models do not touch it themselves).
struct SingleThreadedBLAS: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void)
        async throws
    {
        BLASThreads.set(1)
        try await function()
    }
}

extension Trait where Self == SingleThreadedBLAS {
    static var singleThreadedBLAS: SingleThreadedBLAS { SingleThreadedBLAS() }
}
