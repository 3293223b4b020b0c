import Foundation
import TangentIO

/// Element types of safetensors tensors that the toolkit reads and writes.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .F64, .I64: return 8
        case .F32, .I32: return 4
        case .F16, .BF16, .I16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// Byte range within the data section (after the header).
    public let dataRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// Why a safetensors file could not be read; every case names the file.
public enum SafetensorsError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case truncated(path: String, reason: String)
    case badHeader(path: String, reason: String)
    case badTensor(path: String, tensor: String, reason: String)
    case missingTensor(path: String, tensor: String)
    case wrongDType(path: String, tensor: String, expected: String, found: String)
    case wrongShape(path: String, tensor: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case .unreadable(let p, let r): return "\(p): cannot read safetensors file: \(r)"
        case .truncated(let p, let r): return "\(p): truncated safetensors file: \(r)"
        case .badHeader(let p, let r): return "\(p): corrupt safetensors header: \(r)"
        case .badTensor(let p, let t, let r): return "\(p): tensor '\(t)': \(r)"
        case .missingTensor(let p, let t): return "\(p): tensor '\(t)' is missing"
        case .wrongDType(let p, let t, let e, let f): return "\(p): tensor '\(t)' has dtype \(f), expected \(e)"
        case .wrongShape(let p, let t, let e, let f): return "\(p): tensor '\(t)' has shape \(f), expected \(e)"
        }
    }
}

/// A parsed, validated safetensors file. The file is memory-mapped; tensors are copied
/// out on request.
///
/// Format: an 8-byte little-endian header length N, N bytes of JSON mapping each
/// tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (plus an optional
/// `"__metadata__"` string map), then the raw little-endian row-major data.
public struct SafetensorsFile: Sendable {
    public let path: String
    public let tensors: [String: SafetensorsTensorInfo]
    public let metadata: [String: String]
    /// Tensor names in the order of their data offsets.
    public let orderedNames: [String]
    private let data: Data
    private let dataStart: Int

    /// Reads and validates `url`: header length within the file, JSON well-formed,
    /// known dtypes, non-negative shapes, byte counts matching shapes, offsets in
    /// bounds and non-overlapping.
    public init(url: URL) throws {
        let path = url.path
        let data: Data
        do {
            data = try WholeFile.mapped(url)
        } catch {
            throw SafetensorsError.unreadable(path: path, reason: "\(error)")
        }
        try self.init(data: data, path: path)
    }

    /// The `format` entry of a file's header metadata, read from the header alone (so a
    /// file whose data is damaged still tells what it is); nil when there is none.
    public static func formatTag(of url: URL) -> String? {
        guard let h = try? FileHandle(forReadingFrom: url) else { return nil }
        defer { try? h.close() }
        guard let len = try? h.read(upToCount: 8), len.count == 8 else { return nil }
        var n: UInt64 = 0
        for (i, byte) in len.enumerated() { n |= UInt64(byte) << (8 * UInt64(i)) }
        guard n <= 100_000_000, let header = try? h.read(upToCount: Int(n)), header.count == Int(n),
            let json = try? JSONSerialization.jsonObject(with: header) as? [String: Any],
            let meta = json["__metadata__"] as? [String: Any]
        else { return nil }
        return meta["format"] as? String
    }

