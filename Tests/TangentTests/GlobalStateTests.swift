import Foundation
import TangentKernels
import TangentTensor
import Testing

@testable import TangentModel

/// Building models and gradient computers leaves process-wide and per-model settings alone.
@Suite(.serialized, .singleThreadedBLAS) struct GlobalStateTests {
    @Test func buildingAModelLeavesBLASThreadsAlone() throws {
        BLASThreads.set(2)
        defer { BLASThreads.set(1) }
        _ = try TransformerClassifier<Float>.initialized(config: tinyConfig(), seed: 1, threads: 2)
        #expect(BLASThreads.current == 2)
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
