import Foundation
import TangentData
import TangentIO

/// Report JSON (`report.json`, `poisoning.json`) on disk: pretty, sorted, NaN and
/// infinities as strings, so that reports diff well and load back exactly.
public enum ReportFile {
    /// Writes `value` to `url`, atomically.
    public static func write<T: Encodable>(_ value: T, to url: URL) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        enc.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try AtomicFile.write(try enc.encode(value), to: url)
    }

    /// Reads a report as `write` writes it; a damaged file is an error that names it and
    /// the field at fault.
    public static func read<T: Decodable>(_ type: T.Type, from url: URL) throws -> T {
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let data = Data(try TextFile.read(url, what: "report").utf8)
        do {
            return try dec.decode(type, from: data)
        } catch let e as DecodingError {
            throw DataError(
                "\(url.path): not a readable report: \(describe(e)); regenerate it with `tangent compare` or `tangent poison`"
            )
        }
    }

    /// A decoding error in words: what is wrong and at which field.
    public static func describe(_ error: DecodingError) -> String {
        func at(_ path: [CodingKey]) -> String {
            path.isEmpty
                ? "at the top level"
                : "at '" + path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") + "'"
        }
        switch error {
        case .dataCorrupted(let c):
            return c.codingPath.isEmpty ? "not valid JSON" : "bad value \(at(c.codingPath)) (\(c.debugDescription))"
        case .keyNotFound(let key, let c): return "missing field '\(key.stringValue)' \(at(c.codingPath))"
        case .typeMismatch(let type, let c): return "expected \(type) \(at(c.codingPath))"
        case .valueNotFound(let type, let c): return "missing \(type) value \(at(c.codingPath))"
        @unknown default: return "\(error)"
        }
    }
}
