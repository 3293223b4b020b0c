import Foundation

/// Checks the normalization tables of a SentencePiece model before the C++ library loads
/// it. The library trusts them: a trie index past the table, or a replacement string
/// without its terminating NUL, makes its normalizer read past its buffers (found by
/// fuzzing `.model` bytes). A table is accepted only when every node reachable in its
/// double-array trie (darts-clone) lies inside the array and every replacement it leads to
/// starts inside the string blob and ends there with a NUL.
enum CharsMapCheck {
    /// Throws unless every `precompiled_charsmap` (normalizer and denormalizer spec) of the
    /// serialized ModelProto is sound; `source` names the file.
    static func check(model: Data, source: String) throws {
        let bytes = [UInt8](model)
        guard let top = ProtoFields(bytes) else {
            throw TokenizerError("\(source): not a SentencePiece model (not a protobuf message)")
        }
        // ModelProto: normalizer_spec = 3, denormalizer_spec = 5; NormalizerSpec: precompiled_charsmap = 2.
        for (field, spec) in top.lengthDelimited where field == 3 || field == 5 {
            let specBytes = Array(bytes[spec])
            guard let inner = ProtoFields(specBytes) else {
                throw TokenizerError(
                    "\(source): not a SentencePiece model (its normalizer spec is not a protobuf message)")
            }
            for (f, map) in inner.lengthDelimited where f == 2 {
                if let why = problem(Array(specBytes[map])) {
                    throw TokenizerError("\(source): its normalization table (precompiled_charsmap) is damaged: \(why)")
                }
            }
        }
    }

    /// What is wrong with a `precompiled_charsmap` blob, or nil when it is sound (or empty).
    static func problem(_ blob: [UInt8]) -> String? {
        guard !blob.isEmpty else { return nil }
        guard blob.count >= 4 else { return "\(blob.count) bytes, shorter than its 4-byte trie size" }
        let trieSize = Int(UInt32(blob[0]) | UInt32(blob[1]) << 8 | UInt32(blob[2]) << 16 | UInt32(blob[3]) << 24)
        // The library requires the strings to follow the trie.
        guard blob.count > trieSize + 4 else {
            return "its trie of \(trieSize) bytes leaves no room for the replacement strings"
        }
        let n = trieSize / 4
        guard n > 0 else { return "its trie is empty" }
        var units = [UInt32](repeating: 0, count: n)
        for i in 0..<n {
            let b = 4 + 4 * i
            units[i] =
                UInt32(blob[b]) | UInt32(blob[b + 1]) << 8 | UInt32(blob[b + 2]) << 16 | UInt32(blob[b + 3]) << 24
        }
        let strings = blob[(4 + trieSize)...]
        let stringCount = strings.count
        // Where each replacement may start: at a byte from which a NUL follows in the blob.
        var lastNul = -1
        var terminated = [Bool](repeating: false, count: stringCount)
        for i in stride(from: stringCount - 1, through: 0, by: -1) {
            if strings[strings.startIndex + i] == 0 { lastNul = i }
            terminated[i] = lastNul >= i
        }
        func offsetOf(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }
        func hasLeaf(_ u: UInt32) -> Bool { (u >> 8) & 1 == 1 }
        func label(_ u: UInt32) -> UInt32 { u & ((1 << 31) | 0xFF) }
        func value(_ u: UInt32) -> Int { Int(u & ((1 << 31) - 1)) }
        // Depth-first over the nodes the library's prefix search can reach from the root.
        let root = offsetOf(units[0])
        guard root < n else { return "its root points outside the trie" }
        var seen = Set<Int>([root])
        var stack = [root]
        while let node = stack.popLast() {
            for byte in UInt32(0)...255 {
                let child = node ^ Int(byte)
                guard child < n, label(units[child]) == byte else { continue }
                let next = child ^ offsetOf(units[child])
                guard next < n else { return "a node points outside the trie" }
                if hasLeaf(units[child]) {
                    let v = value(units[next])
                    guard v < stringCount, terminated[v] else {
                        return "a replacement points outside its strings or lacks its terminating NUL"
                    }
                }
                if seen.insert(next).inserted { stack.append(next) }
            }
        }
        return nil
    }
}

/// The top-level fields of a protobuf message: the ranges of its length-delimited fields by
/// field number; nil when the bytes are not a well-formed message.
struct ProtoFields {
    var lengthDelimited: [(Int, Range<Int>)] = []

    init?(_ bytes: [UInt8]) {
        var i = 0
        func varint() -> UInt64? {
            var v: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.count, shift < 64 {
                let b = bytes[i]
                i += 1
                v |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while i < bytes.count {
            guard let key = varint() else { return nil }
            let field = Int(key >> 3)
            switch key & 7 {
            case 0: guard varint() != nil else { return nil }
            case 1:
                guard i + 8 <= bytes.count else { return nil }
                i += 8
            case 5:
                guard i + 4 <= bytes.count else { return nil }
                i += 4
            case 2:
                guard let len = varint(), len <= UInt64(bytes.count - i) else { return nil }
                lengthDelimited.append((field, i..<(i + Int(len))))
                i += Int(len)
            default: return nil
            }
        }
    }
}
