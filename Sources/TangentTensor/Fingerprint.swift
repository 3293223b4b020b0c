import Foundation

/// A 64-bit fingerprint of bytes (FNV-1a over 8-byte words, then mixed): enough to tell
/// models and inputs apart, not a cryptographic hash.
public func fingerprint(_ data: Data) -> String {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(data.count)
    data.withUnsafeBytes { raw in
        let n = raw.count / 8
        for i in 0..<n { h = (h ^ raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x0000_0100_0000_01B3 }
        for i in (n * 8)..<raw.count { h = (h ^ UInt64(raw[i])) &* 0x0000_0100_0000_01B3 }
    }
    return String(CounterRNG.mix(h), radix: 16)
}

extension JSONEncoder {
    /// An encoder with sorted keys, so equal values give equal bytes (for fingerprints and
    /// records compared byte for byte).
    public static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
