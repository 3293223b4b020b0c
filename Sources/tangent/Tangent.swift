import ArgumentParser
import Foundation
import TangentTensor

/// `tangent`: train, run and explain transformer text classifiers.
@main
struct Tangent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tangent",
        abstract:
            "Transformer text classifiers with hand-written backward passes, for data attribution with neural tangent kernels.",
        subcommands: [
            TokenizerCommand.self, Train.self, Predict.self, Evaluate.self, Attribute.self, Compare.self, Poison.self,
            LDS.self, AuditCommand.self, RenderReport.self, Featurize.self, Merge.self, Kernel.self,
            ExactKernelCommand.self, Bench.self,
        ]
    )

    /// The process-wide settings, made once here rather than by whichever object is built
    /// first: BLAS single-threaded (the toolkit splits batches over cores itself), and a
    /// bad `TANGENT_THREADS` refused for every command, not only those with `--threads`.
    static func main() {
        BLASThreads.set(1)
        do {
            _ = try ThreadOptions.environmentCount()
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        main(Tangent.expandingEmptyValues(Array(CommandLine.arguments.dropFirst())))
    }

    /// `--option=` with nothing after the sign is an empty value (as `--error-dims ""`),
    /// which the argument parser would otherwise report as a missing value.
    static func expandingEmptyValues(_ args: [String]) -> [String] {
        var out: [String] = []
        for (i, a) in args.enumerated() {
            // After `--`, arguments are values, not options.
            if a == "--" {
                out += args[i...]
                break
            }
            if a.hasPrefix("--"), a.hasSuffix("="), a.count > 3, !a.dropLast().contains("=") {
                out += [String(a.dropLast()), ""]
            } else {
                out.append(a)
            }
        }
        return out
    }
}
