import Foundation
import SwiftCSV

/// A text with its label as read from a data file.
public struct LabeledText: Sendable, Equatable {
    public var text: String
    /// Nil when the file has no label for this text (allowed only for prediction inputs).
    public var label: String?
    /// 1-based line (JSON Lines) or data row (CSV/TSV) where the text was read.
    public var line: Int

    public init(text: String, label: String?, line: Int) {
        self.text = text
        self.label = label
        self.line = line
    }
}

/// A bad data file; the message names the file and the line, row or field.
public struct DataError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// File formats the reader understands, chosen from the file extension.
public enum DataFormat: String, Sendable, CaseIterable {
    case jsonl, csv, tsv

    public init(url: URL) throws {
        switch url.pathExtension.lowercased() {
        case "jsonl", "ndjson", "json": self = .jsonl
        case "csv": self = .csv
        case "tsv", "tab": self = .tsv
        default:
            throw DataError("\(url.path): unknown data format '.\(url.pathExtension)' (use .jsonl, .csv or .tsv)")
        }
    }
}

/// Reads labelled texts from JSON Lines (`{"text": ..., "label": ...}` per line) or
/// from CSV/TSV with a header row.
public struct DatasetReader: Sendable {
    /// Field (JSON) or column (CSV/TSV) holding the text.
    public var textColumn: String = "text"
    /// Field or column holding the label.
    public var labelColumn: String = "label"
    /// Whether every text must carry a label (training and evaluation) or not (prediction).
    public var requireLabels: Bool = true

    public init(textColumn: String = "text", labelColumn: String = "label", requireLabels: Bool = true) {
        self.textColumn = textColumn
        self.labelColumn = labelColumn
        self.requireLabels = requireLabels
    }

    /// Reads every text of `url`. Empty texts, malformed lines and missing fields are errors.
    public func read(_ url: URL) throws -> [LabeledText] {
        let format = try DataFormat(url: url)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw DataError("\(url.path): no such file")
        }
        guard !isDir.boolValue else { throw DataError("\(url.path): is a directory, not a data file") }
        let content: String
        do {
            let data = try Data(contentsOf: url)
            guard let s = String(data: data, encoding: .utf8) else {
                throw DataError("\(url.path): not valid UTF-8 text")
            }
            content = s
        } catch let e as DataError {
            throw e
        } catch {
            throw DataError("\(url.path): cannot read: \((error as NSError).localizedDescription)")
        }
        let rows: [LabeledText]
        switch format {
        case .jsonl: rows = try readJSONLines(content, path: url.path)
        case .csv: rows = try readDelimited(content, delimiter: .comma, path: url.path)
        case .tsv: rows = try readDelimited(content, delimiter: .tab, path: url.path)
        }
        guard !rows.isEmpty else { throw DataError("\(url.path): contains no texts") }
        return rows
    }

    private func readJSONLines(_ content: String, path: String) throws -> [LabeledText] {
        var out: [LabeledText] = []
        var lineNumber = 0
        for raw in content.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty { continue }
            let object: Any
            do {
                object = try JSONSerialization.jsonObject(with: Data(line.utf8))
            } catch {
                throw DataError("\(path):\(lineNumber): malformed JSON line")
            }
            guard let dict = object as? [String: Any] else {
                throw DataError("\(path):\(lineNumber): expected a JSON object with fields '\(textColumn)' and '\(labelColumn)'")
            }
            guard let textValue = dict[textColumn] else {
                throw DataError("\(path):\(lineNumber): missing field '\(textColumn)'")
            }
            guard let text = textValue as? String else {
                throw DataError("\(path):\(lineNumber): field '\(textColumn)' is not a string")
            }
            let label: String?
            switch dict[labelColumn] {
            case nil, is NSNull:
                if requireLabels { throw DataError("\(path):\(lineNumber): missing field '\(labelColumn)'") }
                label = nil
            case let s as String: label = s
            case let n as NSNumber: label = n.stringValue
            default:
                throw DataError("\(path):\(lineNumber): field '\(labelColumn)' is neither a string nor a number")
            }
            out.append(try checked(text: text, label: label, line: lineNumber, path: path, unit: "line"))
        }
        return out
    }

    private func readDelimited(_ content: String, delimiter: CSVDelimiter, path: String) throws -> [LabeledText] {
        let csv: CSV<Enumerated>
        do {
            csv = try CSV<Enumerated>(string: content, delimiter: delimiter, loadColumns: false, rowLimit: 0)
        } catch {
            throw DataError("\(path): malformed \(delimiter == .tab ? "TSV" : "CSV"): \(error)")
        }
        let header = csv.header.map { $0.trimmingCharacters(in: .whitespaces) }
        guard let textIndex = header.firstIndex(of: textColumn) else {
            throw DataError("\(path): header has no column '\(textColumn)' (columns: \(header.joined(separator: ", "))); choose one with --text-column")
        }
        let labelIndex = header.firstIndex(of: labelColumn)
        if labelIndex == nil && requireLabels {
            throw DataError("\(path): header has no column '\(labelColumn)' (columns: \(header.joined(separator: ", "))); choose one with --label-column")
        }
        var out: [LabeledText] = []
        var row = 0
        var failure: DataError?
        do {
            try csv.enumerateAsArray(startAt: 1, rowLimit: nil) { fields in
                row += 1
                if failure != nil { return }
                if fields.count == 1 && fields[0].isEmpty { return }  // blank line
                guard fields.count == header.count else {
                    failure = DataError("\(path): row \(row) has \(fields.count) fields but the header has \(header.count)")
                    return
                }
                do {
                    out.append(try checked(text: fields[textIndex], label: labelIndex.map { fields[$0] },
                                           line: row, path: path, unit: "row"))
                } catch let e as DataError {
                    failure = e
                } catch {}
            }
        } catch {
            throw DataError("\(path): malformed \(delimiter == .tab ? "TSV" : "CSV"): \(error)")
        }
        if let failure { throw failure }
        return out
    }

    private func checked(text: String, label: String?, line: Int, path: String, unit: String) throws -> LabeledText {
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw DataError("\(path): \(unit) \(line): empty text in '\(textColumn)'")
        }
        if let label, label.trimmingCharacters(in: .whitespaces).isEmpty {
            if requireLabels { throw DataError("\(path): \(unit) \(line): empty label in '\(labelColumn)'") }
            return LabeledText(text: text, label: nil, line: line)
        }
        return LabeledText(text: text, label: label, line: line)
    }
}

/// Resolves `--data` arguments: a data file, or a directory holding `train.*` and
/// `test.*` in one of the supported formats.
public enum DataLocation {
    /// The file for `split` ("train" or "test") inside `url`, or `url` itself when it is a file.
    public static func file(_ url: URL, split: String) throws -> URL {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw DataError("\(url.path): no such file or directory")
        }
        if !isDir.boolValue { return url }
        for ext in ["jsonl", "csv", "tsv"] {
            let f = url.appendingPathComponent("\(split).\(ext)")
            if FileManager.default.fileExists(atPath: f.path) { return f }
        }
        throw DataError("\(url.path): directory has no \(split).jsonl, \(split).csv or \(split).tsv")
    }

    /// Like `file(_:split:)` but nil when a directory lacks the split.
    public static func optionalFile(_ url: URL, split: String) -> URL? {
        try? file(url, split: split)
    }
}
