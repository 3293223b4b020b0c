import ArgumentParser

/// `tangent`: train, run and explain transformer text classifiers.
@main
struct Tangent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tangent",
        abstract: "Transformer text classifiers with hand-written backward passes, for data attribution with neural tangent kernels.",
        subcommands: [TokenizerCommand.self, Train.self, Predict.self, Evaluate.self, Attribute.self, Compare.self, Poison.self, RenderReport.self, Featurize.self, Kernel.self, ExactKernelCommand.self, Bench.self]
    )
}
