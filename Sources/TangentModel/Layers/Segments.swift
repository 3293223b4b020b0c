/// How a backward pass accumulates parameter gradients over rows (tokens or texts).
///
/// Summed mode has one segment covering every row and stride 0: all rows add into one
/// gradient. Per-example mode has one segment per text (its rows) and the stride of one
/// example's gradient vector, so each text's rows add into its own vector.
struct Segments {
    var ranges: [Range<Int>]
    var stride: Int

    static func summed(_ rows: Int) -> Segments { Segments(ranges: [0..<rows], stride: 0) }
}

/// A growable scratch or activation buffer, allocated outside hot loops and reused.
final class Buffer<T: BinaryFloatingPoint> {
    private(set) var p: UnsafeMutablePointer<T>
    private(set) var capacity: Int

    init(_ n: Int = 0) {
        capacity = max(n, 1)
        p = .allocate(capacity: capacity)
        p.initialize(repeating: 0, count: capacity)
    }

    /// Makes room for `n` elements; contents are lost when it grows.
    func ensure(_ n: Int) {
        if n <= capacity { return }
        p.deallocate()
        capacity = n
        p = .allocate(capacity: n)
        p.initialize(repeating: 0, count: n)
    }

    func zero(_ n: Int) { p.update(repeating: 0, count: n) }

    deinit { p.deallocate() }
}