    /// Parses safetensors bytes held in memory; `path` names them in errors.
    public init(data: Data, path: String) throws {
        self.path = path
        self.data = data
        guard data.count >= 8 else {
            throw SafetensorsError.truncated(
                path: path, reason: "file has \(data.count) bytes, fewer than the 8-byte header length")
        }
        let headerLength: UInt64 = data.withUnsafeBytes { raw in
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(raw[i]) << (8 * UInt64(i)) }
            return v
        }
        guard headerLength <= UInt64(data.count - 8) else {
            throw SafetensorsError.truncated(
                path: path, reason: "header length \(headerLength) exceeds the \(data.count - 8) bytes after it")
        }
        guard headerLength <= 100_000_000 else {
            throw SafetensorsError.badHeader(path: path, reason: "header length \(headerLength) is implausibly large")
        }
        let hl = Int(headerLength)
        let headerData = data.subdata(in: 8..<(8 + hl))
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerData)
        } catch {
            throw SafetensorsError.badHeader(path: path, reason: "header is not valid JSON")
        }
        guard let dict = json as? [String: Any] else {
            throw SafetensorsError.badHeader(path: path, reason: "header is not a JSON object")
        }
        let dataStart = 8 + hl
        let dataSize = data.count - dataStart
        var tensors: [String: SafetensorsTensorInfo] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in dict {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw SafetensorsError.badHeader(path: path, reason: "__metadata__ is not an object")
                }
                for (k, v) in m {
                    guard let s = v as? String else {
                        throw SafetensorsError.badHeader(
                            path: path, reason: "__metadata__ value of '\(k)' is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            tensors[name] = try Self.entry(name: name, value: value, dataSize: dataSize, path: path)
        }
        let ordered = tensors.values.sorted { ($0.dataRange.lowerBound, $0.name) < ($1.dataRange.lowerBound, $1.name) }
        for i in ordered.indices.dropFirst() {
            let prev = ordered[i - 1]
            let cur = ordered[i]
            if !prev.dataRange.isEmpty && !cur.dataRange.isEmpty && cur.dataRange.lowerBound < prev.dataRange.upperBound
            {
                throw SafetensorsError.badTensor(
                    path: path, tensor: cur.name, reason: "data overlaps tensor '\(prev.name)'")
            }
        }
        self.tensors = tensors
        self.metadata = metadata
        self.orderedNames = ordered.map(\.name)
        self.dataStart = dataStart
    }

    /// One tensor's header entry, validated: known dtype, non-negative shape, offsets in
    /// the data section, and a byte count (overflow-checked) that matches the shape.
    private static func entry(name: String, value: Any, dataSize: Int, path: String) throws -> SafetensorsTensorInfo {
        guard let entry = value as? [String: Any] else {
            throw SafetensorsError.badTensor(path: path, tensor: name, reason: "entry is not an object")
        }
        guard let dtypeName = entry["dtype"] as? String else {
            throw SafetensorsError.badTensor(path: path, tensor: name, reason: "missing dtype")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw SafetensorsError.badTensor(path: path, tensor: name, reason: "unknown dtype \(dtypeName)")
        }
        guard let shapeAny = entry["shape"] as? [Any] else {
            throw SafetensorsError.badTensor(path: path, tensor: name, reason: "missing shape")
        }
        var shape: [Int] = []
        for d in shapeAny {
            guard let n = Self.integer(d), n >= 0 else {
                throw SafetensorsError.badTensor(
                    path: path, tensor: name, reason: "shape \(shapeAny) is not a list of non-negative integers")
            }
            shape.append(n)
        }
        guard let offs = entry["data_offsets"] as? [Any], offs.count == 2,
            let begin = Self.integer(offs[0]), let end = Self.integer(offs[1])
        else {
            throw SafetensorsError.badTensor(path: path, tensor: name, reason: "data_offsets must be two integers")
        }
        guard begin >= 0, begin <= end else {
            throw SafetensorsError.badTensor(
                path: path, tensor: name, reason: "data_offsets [\(begin), \(end)] are not an increasing pair")
        }
        guard end <= dataSize else {
            throw SafetensorsError.truncated(
                path: path, reason: "tensor '\(name)' ends at byte \(end) of a data section of \(dataSize) bytes")
        }
        var count = 1
        for d in shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o else {
                throw SafetensorsError.badTensor(path: path, tensor: name, reason: "shape \(shape) overflows")
            }
            count = p
        }
        // The byte count can overflow even when the element count does not (a shape of
        // 2^61 F64 elements): a size no file here can hold is an error, not a trap.
        let (bytes, bytesOverflow) = count.multipliedReportingOverflow(by: dtype.size)
        guard !bytesOverflow else {
            throw SafetensorsError.badTensor(
                path: path, tensor: name, reason: "shape \(shape) of \(dtypeName) overflows a byte count")
        }
        guard bytes == end - begin else {
            throw SafetensorsError.badTensor(
                path: path, tensor: name,
                reason: "shape \(shape) of \(dtypeName) needs \(bytes) bytes but data_offsets span \(end - begin)")
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
    }

    private static func integer(_ v: Any) -> Int? {
        // JSONSerialization yields NSNumber; exact bridging accepts only whole numbers.
        if let n = v as? Int { return n }
        return nil
    }

    /// The entry of `name`, checked against an expected dtype and shape when given.
    public func info(_ name: String, dtype: SafetensorsDType? = nil, shape: [Int]? = nil) throws
        -> SafetensorsTensorInfo
    {
        guard let info = tensors[name] else { throw SafetensorsError.missingTensor(path: path, tensor: name) }
        if let dtype, info.dtype != dtype {
            throw SafetensorsError.wrongDType(
                path: path, tensor: name, expected: dtype.rawValue, found: info.dtype.rawValue)
        }
        if let shape, info.shape != shape {
            throw SafetensorsError.wrongShape(path: path, tensor: name, expected: shape, found: info.shape)
        }
        return info
    }

    /// Copies the raw bytes of a tensor into `destination` (which must hold them).
    public func copyBytes(_ name: String, into destination: UnsafeMutableRawPointer) throws {
        let info = try info(name)
        data.withUnsafeBytes { raw in
            let src = raw.baseAddress!.advanced(by: dataStart + info.dataRange.lowerBound)
            destination.copyMemory(from: src, byteCount: info.dataRange.count)
        }
    }

    /// Copies bytes `range` (relative to the tensor's start) of a tensor into `destination`.
    public func copyBytes(_ name: String, range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        copyBytes(try info(name), range: range, into: destination)
    }

    /// The same for a tensor whose entry was already looked up (and checked) from this
    /// file: nothing can fail, so readers in hot loops need no error path.
    public func copyBytes(_ info: SafetensorsTensorInfo, range: Range<Int>, into destination: UnsafeMutableRawPointer) {
        precondition(tensors[info.name] == info, "tensor \(info.name) is not an entry of \(path)")
        precondition(
            range.lowerBound >= 0 && range.upperBound <= info.dataRange.count, "byte range outside tensor \(info.name)")
        data.withUnsafeBytes { raw in
            let src = raw.baseAddress!.advanced(by: dataStart + info.dataRange.lowerBound + range.lowerBound)
            destination.copyMemory(from: src, byteCount: range.count)
        }
    }

    /// A float32 tensor's values; fails unless its dtype is F32 (and its shape matches when given).
    public func float32(_ name: String, shape: [Int]? = nil) throws -> [Float] {
        let info = try info(name, dtype: .F32, shape: shape)
        var out = [Float](repeating: 0, count: info.elementCount)
        try out.withUnsafeMutableBytes { try copyBytes(name, into: $0.baseAddress!) }
        return out.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
    }

    /// A floating-point tensor's values as float32: F32 as stored, F16 and BF16 widened
    /// exactly (checkpoints saved in half precision are computed in float32).
    public func floatsWidened(_ name: String, shape: [Int]? = nil) throws -> [Float] {
        let dtype = tensors[name]?.dtype
        guard dtype == .F16 || dtype == .BF16 else { return try float32(name, shape: shape) }
        let info = try info(name, dtype: dtype, shape: shape)
        var bits = [UInt16](repeating: 0, count: info.elementCount)
        try bits.withUnsafeMutableBytes { try copyBytes(name, into: $0.baseAddress!) }
        if dtype == .BF16 { return bits.map { Float(bitPattern: UInt32(UInt16(littleEndian: $0)) << 16) } }
        return bits.map { Float(Float16(bitPattern: UInt16(littleEndian: $0))) }
    }

    /// A float64 tensor's values.
    public func float64(_ name: String, shape: [Int]? = nil) throws -> [Double] {
        let info = try info(name, dtype: .F64, shape: shape)
        var out = [Double](repeating: 0, count: info.elementCount)
        try out.withUnsafeMutableBytes { try copyBytes(name, into: $0.baseAddress!) }
        return out
    }

    /// An int32 tensor's values.
    public func int32(_ name: String, shape: [Int]? = nil) throws -> [Int32] {
        let info = try info(name, dtype: .I32, shape: shape)
        var out = [Int32](repeating: 0, count: info.elementCount)
        try out.withUnsafeMutableBytes { try copyBytes(name, into: $0.baseAddress!) }
        return out.map { Int32(littleEndian: $0) }
    }

    /// An int64 tensor's values.
    public func int64(_ name: String, shape: [Int]? = nil) throws -> [Int64] {
        let info = try info(name, dtype: .I64, shape: shape)
        var out = [Int64](repeating: 0, count: info.elementCount)
        try out.withUnsafeMutableBytes { try copyBytes(name, into: $0.baseAddress!) }
        return out.map { Int64(littleEndian: $0) }
    }
}

