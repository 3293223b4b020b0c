import Foundation
import TangentFeatures
import TangentTensor
import Testing

@testable import TangentModel

/// Building models and gradient computers leaves process-wide and per-model settings alone.
@Suite(.serialized, .singleThreadedBLAS) struct GlobalStateTests {
    /// BLAS stays single-threaded (the setting every test and the CLI run with) when a model
    /// of 2 threads is built. The test must not change the process-wide setting itself:
    /// other suites run concurrently, and a multi-threaded sgemm under them would change
    /// their last bits.
    @Test func buildingAModelLeavesBLASThreadsAlone() throws {
        #expect(BLASThreads.current == 1)
        _ = try TransformerClassifier<Float>.initialized(config: tinyConfig(), seed: 1, threads: 2)
        #expect(BLASThreads.current == 1)
    }

    @Test func aGradientComputerDoesNotChangeTheModelsOtherPasses() throws {
        let m = try ProjectionTests.model(threads: 1)
        let batch = TokenBatch(sequences: ProjectionTests.texts(48))
        let before = try m.forward(batch)
        let perText = try m.forward(batch, rowInvariant: true)
        let computer = try GradientComputer(model: m, prefixes: ["all"])
        _ = try computer.gradients(batch, output: .pseudoNTK)
        // A plain forward after the computer ran is the plain forward from before, bit for
        // bit, and a row-invariant forward is what the computer sees.
        #expect(try m.forward(batch) == before)
        #expect(try m.forward(batch, rowInvariant: true) == perText)
        #expect(try computer.gradients(batch, output: .pseudoNTK).logits == perText)
    }
}
