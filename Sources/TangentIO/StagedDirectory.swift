import Foundation

/// A directory output that replaces an existing one whole: the new contents are written
/// into a staging directory beside the destination (`.NAME.tangent-new`), which is then
/// swapped in. No file of the old directory survives in the new one, and a failure
/// before the swap leaves the old directory as it was. Hold the destination's
/// `OutputLock` while staging: the staging and set-aside names are fixed per destination.
public struct StagedDirectory {
    /// Where the finished directory goes.
    public let destination: URL
    /// Where its contents are written until `commit()`.
    public let staging: URL

    /// Prepares `staging` for `destination` (leftovers of an earlier killed run are
    /// removed first; an old directory set aside by a swap that was cut short is put back).
    public init(replacing destination: URL) throws {
        let dest = URL(fileURLWithPath: PathOverlap.resolved(destination))
        let parent = dest.deletingLastPathComponent()
        let name = dest.lastPathComponent
        self.destination = dest
        self.staging = parent.appendingPathComponent(".\(name).tangent-new")
        let aside = StagedDirectory.asideURL(dest)
        let fm = FileManager.default
        if fm.fileExists(atPath: aside.path) {
            if !fm.fileExists(atPath: dest.path) {
                guard rename(aside.path, dest.path) == 0 else {
                    throw OutputError("\(aside.path): cannot put the earlier \(name) back: \(systemErrorDescription())")
                }
            } else {
                try StagedDirectory.remove(aside)
            }
        }
        if fm.fileExists(atPath: staging.path) { try StagedDirectory.remove(staging) }
        try OutputPath.createDirectory(staging)
    }

    /// Swaps the staging directory in for the destination and removes the old one. On
    /// Linux the swap is one renameat2(RENAME_EXCHANGE); elsewhere, or on file systems
    /// without it, the old directory is first renamed aside (and put back by the next
    /// `init` if the process dies between the two renames).
    public func commit() throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: destination.path) else {
            guard rename(staging.path, destination.path) == 0 else {
                throw OutputError(
                    "\(destination.path): cannot move the new directory into place: \(systemErrorDescription())")
            }
            return
        }
        if StagedDirectory.exchange(staging.path, destination.path) {
            try StagedDirectory.remove(staging)
            return
        }
        let aside = StagedDirectory.asideURL(destination)
        guard rename(destination.path, aside.path) == 0 else {
            throw OutputError("\(destination.path): cannot set the old directory aside: \(systemErrorDescription())")
        }
        guard rename(staging.path, destination.path) == 0 else {
            let code = errno
            _ = rename(aside.path, destination.path)
            throw OutputError(
                "\(destination.path): cannot move the new directory into place: \(systemErrorDescription(code))")
        }
        try StagedDirectory.remove(aside)
    }

    /// Removes the staging directory (a run that failed before `commit()`).
    public func discard() {
        try? StagedDirectory.remove(staging)
    }

    static func asideURL(_ dest: URL) -> URL {
        dest.deletingLastPathComponent().appendingPathComponent(".\(dest.lastPathComponent).tangent-old")
    }

    static func remove(_ url: URL) throws {
        do { try FileManager.default.removeItem(at: url) } catch {
            throw OutputError("\(url.path): cannot remove: \(error.localizedDescription)")
        }
    }

    /// renameat2(2) with RENAME_EXCHANGE, looked up at run time (the C library's headers
    /// do not declare it to Swift); false when the system or file system lacks it.
    static func exchange(_ a: String, _ b: String) -> Bool {
        #if os(Linux)
            typealias RenameAt2 =
                @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
            guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "renameat2") else { return false }
            let renameat2 = unsafeBitCast(symbol, to: RenameAt2.self)
            let atFDCWD: Int32 = -100
            let renameExchange: UInt32 = 2
            return renameat2(atFDCWD, a, atFDCWD, b, renameExchange) == 0
        #else
            return false
        #endif
    }
}
