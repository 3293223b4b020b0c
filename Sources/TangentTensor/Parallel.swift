import Dispatch
import Foundation

/// Worker threads. Every call that computes in parallel takes its thread count as an
/// argument; results depend on the count only through the order of floating-point sums,
/// and are bit-identical for a fixed count. The library reads no environment: the CLI
/// resolves `--threads` and `TANGENT_THREADS` once and passes the count down.
public enum Threads {
    /// The most threads any command accepts: each thread owns a workspace of a whole
    /// shard's activations, so absurd counts would only exhaust memory.
    public static let maximum = 256

    /// The machine's active cores (at most `maximum`): the default where a caller
    /// gives no count.
    public static var cores: Int { max(1, min(maximum, ProcessInfo.processInfo.activeProcessorCount)) }
}

/// Runs `body(i)` for i in 0..<count on up to `count` threads and waits for all.
///
/// The iterations must touch disjoint memory (each shard its own workspace and
/// output rows); that contract, not the type system, makes this data-race free,
/// which is why the closure need not be `@Sendable`.
public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    if count <= 1 {
        if count == 1 { body(0) }
        return
    }
    withoutActuallyEscaping(body) { escapable in
        let box = UncheckedSendableBox(escapable)
        DispatchQueue.concurrentPerform(iterations: count) { box.value($0) }
    }
}

private struct UncheckedSendableBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Splits 0..<n into `parts` contiguous ranges whose sizes differ by at most one.
public func splitRange(_ n: Int, parts: Int) -> [Range<Int>] {
    let p = max(1, min(parts, max(n, 1)))
    var out: [Range<Int>] = []
    var start = 0
    for i in 0..<p {
        let len = n / p + (i < n % p ? 1 : 0)
        out.append(start..<(start + len))
        start += len
    }
    return out
}

/// The process's peak resident memory so far (VmHWM from /proc/self/status), in MiB;
/// nil where that file is unavailable.
public func peakMemoryMiB() -> Double? {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
        let kb = Double(line.split(separator: " ").dropFirst().first.map(String.init) ?? "")
    else { return nil }
    return kb / 1024
}
