import Foundation
import TangentIO

/// Typed, bounded reads of a Hugging Face `config.json`'s fields: each error names the
/// file and the field, so that every model type's parsing says the same thing about the
/// same mistake.
struct ConfigFields {
    let json: [String: Any]
    /// The file, for errors.
    let source: String

    func fail(_ field: String, _ why: String) -> ModelError { ModelError("\(source): '\(field)' \(why)") }

    /// The field's value, nil when it is absent or JSON null.
    func value(_ key: String) -> Any? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        return v
    }

    /// A required whole number within `range`.
    func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int {
        guard let v = JSONField.integer(json[key]) else {
            let why =
                json[key] == nil
                ? "is missing"
                : "is \(JSONField.typeName(json[key])) (\(JSONField.text(json[key]))), not a whole number"
            throw fail(key, why)
        }
        guard range.contains(v) else { throw fail(key, "is \(v), outside \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    /// A whole number within `range`, `fallback` when the field is absent.
    func int(_ key: String, _ range: ClosedRange<Int>, default fallback: Int) throws -> Int {
        json[key] == nil ? fallback : try int(key, range)
    }

    /// A whole number of any size, `fallback` when absent or null (bounded by the caller).
    func whole(_ key: String, default fallback: Int) throws -> Int {
        guard let v = value(key) else { return fallback }
        guard let n = JSONField.integer(v) else {
            throw fail(key, "is \(JSONField.typeName(v)) (\(v)), not a whole number")
        }
        return n
    }

    /// `true` or `false`, `fallback` when absent or null.
    func flag(_ key: String, default fallback: Bool) throws -> Bool {
        guard let v = value(key) else { return fallback }
        guard let b = JSONField.boolean(v) else {
            throw fail(key, "is \(JSONField.typeName(v)) (\(v)), not true or false")
        }
        return b
    }

    /// A number in the open interval (0, 1) (epsilons, initializer ranges): `fallback`
    /// when absent; with no fallback the field is required.
    func fraction(_ key: String, default fallback: Double?) throws -> Double {
        guard let fallback else {
            guard let x = JSONField.number(json[key]), x > 0, x < 1 else {
                throw fail(key, "is missing or not in (0, 1)")
            }
            return x
        }
        if let v = json[key], JSONField.number(v) == nil {
            throw fail(key, "is \(JSONField.typeName(v)), not a number")
        }
        let x = JSONField.number(json[key]) ?? fallback
        guard x > 0, x < 1 else { throw fail(key, "is \(x), not in (0, 1)") }
        return x
    }

    /// An activation's name among `HFEncoderConfig.supportedActivations`, `fallback` when absent.
    func activationName(_ key: String, default fallback: String) throws -> String {
        if let a = json[key], !(a is String) {
            throw fail(key, "is \(JSONField.typeName(a)) (\(a)), not an activation's name")
        }
        let name = json[key] as? String ?? fallback
        guard HFEncoderConfig.supportedActivations.contains(name) else {
            throw fail(key, "is '\(name)'; supported: \(HFEncoderConfig.supportedActivations.joined(separator: ", "))")
        }
        return name
    }

    /// The GELU an activation field names: "gelu_new" the tanh approximation, "gelu" the exact one.
    func activation(_ key: String, default fallback: String = "gelu") throws -> HFEncoderConfig.Activation {
        try activationName(key, default: fallback) == "gelu_new" ? .tanh : .erf
    }
}
