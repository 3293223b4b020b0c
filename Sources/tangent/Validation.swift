import ArgumentParser
import Foundation
import TangentFeatures
import TangentSurrogate
import TangentTensor

// Every numeric option is checked here at parse time (`validate()`), so a bad value is a
// usage error naming the option; preconditions deeper down are for programmer errors only.
// Numeric options parse `.unconditional`ly, so `--epochs -1` reaches these checks instead
// of being taken for an option ("Missing value").

/// Checks of option values, each throwing a `ValidationError` that names the option.
enum Check {
    static func positive(_ value: Int, _ option: String) throws {
        guard value > 0 else { throw ValidationError("\(option) must be positive, got \(value)") }
    }

    static func positive(_ value: Int?, _ option: String) throws {
        if let value { try positive(value, option) }
    }

    static func atLeast(_ value: Int, _ minimum: Int, _ option: String) throws {
        guard value >= minimum else { throw ValidationError("\(option) must be at least \(minimum), got \(value)") }
    }

    static func positive(_ value: Double, _ option: String) throws {
        guard value > 0, value.isFinite else { throw ValidationError("\(option) must be positive, got \(value)") }
    }

    static func nonNegative(_ value: Double, _ option: String) throws {
        guard value >= 0, value.isFinite else {
            throw ValidationError("\(option) must be zero or positive, got \(value)")
        }
    }

    /// A rate such as dropout: in [0, 1).
    static func rate(_ value: Double, _ option: String) throws {
        guard value >= 0, value < 1 else {
            throw ValidationError("\(option) must be at least 0 and below 1, got \(value)")
        }
    }

    /// A size in bytes: a number with an optional unit B, KiB, MiB, GiB (or K, M, G, KB,
    /// MB, GB, read as powers of 1024), e.g. `2GiB`, `512M`.
    static func bytes(_ value: String, _ option: String) throws -> Int {
        let s = value.trimmingCharacters(in: .whitespaces)
        let digits = s.prefix { $0.isNumber || $0 == "." }
        let unit = s.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
        let factors: [String: Double] = [
            "": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1_048_576, "mb": 1_048_576, "mib": 1_048_576,
            "g": 1_073_741_824, "gb": 1_073_741_824, "gib": 1_073_741_824, "t": 1_099_511_627_776,
            "tb": 1_099_511_627_776, "tib": 1_099_511_627_776,
        ]
        guard let number = Double(digits), let factor = factors[unit], number > 0, (number * factor).isFinite,
            number * factor < 1e18
        else {
            throw ValidationError("\(option) must be a positive size such as 512MiB or 2GiB, got '\(value)'")
        }
        return Int(number * factor)
    }

    /// The largest projected dimension K: K Floats per text and output must stay far
    /// from Int's range, and no kernel here gains from more.
    static let maximumProjDim = 1 << 24

    /// `--proj-dim`: positive and at most `maximumProjDim`.
    static func projDim(_ value: Int) throws {
        try positive(value, "--proj-dim")
        guard value <= maximumProjDim else {
            throw ValidationError("--proj-dim: K = \(value) is above the largest projected dimension \(maximumProjDim)")
        }
    }

    /// `--selection-texts` must leave two texts per fold.
    static func selectionSample(_ value: Int, folds: Int) throws {
        guard value >= 2 * folds else {
            throw ValidationError(
                "--selection-texts \(value) is too few for \(folds)-fold selection of lambda; give at least \(2 * folds)"
            )
        }
    }

    /// A comma-separated list with at least one entry and no empty ones, entries trimmed.
    static func list(_ value: String, _ option: String) throws -> [String] {
        let items = value.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard items.contains(where: { !$0.isEmpty }) else {
            throw ValidationError("\(option) is empty; give at least one entry")
        }
        guard !items.contains(where: \.isEmpty) else {
            throw ValidationError("\(option) '\(value)' has an empty entry")
        }
        return items
    }
}

