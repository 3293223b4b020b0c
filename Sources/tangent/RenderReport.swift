import ArgumentParser
import Foundation
import TangentAttribution
import TangentData
import TangentTensor

struct RenderReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render-report",
        abstract: "Rewrite DIR/report.md and DIR/report.html from DIR/report.json (and DIR/poisoning.json), without recomputing.")

    @Argument(help: "Report directory written by `tangent compare`.") var dir: String

    func run() throws {
        try reportingErrors {
            let url = fileURL(dir)
            let jsonURL = url.appendingPathComponent("report.json")
            guard FileManager.default.fileExists(atPath: jsonURL.path) else { throw DataError("\(jsonURL.path): no such report (write it with `tangent compare`)") }
            try renderReportPage(in: url)
            let report = try ReportFile.read(ComparisonReport.self, from: jsonURL)
            try AtomicFile.write(Comparison.markdown(report), to: url.appendingPathComponent("report.md"))
            print("wrote \(dir)/report.md and report.html")
        }
    }
}
