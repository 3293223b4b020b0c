import Foundation

/// Refuses an output that would overwrite, or be written inside, one of the same
/// command's inputs. Paths are compared after resolving symbolic links, `.` and `..`
/// and trailing slashes, so no spelling of a path gets past the check; files are also
/// compared by device and inode, which catches hard links.
public enum PathOverlap {
    /// One named path of a command: the option that gave it and its value.
    public struct Named {
        public let option: String
        public let path: String
        public init(_ option: String, _ path: String) {
            self.option = option
            self.path = path
        }
    }

    /// Throws when `output` is any of `inputs`, contains one, or lies inside one.
    public static func check(output: Named, inputs: [Named?]) throws {
        let out = resolved(URL(fileURLWithPath: output.path))
        for case let input? in inputs {
            let inp = resolved(URL(fileURLWithPath: input.path))
            let relation: String
            if out == inp || sameFile(out, inp) {
                relation = "is the \(input.option) input"
            } else if inp.hasPrefix(out.hasSuffix("/") ? out : out + "/") {
                relation = "contains the \(input.option) input"
            } else if out.hasPrefix(inp.hasSuffix("/") ? inp : inp + "/") {
                relation = "lies inside the \(input.option) input"
            } else {
                continue
            }
            throw OutputError(
                "\(output.option) \(output.path): \(relation) \(input.path) (\(inp)); writing there could destroy the input, so choose an output apart from every input"
            )
        }
    }

    /// `url`'s absolute path with every symbolic link, `.` and `..` resolved: the nearest
    /// existing ancestor through realpath(3), then the components that do not exist yet.
    public static func resolved(_ url: URL) -> String {
        var path = url.standardizedFileURL.path
        var rest: [String] = []
        while true {
            if let r = realpath(path, nil) {
                defer { free(r) }
                var base = String(cString: r)
                for c in rest.reversed() {
                    // A missing component followed by `..` cancels it.
                    if c == ".." {
                        base = (base as NSString).deletingLastPathComponent
                    } else if c != "." {
                        base = (base as NSString).appendingPathComponent(c)
                    }
                }
                return base
            }
            let parent = (path as NSString).deletingLastPathComponent
            if parent == path || parent.isEmpty { return url.standardizedFileURL.path }
            rest.append((path as NSString).lastPathComponent)
            path = parent
        }
    }

    /// Whether two existing paths are the same file (hard links included).
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat()
        var sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}