/// Builds a safetensors file in memory and writes it atomically.
public struct SafetensorsWriter {
    private struct Entry {
        let name: String
        let dtype: SafetensorsDType
        let shape: [Int]
        let bytes: Data
    }
    private var entries: [Entry] = []
    private var names: Set<String> = []
    /// String metadata stored under `__metadata__`.
    public var metadata: [String: String] = [:]

    public init() {}

    private mutating func append(_ name: String, _ dtype: SafetensorsDType, _ shape: [Int], _ bytes: Data) {
        precondition(!names.contains(name), "duplicate tensor name \(name)")
        precondition(
            shape.reduce(1, *) * dtype.size == bytes.count,
            "shape \(shape) does not match \(bytes.count) bytes for \(name)")
        names.insert(name)
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bytes))
    }

    public mutating func add(_ name: String, shape: [Int], float32 values: [Float]) {
        append(name, .F32, shape, values.withUnsafeBytes { Data($0) })
    }
    public mutating func add(_ name: String, shape: [Int], float32 values: UnsafeBufferPointer<Float>) {
        append(name, .F32, shape, Data(buffer: values))
    }
    public mutating func add(_ name: String, shape: [Int], float64 values: [Double]) {
        append(name, .F64, shape, values.withUnsafeBytes { Data($0) })
    }
    public mutating func add(_ name: String, shape: [Int], int32 values: [Int32]) {
        append(name, .I32, shape, values.withUnsafeBytes { Data($0) })
    }
    public mutating func add(_ name: String, shape: [Int], int64 values: [Int64]) {
        append(name, .I64, shape, values.withUnsafeBytes { Data($0) })
    }

    /// The file's bytes: header (padded with spaces to a multiple of 8) then data, in insertion order.
    public func serialized() -> Data {
        let layout = SafetensorsLayout(metadata: metadata, tensors: entries.map { ($0.name, $0.dtype, $0.shape) })
        var out = Data()
        out.reserveCapacity(layout.prefix.count + layout.dataBytes)
        out.append(layout.prefix)
        for e in entries { out.append(e.bytes) }
        return out
    }

    /// Writes the file atomically (temporary file, then rename).
    public func write(to url: URL) throws {
        try AtomicFile.write(serialized(), to: url)
    }
}

