import Foundation

/// Why an output cannot be written; the message names the path and says what is wrong.
public struct OutputError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The reason `errno` names, in words ("Permission denied", "Is a directory").
public func systemErrorDescription(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}

/// Writes files atomically: data goes to a temporary file in the same directory, which
/// reaches the disk and is then renamed over the destination in one rename(2), so a
/// reader never sees half a file and an interrupted run leaves the previous version
/// intact. Nothing is removed first, and a directory is never replaced.
public enum AtomicFile {
    public static func write(_ data: Data, to url: URL) throws {
        try write(to: url) { try $0.append(data) }
    }

    /// Writes a file whose bytes come in pieces (too large to hold at once), with the
    /// same guarantees: `body` appends to a temporary file that is synced and renamed
    /// over `url` only when `body` returns; when it throws, the temporary file goes.
    public static func write(to url: URL, _ body: (Appender) throws -> Void) throws {
        let dir = url.deletingLastPathComponent()
        try OutputPath.createDirectory(dir)
        let tmp = dir.appendingPathComponent(
            ".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).tmp")
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OutputError("\(tmp.path): cannot create file: \(systemErrorDescription())") }
        var ok = false
        defer {
            if !ok { unlink(tmp.path) }
        }
        do {
            try body(Appender(fd: fd, path: tmp.path))
        } catch {
            close(fd)
            throw error
        }
        let synced = fsync(fd) == 0
        let code = errno
        close(fd)
        guard synced else { throw OutputError("\(tmp.path): cannot write: \(systemErrorDescription(code))") }
        try replace(url, with: tmp)
        ok = true
    }

    /// Appends bytes to the temporary file of `write(to:_:)`.
    public struct Appender {
        let fd: Int32
        let path: String

        public func append(_ raw: UnsafeRawBufferPointer) throws {
            var off = 0
            while off < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + off, raw.count - off)
                guard n > 0 else { throw OutputError("\(path): cannot write: \(systemErrorDescription())") }
                off += n
            }
        }

        public func append(_ data: Data) throws {
            try data.withUnsafeBytes { try append($0) }
        }
    }

    public static func write(_ string: String, to url: URL) throws {
        try write(Data(string.utf8), to: url)
    }

    /// Renames the finished file `source` over `url` in one rename(2) (never a remove
    /// first); refuses to replace a directory.
    public static func replace(_ url: URL, with source: URL) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
            throw OutputError("\(url.path): is a directory; not replacing it")
        }
        guard rename(source.path, url.path) == 0 else {
            throw OutputError("\(url.path): cannot move the finished file into place: \(systemErrorDescription())")
        }
    }
}

/// Checks made on an output path before any work, so a long run does not fail at its
/// end, and `--overwrite` never removes what is not a finished output of the same kind.
public enum OutputPath {
    /// Checks that a file can be written at `url`: its directory exists or can be
    /// created and is writable; an existing `url` is refused unless `overwrite`, and even
    /// then unless it is a regular file that `isSameKind` recognizes as `kind`.
    public static func checkFile(_ url: URL, kind: String, overwrite: Bool, isSameKind: (URL) -> Bool) throws {
        try checkWritableParent(of: url)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else { return }
        if isDir.boolValue {
            throw OutputError(
                "\(url.path): is a directory; give a file path for the \(kind), e.g. \(url.appendingPathComponent("out").path)"
            )
        }
        guard overwrite else { throw OutputError("\(url.path): already exists (pass --overwrite to replace it)") }
        guard isSameKind(url) else {
            throw OutputError(
                "\(url.path): exists and is not a \(kind); --overwrite replaces only a \(kind), so move or remove it yourself"
            )
        }
    }

    /// Checks that `url` can serve as an output directory holding `kind`: it is a
    /// directory (or can be created), writable; if it already holds `kind` (any of
    /// `markers` exists in it), `overwrite` is required; any other non-empty directory
    /// is refused, since writing into it could replace files that are not ours.
    public static func checkDirectory(
        _ url: URL, kind: String, markers: [String], overwrite: Bool,
        allowOtherFiles: Bool = false
    ) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDir) else {
            try checkWritableParent(of: url)
            return
        }
        guard isDir.boolValue else {
            throw OutputError("\(url.path): exists and is not a directory; \(kind) is written as a directory")
        }
        guard access(url.path, W_OK | X_OK) == 0 else {
            throw OutputError("\(url.path): permission denied (cannot write the \(kind) there)")
        }
        if let marker = markers.first(where: { fm.fileExists(atPath: url.appendingPathComponent($0).path) }) {
            guard overwrite else {
                throw OutputError("\(url.path): already holds a \(kind) (\(marker)); pass --overwrite to replace it")
            }
            return
        }
        if !allowOtherFiles {
            let entries = ((try? fm.contentsOfDirectory(atPath: url.path)) ?? []).filter { !$0.hasPrefix(".tangent") }
            if !entries.isEmpty {
                throw OutputError(
                    "\(url.path): exists and holds other files (\(entries.sorted().prefix(3).joined(separator: ", "))), not a \(kind); choose a new or empty directory"
                )
            }
        }
    }

    /// The nearest existing ancestor of `url` must be a writable directory.
    public static func checkWritableParent(of url: URL) throws {
        var dir = url.deletingLastPathComponent()
        let fm = FileManager.default
        while true {
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: dir.path, isDirectory: &isDir) {
                guard isDir.boolValue else {
                    throw OutputError("\(dir.path): is not a directory (needed to write \(url.path))")
                }
                guard access(dir.path, W_OK | X_OK) == 0 else {
                    throw OutputError("\(dir.path): permission denied (cannot write \(url.lastPathComponent) there)")
                }
                return
            }
            let up = dir.deletingLastPathComponent()
            if up.path == dir.path { return }
            dir = up
        }
    }

    /// Creates `dir` and its parents, with the reason in words on failure.
    public static func createDirectory(_ dir: URL) throws {
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            try checkWritableParent(of: dir.appendingPathComponent("x"))
            throw OutputError("\(dir.path): cannot create the directory")
        }
    }
}

