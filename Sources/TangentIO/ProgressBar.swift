import Foundation

/// A one-line progress bar on standard error, redrawn at most ten times a second,
/// with a rate and an estimate of the time left. Silent when stderr is not a terminal
/// unless `alwaysDraw`, in which case it prints a line per 10% instead of redrawing.
public final class ProgressBar {
    private let total: Int
    private let label: String
    private let start = Date()
    private var last = Date.distantPast
    private var lastDecile = -1
    private let interactive: Bool
    private let enabled: Bool

    public init(total: Int, label: String, enabled: Bool = true) {
        self.total = max(1, total)
        self.label = label
        self.enabled = enabled
        interactive = isatty(2) != 0
    }

    /// Shows `done` of `total` with a free-form status (e.g. loss and accuracy).
    public func update(_ done: Int, status: String = "") {
        guard enabled else { return }
        let now = Date()
        let frac = Double(done) / Double(total)
        let elapsed = now.timeIntervalSince(start)
        // Early updates have a noisy rate; a finished bar always shows its true mean rate,
        // however quick the work was (a 0.0/s at 100% reads as "nothing happened").
        let rate = elapsed > 0.05 || (done == total && elapsed > 0) ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        if interactive {
            guard now.timeIntervalSince(last) > 0.1 || done == total else { return }
            last = now
            let width = 24
            let filled = Int(frac * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            let line = String(
                format: "\r%@ [%@] %ld/%ld %.1f/s eta %@ %@", label, bar, done, total, rate, Self.duration(eta), status)
            FileHandle.standardError.write(Data((line + "\u{1B}[K").utf8))
        } else {
            let decile = Int(frac * 10)
            guard decile > lastDecile else { return }
            lastDecile = decile
            let line = String(
                format: "%@ %3ld%% %ld/%ld %.1f/s %@\n", label, Int(frac * 100), done, total, rate, status)
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    /// Ends the bar's line.
    public func finish(status: String = "") {
        guard enabled else { return }
        update(total, status: status)
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600
            ? String(format: "%ldh%02ldm", t / 3600, (t % 3600) / 60) : String(format: "%ld:%02ld", t / 60, t % 60)
    }
}

/// The bars of a run's successive stages, behind one progress callback: a stage's bar
/// starts when the label changes or the count starts again, and ends when its count
/// reaches the total (unless the caller ends it, with a status, itself).
public final class StageProgress {
    private var bar: ProgressBar?
    private var label = ""
    private var done = 0

    public init() {}

    /// `done` of `total` in stage `label`; with `finishAtTotal`, the bar ends at the total.
    public func report(_ label: String, _ done: Int, _ total: Int, status: String = "", finishAtTotal: Bool = true) {
        if bar == nil || label != self.label || done < self.done {
            bar = ProgressBar(total: total, label: label)
            self.label = label
        }
        self.done = done
        bar?.update(done, status: status)
        if finishAtTotal && done == total { finish(status: status) }
    }

    /// Ends the current stage's bar with `status`.
    public func finish(status: String = "") {
        bar?.finish(status: status)
        bar = nil
    }

    /// Whether a bar is drawn in place (stderr is a terminal) while a stage runs.
    public var drawsInPlace: Bool { isatty(2) != 0 }
}
