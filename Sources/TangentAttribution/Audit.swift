import Foundation
import TangentData
import TangentKernels
import TangentModel
import TangentTensor

/// How an audit scores a training text's chance of being mislabelled (higher: more suspect).
public enum AuditMethod: String, CaseIterable, Sendable, Codable {
    /// The surrogate fitted without the text's fold, against the text's label: minus its
    /// out-of-fold log-odds of that label (k-fold, the selector's folds and lambda).
    case surrogateOutOfFold = "surrogate-oof"
    /// The surrogate's self-influence: how much the text's own term in the fit raises its
    /// margin of its label (`SurrogateInfluence`, first order). A text the fit must bend
    /// toward to explain scores high.
    case surrogateSelfInfluence = "surrogate-self"
    /// The network's cross-entropy on the text's label.
    case networkLoss = "network-loss"
    /// TracIn self-influence: sum over checkpoints of eta_k ||grad loss(x_i, y_i)||^2
    /// (projected gradients).
    case tracinSelf = "tracin-self"
    /// TRAK's score of the text on itself.
    case trakSelf = "trak-self"

    /// Whether the method uses the audit's kernel (the others have their own).
    public var usesKernel: Bool { self == .surrogateOutOfFold || self == .surrogateSelfInfluence }
}

/// One training text under suspicion.
public struct AuditSuspect: Codable, Sendable {
    public let index: Int
    public let line: Int
    public let text: String
    /// The label it has, and the surrogate's out-of-fold label for it.
    public let label: String
    public let surrogateLabel: String
    /// Rank under the ranking method (1: most suspect).
    public let rank: Int
    /// Every method's score of the text.
    public let scores: [String: Double]
    /// The training texts that most support the surrogate's label for it (representer
    /// attributions W[c, j] K(x_i, x_j), the text itself left out).
    public let proponents: [AttributedText]
}

/// One method's scores and, in a benchmark, how well they find the flipped labels.
public struct AuditMethodReport: Codable, Sendable {
    public let method: String
    /// The kernel behind the scores (nil for the network's loss).
    public let kernel: String?
    public let seconds: Double
    /// ROC AUC of the scores for flipped against untouched texts (benchmark only).
    public var auc: Double? = nil
    /// Share of flipped texts among the top (flip rate x n) (benchmark only).
    public var precisionAtFlipRate: Double? = nil
}

/// A planted-label-noise benchmark's setting.
public struct AuditFlip: Codable, Sendable {
    public let rate: Double
    public let seed: UInt64
    /// Indices of the flipped training texts.
    public let flipped: [Int]
    /// The recipe the model was retrained with, and its training seconds.
    public let recipe: String
    public let trainingSeconds: Double

    public init(rate: Double, seed: UInt64, flipped: [Int], recipe: String, trainingSeconds: Double) {
        self.rate = rate; self.seed = seed; self.flipped = flipped; self.recipe = recipe; self.trainingSeconds = trainingSeconds
    }
}

/// `tangent audit`: training texts ranked by how likely their label is wrong.
public struct AuditReport: Codable, Sendable {
    public let model: String
    public let train: String
    public let trainTexts: Int
    public let kernel: String
    /// The lambda the surrogate methods used.
    public let lambda: Double?
    public let rankedBy: String
    public var methods: [AuditMethodReport]
    public let suspects: [AuditSuspect]
    public var flip: AuditFlip? = nil
}

