import Foundation

/// Sizes in words for messages.
public enum ByteSize {
    /// `bytes` as KiB, MiB, GiB, TiB or more, three significant digits.
    public static func describe(_ bytes: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var v = bytes
        var u = 0
        while v >= 1024 && u < units.count - 1 {
            v /= 1024
            u += 1
        }
        return u == units.count - 1 && v >= 1024
            ? String(format: "%.3g EiB", v) : String(format: "%.3g %@", v, units[u])
    }
}
