import ArgumentParser
import Foundation
import TangentData
import TangentEvaluation
import TangentIO
import TangentReports
import TangentTensor

struct RenderReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render-report",
        abstract:
            "Rewrite DIR/report.md and DIR/report.html from DIR/report.json (and DIR/poisoning.json), without recomputing."
    )

    @Argument(help: "Report directory written by `tangent compare`.") var dir: String
    @Option(
        help: "Also add (or replace) the LDS of this `tangent lds` run on the report's training texts in report.json.")
    var lds: String?

    func run() throws {
        try reportingErrors {
            let url = fileURL(dir)
            let jsonURL = url.appendingPathComponent("report.json")
            guard FileManager.default.fileExists(atPath: jsonURL.path) else {
                throw DataError("\(jsonURL.path): no such report (write it with `tangent compare`)")
            }
            var report = try ReportFile.read(ComparisonReport.self, from: jsonURL)
            if let lds {
                let lock = try OutputLock(guarding: url, what: "the comparison report in \(url.path)")
                defer { withExtendedLifetime(lock) {} }
                report.lds = try readLDS(lds, train: report.train, trainTexts: report.trainTexts)
                try ReportFile.write(report, to: jsonURL)
            }
            try renderReportPage(in: url)
            try AtomicFile.write(ReportMarkdown.comparison(report), to: url.appendingPathComponent("report.md"))
            print("wrote \(dir)/report.md and report.html")
        }
    }
}
