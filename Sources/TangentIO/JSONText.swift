import Foundation

/// JSON text of values JSONSerialization parsed (or Swift values), written as
/// JSONSerialization writes them (keys sorted, indented) except that a floating-point
/// number stays one: JSONSerialization writes 2.0 as `2`, and transformers 5 refuses a
/// config whose float field (`initializer_cutoff_factor`, `rope_theta`) reads back as an
/// integer.
public enum JSONText {
    /// Pretty-printed JSON with sorted keys.
    public static func data(_ value: Any) throws -> Data {
        var out = ""
        try write(value, indent: 0, into: &out)
        return Data((out + "\n").utf8)
    }

    private static func write(_ value: Any, indent: Int, into out: inout String) throws {
        let pad = String(repeating: "  ", count: indent + 1)
        let close = String(repeating: "  ", count: indent)
        // An optional (as a record built in Swift may hold): its value, or null.
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            if let wrapped = mirror.children.first?.value {
                try write(wrapped, indent: indent, into: &out)
            } else {
                out += "null"
            }
            return
        }
        switch value {
        case let dict as [String: Any]:
            if dict.isEmpty {
                out += "{}"
                return
            }
            out += "{\n"
            for (i, key) in dict.keys.sorted().enumerated() {
                out += pad + quoted(key) + ": "
                try write(dict[key]!, indent: indent + 1, into: &out)
                out += i + 1 < dict.count ? ",\n" : "\n"
            }
            out += close + "}"
        case let list as [Any]:
            if list.isEmpty {
                out += "[]"
                return
            }
            out += "[\n"
            for (i, item) in list.enumerated() {
                out += pad
                try write(item, indent: indent + 1, into: &out)
                out += i + 1 < list.count ? ",\n" : "\n"
            }
            out += close + "]"
        case let text as String:
            out += quoted(text)
        case is NSNull:
            out += "null"
        default:
            if let flag = JSONField.boolean(value) {
                out += flag ? "true" : "false"
            } else if let n = value as? NSNumber {
                let type = String(cString: n.objCType)
                if type == "d" || type == "f" {
                    let d = n.doubleValue
                    guard d.isFinite else { throw OutputError("JSON has no value for \(d)") }
                    out += "\(d)"
                } else {
                    out += n.stringValue
                }
            } else if let b = value as? Bool {
                out += b ? "true" : "false"
            } else {
                throw OutputError("\(type(of: value)) is not a JSON value")
            }
        }
    }

    private static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
