import Foundation
import TangentIO

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
        var content = try TextFile.read(url, what: "data file")
        // Spreadsheet programs start UTF-8 files with a byte-order mark; it is not part of
        // the first column's name (or the first JSON line).
        if content.unicodeScalars.first == "\u{FEFF}" { content.unicodeScalars.removeFirst() }
        let rows: [LabeledText]
        switch format {
        case .jsonl: rows = try readJSONLines(content, path: url.path)
        case .csv: rows = try readTable(try DelimitedText.csvRecords(content, path: url.path), path: url.path)
        case .tsv: rows = try readTable(DelimitedText.tsvRecords(content), path: url.path)
        }
        guard !rows.isEmpty else { throw DataError("\(url.path): contains no texts") }
        return rows
    }

    private func readJSONLines(_ content: String, path: String) throws -> [LabeledText] {
        var out: [LabeledText] = []
        var lineNumber = 0
        for raw in DelimitedText.splitLines(content) {
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
                throw DataError(
                    "\(path):\(lineNumber): expected a JSON object with fields '\(textColumn)' and '\(labelColumn)'")
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

    /// Texts from the records of a CSV or TSV file, the first being the header.
    private func readTable(_ records: [DelimitedText.Record], path: String) throws -> [LabeledText] {
        guard let headerRecord = records.first else { throw DataError("\(path): contains no texts") }
        let header = headerRecord.fields.map { $0.trimmingCharacters(in: .whitespaces) }
        func column(_ name: String, option: String) throws -> Int? {
            let hits = header.indices.filter { header[$0] == name }
            if hits.count > 1 {
                throw DataError(
                    "\(path): header has the column '\(name)' \(hits.count) times (columns \(hits.map { String($0 + 1) }.joined(separator: ", "))); rename all but one, or choose another with \(option)"
                )
            }
            return hits.first
        }
        guard let textIndex = try column(textColumn, option: "--text-column") else {
            throw DataError(
                "\(path): header has no column '\(textColumn)' (columns: \(header.joined(separator: ", "))); choose one with --text-column"
            )
        }
        let labelIndex = try column(labelColumn, option: "--label-column")
        if labelIndex == nil && requireLabels {
            throw DataError(
                "\(path): header has no column '\(labelColumn)' (columns: \(header.joined(separator: ", "))); choose one with --label-column"
            )
        }
        var out: [LabeledText] = []
        for (row, record) in records.dropFirst().enumerated() {
            let fields = record.fields
            if fields.count == 1 && fields[0].isEmpty { continue }  // blank line
            guard fields.count == header.count else {
                throw DataError(
                    "\(path): row \(row + 1) (line \(record.line)) has \(fields.count) fields but the header has \(header.count)"
                )
            }
            out.append(
                try checked(
                    text: fields[textIndex], label: labelIndex.map { fields[$0] }, line: row + 1, path: path,
                    unit: "row"))
        }
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

/// Reading whole text files with errors in words: missing, unreadable (and why), not
/// UTF-8 (and on which line).
public enum TextFile {
    public static func read(_ url: URL, what: String) throws -> String {
        var st = stat()
        guard stat(url.path, &st) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw DataError("\(url.path): no such file") }
            throw DataError("\(url.path): cannot read the \(what): \(String(cString: strerror(code)))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw DataError("\(url.path): is a directory, not a \(what)") }
        guard access(url.path, R_OK) == 0 else {
            throw DataError("\(url.path): cannot read the \(what): \(String(cString: strerror(errno)))")
        }
        let data: Data
        do { data = try WholeFile.read(url) } catch {
            throw DataError("\(url.path): cannot read the \(what): \(error)")
        }
        if let s = String(validating: data, as: UTF8.self) { return s }
        // Find the first line that is not UTF-8, to name it.
        for (i, lineBytes) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated()
        where String(validating: lineBytes, as: UTF8.self) == nil {
            throw DataError("\(url.path): line \(i + 1): not valid UTF-8 text; save the file as UTF-8")
        }
        throw DataError("\(url.path): not valid UTF-8 text")
    }
}

/// Splits CSV (RFC 4180 quoting) and TSV (no quoting at all) into records, keeping the
/// line each record starts on for error messages.
public enum DelimitedText {
    public struct Record: Sendable, Equatable {
        public var fields: [String]
        /// 1-based line of the file where the record starts.
        public var line: Int
    }

    /// Lines ending in LF or CRLF (Swift treats CRLF as one character, so a split at
    /// "\n" alone would miss it).
    public static func splitLines(_ content: String) -> [Substring] {
        content.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
    }

    /// TSV as written by spreadsheets and `cut`: one record per line, fields split at
    /// tabs, every character (quotes included) taken literally.
    public static func tsvRecords(_ content: String) -> [Record] {
        var lines = splitLines(content)
        if lines.last == "" { lines.removeLast() }
        return lines.enumerated().map { i, line in
            Record(fields: line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init), line: i + 1)
        }
    }

    /// CSV: fields split at commas; a field that starts with `"` is quoted (commas, line
    /// breaks and doubled `""` inside); a `"` inside an unquoted field is taken literally.
    /// An unterminated quote, or text after a closing quote, is an error naming the line.
    public static func csvRecords(_ content: String, path: String) throws -> [Record] {
        var records: [Record] = []
        var fields: [String] = []
        var field = ""
        var line = 1
        var recordLine = 1
        var chars = Array(content.unicodeScalars)[...]
        var atFieldStart = true
        func endRecord() {
            fields.append(field)
            records.append(Record(fields: fields, line: recordLine))
            fields = []
            field = ""
            atFieldStart = true
        }
        while let c = chars.popFirst() {
            if atFieldStart && c == "\"" {
                let quoteLine = line
                var closed = false
                while let q = chars.popFirst() {
                    if q == "\"" {
                        if chars.first == "\"" {
                            chars.removeFirst()
                            field.unicodeScalars.append("\"")
                        } else {
                            closed = true
                            break
                        }
                    } else {
                        if q == "\n" { line += 1 }
                        field.unicodeScalars.append(q)
                    }
                }
                guard closed else {
                    throw DataError(
                        "\(path): line \(quoteLine): a quoted field is never closed (a \" opens it and no matching \" follows)"
                    )
                }
                if let next = chars.first, next != ",", next != "\n", next != "\r" {
                    throw DataError(
                        "\(path): line \(line): text after a closing quote; inside a quoted field write \"\" for a quote"
                    )
                }
                atFieldStart = false
                continue
            }
            atFieldStart = false
            switch c {
            case ",":
                fields.append(field)
                field = ""
                atFieldStart = true
            case "\r" where chars.first == "\n":
                break
            case "\n":
                endRecord()
                line += 1
                recordLine = line
            default:
                field.unicodeScalars.append(c)
            }
        }
        if !fields.isEmpty || !field.isEmpty { endRecord() }
        return records
    }
}
