import ArgumentParser
import Foundation
import TangentData
import TangentModel
import TangentTensor
import TangentTraining

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Classify texts with a saved model.")

    @Option(help: "Model directory.") var model: String
    @Option(name: .customLong("text"), help: "A text to classify (repeatable).") var texts: [String] = []
    @Option(help: "A file of texts (.jsonl/.csv/.tsv); labels, if present, must be ones the model knows.")
    var data: String?
    @Flag(help: "One JSON object per text: text, label, probabilities and logits (keyed by label).")
    var json = false
    @OptionGroup var threading: ThreadOptions
    @OptionGroup var columns: ColumnOptions

    func validate() throws {
        if texts.isEmpty && data == nil { throw ValidationError("give --text or --data") }
    }

    func run() throws {
        try reportingErrors {
            let clf = try loadClassifier(model, threads: threading.count)
            var inputs = texts
            for (i, t) in texts.enumerated() where t.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                throw DataError("--text #\(i + 1) is empty")
            }
            if let data {
                let url = fileURL(data)
                let rows = try columns.reader(requireLabels: false).read(url)
                for r in rows {
                    if let l = r.label, clf.labels.index(of: l) == nil {
                        throw DataError(
                            "\(url.path): line \(r.line): label '\(l)' is not one the model knows (\(clf.labels.names.joined(separator: ", ")))"
                        )
                    }
                }
                inputs += rows.map(\.text)
            }
            for p in try clf.predict(inputs) {
                if json {
                    let obj: [String: Any] = [
                        "text": p.text, "label": p.label,
                        "probabilities": Dictionary(
                            uniqueKeysWithValues: zip(clf.labels.names, p.probabilities.map(Double.init))),
                        "logits": Dictionary(uniqueKeysWithValues: zip(clf.labels.names, p.logits.map(Double.init))),
                    ]
                    let d = try JSONSerialization.data(
                        withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
                    print(String(decoding: d, as: UTF8.self))
                } else {
                    print("\(p.label)\t\(String(format: "%.4f", p.probabilities[p.labelIndex]))\t\(p.text)")
                }
            }
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accuracy, per-class precision/recall and a confusion matrix of a saved model on labelled texts.")

    @Option(help: "Model directory.") var model: String
    @Option(help: "Labelled texts: a file, or a data directory (its test.* is used).") var data: String
    @Flag(help: "Print the report as JSON.") var json = false
    @OptionGroup var threading: ThreadOptions
    @OptionGroup var columns: ColumnOptions

    func run() throws {
        try reportingErrors {
            let clf = try loadClassifier(model, threads: threading.count)
            let url = try DataLocation.file(fileURL(data), split: "test")
            let rows = try columns.reader().read(url)
            let truth = try clf.labels.indices(of: rows, source: url.path)
            // The one prediction path (row-invariant, finite-checked), as `predict` uses.
            let z = try clf.logits(rows.map(\.text)) { FiniteCheck.describe(rows[$0]) }
            let n = rows.count
            let C = clf.labels.count
            var losses = [Float](repeating: 0, count: n)
            var probs = [Float](repeating: 0, count: n * C)
            CrossEntropy.forward(losses: &losses, probs: &probs, logits: z, labels: truth, b: n, c: C)
            let loss = losses.reduce(0.0) { $0 + Double($1) } / Double(max(1, n))
            let predicted = (0..<n).map { Softmax.argmax(z[($0 * C)..<(($0 + 1) * C)]) }
            let report = ClassificationReport(labels: clf.labels.names, truth: truth, predicted: predicted)
            if json {
                guard var obj = try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any]
                else {
                    throw DataError("the classification report did not encode as a JSON object")
                }
                obj["accuracy"] = report.accuracy
                obj["loss"] = loss
                obj["data"] = url.path
                let d = try JSONSerialization.data(
                    withJSONObject: obj, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
                print(String(decoding: d, as: UTF8.self))
            } else {
                print("\(displayPath(url)): \(rows.count) texts, mean cross-entropy \(String(format: "%.4f", loss))")
                print(report.formatted(), terminator: "")
            }
        }
    }
}