public enum Audit {
    /// Scores every training text of `setup` by each of `methods` and lists the `top`
    /// suspects under the first method, with the surrogate's label for each and its
    /// `proponents` strongest supporters. Surrogate methods use `kernel`.
    public static func run(setup: AttributionSetup, kernel: SurrogateKernel, methods: [AuditMethod], top: Int, proponents: Int = 3,
                           modelName: String, trainName: String, log: (String) -> Void = { _ in },
                           progress: @escaping (String, Int, Int) -> Void = { _, _, _ in }) throws -> (report: AuditReport, scores: [[Double]]) {
        precondition(!methods.isEmpty)
        let clf = setup.classifier, train = setup.train, n = train.count, C = clf.labels.count
        let labels = try clf.labels.indices(of: train, source: trainName)
        var scores: [[Double]] = [], rows: [AuditMethodReport] = []
        var engine: AttributionEngine?
        var outOfFold: [Double]?
        func surrogate() throws -> AttributionEngine {
            if let engine { return engine }
            let e = try AttributionEngine(setup: setup, kernel: kernel, log: log, progress: { progress("\(kernel.name) train", $0, $1) })
            engine = e
            return e
        }
        // Out-of-fold logits at the chosen lambda, on the selector's folds.
        func oof(_ e: AttributionEngine) throws -> [Double] {
            if let outOfFold { return outOfFold }
            let gram = try e.source.gram()
            let scorer = OutOfFoldScorer(selector: setup.selector, kernel: gram, labels: labels, networkLogits: try e.source.trainLogits(), classes: C,
                                         kernelScale: KernelGLM.kernelScale(gram.diagonal), threads: setup.threads)
            let z = scorer.evaluate(e.glm.lambda).outOfFold
            outOfFold = z
            return z
        }
        for method in methods {
            log("== \(method.rawValue)")
            let started = Date()
            var s: [Double]
            var kernelName: String? = kernel.name
            switch method {
            case .networkLoss:
                kernelName = nil
                let z = try clf.logits(train.map(\.text))
                s = (0..<n).map { i in -Softmax.logProbabilities((0..<C).map { Double(z[i * C + $0]) })[labels[i]] }
            case .surrogateOutOfFold:
                let z = try oof(try surrogate())
                s = (0..<n).map { i in -Softmax.logOdds((0..<C).map { z[i * C + $0] }, classIndex: labels[i]) }
            case .surrogateSelfInfluence:
                let e = try surrogate()
                let gram = try e.source.gram()
                let influence = try e.surrogateInfluence()
                s = influence.selfScores(rows: SurrogateInfluence.dense(gram).map(Float.init), classes: labels)
            case .tracinSelf:
                kernelName = SurrogateKernel.tracin.name
                var ts = setup
                ts.ensemble = []
                let source = try ts.source(for: .tracin, labels: labels, log: log, progress: { progress("tracin train", $0, $1) })
                // The training features are gradients at the training labels: the diagonal
                // is sum_k eta_k ||g_k(x_i)||^2.
                s = try source.gram().diagonal
            case .trakSelf:
                kernelName = SurrogateKernel.trak.name
                let source = try setup.source(for: .trak, labels: labels, log: log, progress: { progress("trak train", $0, $1) })
                let q = try source.query(train, source: trainName, cached: true, lossLabels: labels, log: log,
                                         progress: { progress("trak self", $0, $1) })
                let k = q.scores ?? q.rows
                s = (0..<n).map { Double(k[$0 * n + $0]) }
            }
            let seconds = Date().timeIntervalSince(started)
            log(String(format: "%@: %.1f s", method.rawValue, seconds))
            scores.append(s)
            rows.append(AuditMethodReport(method: method.rawValue, kernel: kernelName, seconds: seconds))
        }
        // The suspects under the first method, with the surrogate's view of each.
        let e = try surrogate()
        let z = try oof(e)
        let gram = try e.source.gram()
        let order = ranking(scores[0])
        let suspects = try order.prefix(top).enumerated().map { rank, i -> AuditSuspect in
            let c = Softmax.argmax((0..<C).map { z[i * C + $0] })
            let row = gram.block(rows: [i], columns: Array(0..<n))
            let attribution = e.glm.attributions(kernelRow: row, classIndex: c)
            let best = (0..<n).filter { $0 != i && attribution[$0] > 0 }.sorted { attribution[$0] > attribution[$1] || (attribution[$0] == attribution[$1] && $0 < $1) }
            let items = best.prefix(proponents).map { j in
                AttributedText(index: j, line: train[j].line, text: train[j].text, label: train[j].label ?? "", score: attribution[j],
                               kernel: Double(row[j]), layerShares: nil)
            }
            return AuditSuspect(index: i, line: train[i].line, text: train[i].text, label: train[i].label ?? "", surrogateLabel: clf.labels.names[c],
                                rank: rank + 1, scores: Dictionary(uniqueKeysWithValues: zip(methods.map(\.rawValue), scores.map { $0[i] })),
                                proponents: Array(items))
        }
        let report = AuditReport(model: modelName, train: trainName, trainTexts: n, kernel: kernel.name, lambda: e.glm.lambda,
                                 rankedBy: methods[0].rawValue, methods: rows, suspects: suspects)
        return (report, scores)
    }

    /// Indices by descending score, ties by index (NaN last).
    public static func ranking(_ scores: [Double]) -> [Int] {
        scores.indices.sorted { a, b in
            let x = scores[a].isNaN ? -Double.infinity : scores[a], y = scores[b].isNaN ? -Double.infinity : scores[b]
            return x > y || (x == y && a < b)
        }
    }

    /// Flips round(rate n) seeded training labels, each to another label drawn uniformly:
    /// the texts with their new labels and the flipped indices (ascending).
    public static func flip(_ texts: [LabeledText], labels: LabelSet, rate: Double, seed: UInt64) throws -> (texts: [LabeledText], flipped: [Int]) {
        precondition(rate > 0 && rate < 1 && labels.count >= 2)
        let given = try labels.indices(of: texts, source: "training texts")
        let count = max(1, Int((rate * Double(texts.count)).rounded()))
        let rng = CounterRNG.derive(seed, 0xF11D)
        let chosen = texts.indices.sorted { rng.bits(UInt64($0)) < rng.bits(UInt64($1)) }.prefix(count).sorted()
        var out = texts
        for i in chosen {
            let shift = 1 + Int(rng.bits(UInt64(1 << 40) + UInt64(i)) % UInt64(labels.count - 1))
            out[i] = LabeledText(text: texts[i].text, label: labels.names[(given[i] + shift) % labels.count], line: texts[i].line)
        }
        return (out, Array(chosen))
    }

    /// Share of `positive` among the `k` highest scores.
    public static func precision(scores: [Double], positive: Set<Int>, k: Int) -> Double {
        let top = ranking(scores).prefix(k)
        return top.isEmpty ? .nan : Double(top.filter(positive.contains).count) / Double(top.count)
    }
}
