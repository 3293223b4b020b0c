import Foundation

/// Typed reads of values that JSONSerialization parsed. Its numbers and booleans are both
/// NSNumber, and `as? Bool` / `as? Int` convert between them (1 reads as true, true as
/// 1), so a config field of the wrong JSON type would pass silently; these do not.
public enum JSONField {
    /// Whether `value` is a JSON `true` or `false`.
    public static func isBoolean(_ value: Any?) -> Bool {
        guard let n = value as? NSNumber, !(value is NSDecimalNumber) else { return false }
        return String(cString: n.objCType) == "c"
    }

    /// A JSON boolean; nil for anything else (numbers and strings included).
    public static func boolean(_ value: Any?) -> Bool? {
        isBoolean(value) ? (value as? NSNumber)?.boolValue : nil
    }

    /// A JSON number that is a whole number within Int's range; nil for booleans,
    /// fractions, strings and anything else.
    public static func integer(_ value: Any?) -> Int? {
        guard let n = value as? NSNumber, !isBoolean(value) else { return nil }
        let d = n.doubleValue
        guard d.isFinite, d == d.rounded(), abs(d) < 9.0e18 else { return nil }
        if let i = value as? Int, Double(i) == d { return i }
        return Int(d)
    }

    /// A JSON number (not a boolean), as a Double; nil for anything else.
    public static func number(_ value: Any?) -> Double? {
        guard let n = value as? NSNumber, !isBoolean(value) else { return nil }
        return n.doubleValue
    }

    /// `value` as JSON would write it (`true`, not `1`; strings quoted).
    public static func text(_ value: Any?) -> String {
        if let b = boolean(value) { return b ? "true" : "false" }
        if let s = value as? String { return "\"\(s)\"" }
        if value == nil || value is NSNull { return "null" }
        return "\(value!)"
    }

    /// The JSON type of `value` in words, for messages ("a string", "a boolean").
    public static func typeName(_ value: Any?) -> String {
        switch value {
        case nil, is NSNull: return "null"
        case is String: return "a string"
        case _ where isBoolean(value): return "a boolean"
        case is NSNumber: return "a number"
        case is [Any]: return "a list"
        case is [String: Any]: return "an object"
        default: return "of another type"
        }
    }
}
