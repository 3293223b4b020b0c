import Foundation
import Testing

/// The library guide's examples (docs/library.md, linked from the README) are the program
/// `readme-examples`: the same code, compiled with the package and run here, so the guide
/// cannot show code that no longer builds or works.
@Suite struct ReadmeExamplesTests {
    static let source = CLI.root.appendingPathComponent("Sources/readme-examples/main.swift")

    /// The Swift blocks of docs/library.md (the README's "Library use" guide), joined by newlines.
    static func readmeBlocks() throws -> String {
        let guide = try String(contentsOf: CLI.root.appendingPathComponent("docs/library.md"), encoding: .utf8)
        var blocks: [String] = []
        var rest = guide[...]
        while let open = rest.range(of: "```swift\n") {
            guard let close = rest[open.upperBound...].range(of: "```") else {
                throw CLIError("docs/library.md: unterminated swift block")
            }
            blocks.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return blocks.joined(separator: "\n")
    }

    @Test func readmeShowsTheExampleProgram() throws {
        let program = try String(contentsOf: Self.source, encoding: .utf8)
        // The program is the blocks after its leading comment.
        let body = program.split(separator: "\n", omittingEmptySubsequences: false).drop { $0.hasPrefix("//") }.joined(
            separator: "\n")
        let blocks = try Self.readmeBlocks()
        #expect(blocks.count > 500)
        #expect(body == blocks, "Sources/readme-examples/main.swift differs from docs/library.md's swift blocks")
    }

    @Test func examplesRunAndAttribute() throws {
        let exe = CLI.binary.deletingLastPathComponent().appendingPathComponent("readme-examples")
        let p = Process()
        p.executableURL = exe
        p.currentDirectoryURL = CLI.root
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(stderr)")
        let lines = stdout.split(separator: "\n").map(String.init)
        // predict, the exact kernel with its five layer groups, the feature file, then one
        // explanation with proponents (positive scores) of the predicted label.
        // The five-line example: the predicted label, then its five proponents' texts.
        #expect(lines.first?.hasPrefix("negative [\"") == true, "\(lines.first ?? "")")
        #expect(lines.contains { $0.hasPrefix("positive [") })
        // The LDS study: each kernel's mean LDS, a correlation.
        for kernel in ["grad-cos", "proj-trntk"] {
            let lds = try #require(lines.first { $0.hasPrefix(kernel + " ") }, "no LDS line for \(kernel)")
            let value = try #require(Double(lds.dropFirst(kernel.count + 1)), "\(lds)")
            #expect(value > -1 && value < 1, "\(lds)")
        }
        #expect(lines.contains { $0.contains("\"embeddings\", \"blocks.0\", \"blocks.1\", \"norm\", \"head\"") })
        #expect(lines.contains("64 texts featurized"))
        let explanation = try #require(lines.firstIndex { $0.contains("surrogate:") })
        let proponents = lines[(explanation + 1)...].filter { $0.hasPrefix("  + ") }
        #expect(proponents.count == 3)
        #expect(proponents.allSatisfy { Double($0.dropFirst(4).split(separator: " ")[0]).map { $0 > 0 } ?? false })
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
