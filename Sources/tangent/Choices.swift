import ArgumentParser
import TangentAttribution
import TangentFeatures
import TangentModel
import TangentSurrogate
import TangentTokenizer
import TangentTraining

// Closed choices are the library's enums, parsed by ArgumentParser from their raw values:
// a bad value is refused with the option's name and the valid values, and --help lists
// the values from the enum, so the two cannot drift apart.
extension SurrogateKernel: ExpressibleByArgument {}
extension NTKKind: ExpressibleByArgument {}
extension ModelConfig.Pooling: ExpressibleByArgument {}
extension LearningRateSchedule.Decay: ExpressibleByArgument {}
extension Projector.Distribution: ExpressibleByArgument {}
extension LambdaSelector.Criterion: ExpressibleByArgument {}
extension TokenizerTrainingOptions.ModelType: ExpressibleByArgument {}

/// `featurize --kernel`: the stored feature kind, or a surrogate kernel's name for it.
extension FeatureKind: ExpressibleByArgument {
    public init?(argument: String) { self.init(kernelName: argument) }
    /// `ekfac` features need curvature fitted on training texts with labels: `attribute`,
    /// `compare`, `lds` and `audit` compute them (`--kernel ekfac`), so options taking a
    /// feature kind list the others.
    public static var allValueStrings: [String] { ["pntk", "trntk", "embedding", "grad"] }
}

/// `--kernels`: a comma-separated list of surrogate kernels, each named once.
struct KernelList: Sendable {
    let kernels: [SurrogateKernel]

    init(_ kernels: [SurrogateKernel]) { self.kernels = kernels }

    /// Parses the option's value; an unknown or repeated name is refused by name.
    init(parsing value: String) throws {
        var seen: Set<SurrogateKernel> = []
        kernels = try Check.list(value, "--kernels").map { name in
            guard let k = SurrogateKernel(rawValue: name) else {
                throw ValidationError("unknown kernel '\(name)'; valid: \(KernelList.valid)")
            }
            guard seen.insert(k).inserted else { throw ValidationError("--kernels names \(name) twice") }
            return k
        }
    }

    static var valid: String { SurrogateKernel.allCases.map(\.rawValue).joined(separator: ", ") }

    /// The option's help: what the list is for, the valid names and the default.
    static func help(_ what: String, default list: [SurrogateKernel]) -> ArgumentHelp {
        ArgumentHelp("\(what), comma-separated: \(valid). (default: \(list.map(\.rawValue).joined(separator: ",")))")
    }

    /// Kernels whose training side is stored features, which streamed scoring supports.
    static var streamable: String {
        SurrogateKernel.allCases.filter(StreamedAttribution.supports).map(\.rawValue).joined(separator: ", ")
    }
}

/// A comma-separated list of positive counts (`lds --ensemble-sizes`), in ascending order
/// without repeats.
struct CountList: Sendable {
    let counts: [Int]

    init(_ counts: [Int]) { self.counts = counts }

    /// Parses the option's value; an entry that is not a positive integer is refused by value.
    init(parsing value: String) throws {
        counts = Array(
            Set(
                try Check.list(value, "--ensemble-sizes").map { item in
                    guard let v = Int(item), v > 0 else {
                        throw ValidationError("--ensemble-sizes: '\(item)' is not a positive integer")
                    }
                    return v
                })
        ).sorted()
    }
}
