/// Classification quality on a labelled set.
public struct ClassificationReport: Sendable, Codable, Equatable {
    public let labels: [String]
    /// confusion[true][predicted] counts.
    public let confusion: [[Int]]
    public var total: Int { confusion.reduce(0) { $0 + $1.reduce(0, +) } }
    public var correct: Int { labels.indices.reduce(0) { $0 + confusion[$1][$1] } }
    public var accuracy: Double { total == 0 ? 0 : Double(correct) / Double(total) }

    public init(labels: [String], truth: [Int], predicted: [Int]) {
        precondition(truth.count == predicted.count)
        var m = [[Int]](repeating: [Int](repeating: 0, count: labels.count), count: labels.count)
        for (t, p) in zip(truth, predicted) { m[t][p] += 1 }
        self.labels = labels
        confusion = m
    }

    /// Share of texts predicted as class c that are c (nil when none are predicted c).
    public func precision(_ c: Int) -> Double? {
        let predicted = labels.indices.reduce(0) { $0 + confusion[$1][c] }
        return predicted == 0 ? nil : Double(confusion[c][c]) / Double(predicted)
    }

    /// Share of texts of class c predicted as c (nil when the set has none).
    public func recall(_ c: Int) -> Double? {
        let actual = confusion[c].reduce(0, +)
        return actual == 0 ? nil : Double(confusion[c][c]) / Double(actual)
    }

    /// A readable table: accuracy, per-class precision/recall/F1/support, confusion matrix.
    public func formatted() -> String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.4f", $0) } ?? "   -  " }
        let w = max(9, (labels.map(\.count).max() ?? 0) + 2)
        func pad(_ s: String) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
        var out = "accuracy \(String(format: "%.4f", accuracy)) (\(correct)/\(total))\n\n"
        out += pad("class") + " precision  recall     f1      support\n"
        for c in labels.indices {
            let p = precision(c)
            let r = recall(c)
            let f1: Double? = (p != nil && r != nil && p! + r! > 0) ? 2 * p! * r! / (p! + r!) : nil
            out += pad(labels[c]) + " \(f(p))     \(f(r))     \(f(f1))  \(confusion[c].reduce(0, +))\n"
        }
        out += "\nconfusion matrix (rows: true label, columns: predicted)\n"
        out += pad("") + labels.map { pad($0) }.joined() + "\n"
        for c in labels.indices {
            out += pad(labels[c]) + confusion[c].map { pad(String($0)) }.joined() + "\n"
        }
        return out
    }
}