/// An exclusive advisory lock (flock) held for a whole run, so a second run writing the
/// same output refuses at once instead of racing the first. The lock goes with the
/// process: a killed run leaves no stale lock behind.
public final class OutputLock {
    public let url: URL
    private let fd: Int32
    private let removeWhenDone: Bool

    /// Locks `url` (created if needed, contents untouched). `what` names the output in
    /// the refusal message. With `removeWhenDone`, the lock file is deleted on release.
    public init(_ url: URL, what: String, removeWhenDone: Bool) throws {
        try OutputPath.createDirectory(url.deletingLastPathComponent())
        let fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OutputError("\(url.path): cannot open: \(systemErrorDescription())") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(fd)
            if code == EWOULDBLOCK {
                throw OutputError(
                    "\(url.path): another process is writing \(what) (it holds the lock on this file); wait for it to finish or choose another output"
                )
            }
            throw OutputError("\(url.path): cannot lock: \(systemErrorDescription(code))")
        }
        self.url = url
        self.fd = fd
        self.removeWhenDone = removeWhenDone
    }

    /// The lock for an output file or directory: `.NAME.tangent.lock` beside it, where
    /// NAME is the output's resolved path (symbolic links followed), so two runs that name
    /// one output by two paths take the same lock.
    public convenience init(guarding output: URL, what: String) throws {
        let target = OutputLock.resolved(output)
        let lock = target.deletingLastPathComponent().appendingPathComponent(
            ".\(target.lastPathComponent).tangent.lock")
        try self.init(lock, what: what, removeWhenDone: true)
    }

    /// `url` with every symbolic link resolved: the whole path when it exists, else its
    /// parent's resolved path plus the last component.
    public static func resolved(_ url: URL) -> URL {
        func real(_ path: String) -> String? {
            guard let r = realpath(path, nil) else { return nil }
            defer { free(r) }
            return String(cString: r)
        }
        let path = url.standardizedFileURL.path
        if let r = real(path) { return URL(fileURLWithPath: r) }
        let parent = (path as NSString).deletingLastPathComponent
        if let r = real(parent) {
            return URL(fileURLWithPath: r).appendingPathComponent((path as NSString).lastPathComponent)
        }
        return url.standardizedFileURL
    }

    /// The locked file's descriptor (for a lock on the data file itself).
    public var fileDescriptor: Int32 { fd }

    deinit {
        if removeWhenDone { unlink(url.path) }
        close(fd)
    }
}

/// Reads whole files with read(2). Foundation's `Data(contentsOf:)` leaks a buffer on
/// empty files (found by fuzzing), and its errors do not keep errno's reason.
public enum WholeFile {
    /// Why a file could not be read: errno's reason in words.
    public struct ReadError: Error, CustomStringConvertible {
        public let code: Int32
        public var description: String { systemErrorDescription(code) }
    }

    /// Opens `url` for reading and runs `body` with its descriptor and status; a directory
    /// is refused.
    static func withOpenFile<R>(_ url: URL, _ body: (Int32, stat) throws -> R) throws -> R {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(code: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ReadError(code: errno) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw ReadError(code: EISDIR) }
        return try body(fd, st)
    }

    public static func read(_ url: URL) throws -> Data {
        try withOpenFile(url) { fd, st in
            var data = Data()
            // The size is a hint only: files that report 0 (procfs) or grow are read to EOF.
            data.reserveCapacity(max(0, Int(st.st_size)))
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = chunk.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress!, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ReadError(code: errno)
                }
                if n == 0 { break }
                data.append(contentsOf: chunk[0..<n])
            }
            return data
        }
    }
}

extension WholeFile {
    /// The file mapped read-only into memory (pages are read on first touch, so large
    /// feature files cost address space, not memory); an empty file gives empty data.
    public static func mapped(_ url: URL) throws -> Data {
        let mapped: Data? = try withOpenFile(url) { fd, st in
            guard (st.st_mode & S_IFMT) == S_IFREG else { return nil }
            let size = Int(st.st_size)
            guard size > 0 else { return Data() }
            guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
                throw ReadError(code: errno)
            }
            return Data(bytesNoCopy: base, count: size, deallocator: .custom { p, n in munmap(p, n) })
        }
        // Pipes and devices cannot be mapped: read them instead.
        return try mapped ?? read(url)
    }
}
