import Foundation
import TangentIO

/// The classes of a model: index -> label name, in the order stored in `labels.json`.
public struct LabelSet: Sendable, Equatable, Codable {
    public let names: [String]
    private let index: [String: Int]

    public init(names: [String]) throws {
        var index: [String: Int] = [:]
        for (i, n) in names.enumerated() {
            if index[n] != nil { throw DataError("label '\(n)' appears twice in the label list") }
            index[n] = i
        }
        guard names.count >= 2 else { throw DataError("a classifier needs at least two labels, got \(names)") }
        self.names = names
        self.index = index
    }

    /// The labels present in `texts`, sorted, so the mapping does not depend on file order.
    public init(collecting texts: [LabeledText]) throws {
        try self.init(names: Set(texts.compactMap(\.label)).sorted())
    }

    public var count: Int { names.count }

    /// The index of `label`, or nil if the model does not know it.
    public func index(of label: String) -> Int? { index[label] }

    /// Indices of the labels of `texts`; an unknown or missing label is an error naming its line.
    public func indices(of texts: [LabeledText], source: String) throws -> [Int] {
        try texts.map { t in
            guard let l = t.label else { throw DataError("\(source): line \(t.line): missing label") }
            guard let i = index[l] else {
                throw DataError(
                    "\(source): line \(t.line): label '\(l)' is not one the model knows (\(names.joined(separator: ", ")))"
                )
            }
            return i
        }
    }

    public init(from decoder: Decoder) throws {
        try self.init(names: try [String](from: decoder))
    }
    public func encode(to encoder: Encoder) throws { try names.encode(to: encoder) }

    /// Reads `labels.json` (a JSON array of strings).
    public static func load(_ url: URL) throws -> LabelSet {
        let data: Data
        do { data = try WholeFile.read(url) } catch {
            throw DataError("\(url.path): cannot read label list: \(error)")
        }
        guard let names = try? JSONDecoder().decode([String].self, from: data) else {
            throw DataError("\(url.path): expected a JSON array of label names")
        }
        do { return try LabelSet(names: names) } catch let e as DataError {
            throw DataError("\(url.path): \(e.description)")
        }
    }

    /// Writes `labels.json` atomically.
    public func save(_ url: URL) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted]
        try AtomicFile.write(try enc.encode(names), to: url)
    }
}