/// `--threads`, shared by every command that computes; also checks `TANGENT_THREADS`,
/// which is read here only: the library takes the resulting count as an argument.
struct ThreadOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads, 1 to \(Threads.maximum) (default: TANGENT_THREADS, or all cores).")
    var threads: Int?

    func validate() throws {
        if let threads {
            guard (1...Threads.maximum).contains(threads) else {
                throw ValidationError("--threads must be from 1 to \(Threads.maximum), got \(threads)")
            }
        } else {
            _ = try ThreadOptions.environmentCount()
        }
    }

    /// The thread count to use: --threads, else TANGENT_THREADS, else every core.
    var count: Int { threads ?? (try? ThreadOptions.environmentCount()) ?? Threads.cores }

    /// The thread count set by `TANGENT_THREADS`, nil when unset; throws when it is not a
    /// whole number from 1 to `Threads.maximum`.
    static func environmentCount() throws -> Int? {
        guard let s = ProcessInfo.processInfo.environment["TANGENT_THREADS"] else { return nil }
        guard let n = Int(s.trimmingCharacters(in: .whitespaces)), (1...Threads.maximum).contains(n) else {
            throw ValidationError("TANGENT_THREADS='\(s)' is not a whole number from 1 to \(Threads.maximum)")
        }
        return n
    }
}

/// `--projector` and `--sketch-nonzeros`, shared by every command that projects gradients.
struct ProjectorOptions: ParsableArguments {
    @Option(
        name: .customLong("projector"),
        help:
            "Projection of gradients: sketch (sparse sign hash, s additions per coordinate), rademacher or gaussian (dense, K multiply-adds per coordinate). (default: \(ProjectorChoice.default.distribution.rawValue))"
    )
    var projectorOption: Projector.Distribution?
    @Option(
        name: .customLong("sketch-nonzeros"), parsing: .unconditional,
        help: "Nonzeros per coordinate of the sketch: 1, 2 or 4. (default: 1)")
    var sketchNonzerosOption: Int?

    /// The options as given or defaulted.
    var projector: Projector.Distribution { projectorOption ?? ProjectorChoice.default.distribution }
    var sketchNonzeros: Int { sketchNonzerosOption ?? 1 }
    /// Whether the command line named a projection at all (a feature file's own projection
    /// must not silently override one that was asked for).
    var given: Bool { projectorOption != nil || sketchNonzerosOption != nil }

    func validate() throws {
        guard Projector.sketchNonzeros.contains(sketchNonzeros) else {
            throw ValidationError("--sketch-nonzeros must be 1, 2 or 4, got \(sketchNonzeros)")
        }
        if projector != .sketch, sketchNonzeros != 1 {
            throw ValidationError("--sketch-nonzeros applies to --projector sketch only")
        }
    }

    /// The projector asked for.
    var choice: ProjectorChoice { ProjectorChoice(projector, nonzeros: sketchNonzeros) }

    /// K must leave room for s distinct buckets.
    func check(projDim: Int) throws {
        if choice.distribution == .sketch, projDim < sketchNonzeros {
            throw ValidationError("--proj-dim \(projDim) is below --sketch-nonzeros \(sketchNonzeros)")
        }
    }
}

/// `--selection` and `--folds`: how every command that fits a surrogate chooses lambda.
struct SelectionOptions: ParsableArguments {
    @Option(
        help:
            "How the surrogate's lambda is chosen on the training texts by k-fold cross-validation: network-tau (Kendall tau with the network's log-odds), network-ce (cross-entropy against the network's probabilities) or label-ce (against the true labels)."
    )
    var selection: LambdaSelector.Criterion = .networkTau
    @Option(parsing: .unconditional, help: "Cross-validation folds of the lambda selection.")
    var folds: Int = 5

    func validate() throws {
        guard folds >= 2 else { throw ValidationError("--folds must be at least 2, got \(folds)") }
    }

    /// The selector asked for; `seed` deals the training texts into folds.
    func selector(seed: UInt64) -> LambdaSelector {
        LambdaSelector(folds: folds, criterion: selection, seed: seed)
    }
}