/// The header of a safetensors file whose tensors follow one another in the given order:
/// the bytes before the data (length, then the JSON header padded with spaces to a
/// multiple of 8) and where each tensor's data starts. The one place headers are
/// written, for files built whole (`SafetensorsWriter`) and files streamed in blocks.
public struct SafetensorsLayout: Sendable {
    /// The 8-byte header length and the header.
    public let prefix: Data
    /// Each tensor's first byte, counted from the start of the file.
    public let offsets: [String: Int]
    /// The data section's length in bytes.
    public let dataBytes: Int

    /// Metadata is left out when empty; keys are sorted, so equal inputs give equal bytes.
    public init(metadata: [String: String], tensors: [(name: String, dtype: SafetensorsDType, shape: [Int])]) {
        var parts: [String] = []
        if !metadata.isEmpty {
            let m = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(m.joined(separator: ","))}")
        }
        var offset = 0
        var relative: [String: Int] = [:]
        for t in tensors {
            let bytes = t.shape.reduce(1, *) * t.dtype.size
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append(
                "\(jsonString(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            )
            relative[t.name] = offset
            offset += bytes
        }
        var header = "{" + parts.joined(separator: ",") + "}"
        while (header.utf8.count + 8) % 8 != 0 { header += " " }
        var out = Data()
        var n = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(header.utf8))
        prefix = out
        offsets = relative.mapValues { $0 + out.count }
        dataBytes = offset
    }
}

/// JSON string literal with the escapes JSON requires (for headers written by hand).
public func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}
