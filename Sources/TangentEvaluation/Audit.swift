import Foundation
import TangentAttribution
import TangentData
import TangentFeatures
import TangentModel
import TangentSurrogate
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
    /// EK-FAC self-influence: grad L(x_i)^T (G + lambda)^-1 grad L(x_i) at its label, the
    /// diagonal of the `ekfac` kernel (projected whitened gradients).
    case ekfacSelf = "ekfac-self"

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
        self.rate = rate
        self.seed = seed
        self.flipped = flipped
        self.recipe = recipe
        self.trainingSeconds = trainingSeconds
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
    public static func run(
        setup: AttributionSetup, kernel: SurrogateKernel, methods: [AuditMethod], top: Int, proponents: Int = 3,
        modelName: String, trainName: String, log: @escaping (String) -> Void = { _ in },
        progress: @escaping (String, Int, Int) -> Void = { _, _, _ in }
    ) throws -> (report: AuditReport, scores: [[Double]]) {
        precondition(!methods.isEmpty)
        let run = try AuditRun(setup: setup, kernel: kernel, trainName: trainName, log: log, progress: progress)
        var scores: [[Double]] = []
        var rows: [AuditMethodReport] = []
        for method in methods {
            log("== \(method.rawValue)")
            let started = Date()
            let (s, kernelName) = try run.scores(method)
            let seconds = Date().timeIntervalSince(started)
            log(String(format: "%@: %.1f s", method.rawValue, seconds))
            scores.append(s)
            rows.append(AuditMethodReport(method: method.rawValue, kernel: kernelName, seconds: seconds))
        }
        let suspects = try ranking(scores[0]).prefix(top).enumerated().map { rank, i in
            try run.suspect(
                i, rank: rank + 1,
                scores: Dictionary(uniqueKeysWithValues: zip(methods.map(\.rawValue), scores.map { $0[i] })),
                proponents: proponents)
        }
        let report = AuditReport(
            model: modelName, train: trainName, trainTexts: setup.train.count, kernel: kernel.name,
            lambda: try run.surrogate().glm.lambda, rankedBy: methods[0].rawValue, methods: rows, suspects: suspects)
        return (report, scores)
    }

    /// Indices by descending score, ties by index (NaN last).
    public static func ranking(_ scores: [Double]) -> [Int] {
        scores.indices.sorted { a, b in
            let x = scores[a].isNaN ? -Double.infinity : scores[a]
            let y = scores[b].isNaN ? -Double.infinity : scores[b]
            return x > y || (x == y && a < b)
        }
    }

    /// Flips round(rate n) seeded training labels, each to another label drawn uniformly:
    /// the texts with their new labels and the flipped indices (ascending).
    public static func flip(_ texts: [LabeledText], labels: LabelSet, rate: Double, seed: UInt64) throws -> (
        texts: [LabeledText], flipped: [Int]
    ) {
        precondition(rate > 0 && rate < 1 && labels.count >= 2)
        let given = try labels.indices(of: texts, source: "training texts")
        let count = max(1, Int((rate * Double(texts.count)).rounded()))
        let rng = CounterRNG.derive(seed, 0xF11D)
        let chosen = texts.indices.sorted { rng.bits(UInt64($0)) < rng.bits(UInt64($1)) }.prefix(count).sorted()
        var out = texts
        for i in chosen {
            let shift = 1 + Int(rng.bits(UInt64(1 << 40) + UInt64(i)) % UInt64(labels.count - 1))
            out[i] = LabeledText(
                text: texts[i].text, label: labels.names[(given[i] + shift) % labels.count], line: texts[i].line)
        }
        return (out, Array(chosen))
    }

    /// Share of `positive` among the `k` highest scores.
    public static func precision(scores: [Double], positive: Set<Int>, k: Int) -> Double {
        let top = ranking(scores).prefix(k)
        return top.isEmpty ? .nan : Double(top.filter(positive.contains).count) / Double(top.count)
    }
}

/// One audit's state: the training texts' labels, and the surrogate and its out-of-fold
/// logits, built once when a method or the suspects first need them.
final class AuditRun {
    let setup: AttributionSetup
    let kernel: SurrogateKernel
    let trainName: String
    let labels: [Int]
    let log: (String) -> Void
    let progress: (String, Int, Int) -> Void
    private var engine: AttributionEngine?
    private var outOfFold: [Double]?

    init(
        setup: AttributionSetup, kernel: SurrogateKernel, trainName: String, log: @escaping (String) -> Void,
        progress: @escaping (String, Int, Int) -> Void
    ) throws {
        self.setup = setup
        self.kernel = kernel
        self.trainName = trainName
        self.log = log
        self.progress = progress
        labels = try setup.classifier.labels.indices(of: setup.train, source: trainName)
    }

    var n: Int { setup.train.count }
    var classes: Int { setup.classifier.labels.count }

    /// The surrogate on all training texts (lambda by the selector).
    func surrogate() throws -> AttributionEngine {
        if let engine { return engine }
        let e = try AttributionEngine(
            setup: setup, kernel: kernel, log: log, progress: { self.progress("\(self.kernel.name) train", $0, $1) })
        engine = e
        return e
    }

    /// The surrogate's train x train kernel, built once.
    func gram() throws -> TrainingKernel { try surrogate().trainingKernel() }

    /// Out-of-fold logits [n, C] at the chosen lambda, on the selector's folds.
    func outOfFoldLogits() throws -> [Double] {
        if let outOfFold { return outOfFold }
        let e = try surrogate()
        let gram = try gram()
        let scorer = OutOfFoldScorer(
            selector: setup.selector, kernel: gram, labels: labels, networkLogits: try e.source.trainLogits(),
            classes: classes,
            kernelScale: KernelGLM.kernelScale(gram.diagonal), threads: setup.threads)
        let z = scorer.evaluate(e.glm.lambda).outOfFold
        outOfFold = z
        return z
    }

    /// Every training text's score under `method` (higher: more suspect), and the kernel
    /// behind it (nil for the network's loss).
    func scores(_ method: AuditMethod) throws -> (scores: [Double], kernel: String?) {
        let train = setup.train
        let n = self.n
        let C = classes
        switch method {
        case .networkLoss:
            let z = try setup.classifier.logits(train.map(\.text))
            return (
                (0..<n).map { i in -Softmax.logProbabilities((0..<C).map { Double(z[i * C + $0]) })[labels[i]] }, nil
            )
        case .surrogateOutOfFold:
            let z = try outOfFoldLogits()
            return (
                (0..<n).map { i in -Softmax.logOdds((0..<C).map { z[i * C + $0] }, classIndex: labels[i]) }, kernel.name
            )
        case .surrogateSelfInfluence:
            let e = try surrogate()
            let rows = SurrogateInfluence.dense(try gram()).map(Float.init)
            return (try e.surrogateInfluence().selfScores(rows: rows, classes: labels), kernel.name)
        case .tracinSelf:
            var ts = setup
            ts.ensemble = []
            let source = try ts.source(
                for: .tracin, labels: labels, log: log, progress: { self.progress("tracin train", $0, $1) })
            // The training features are gradients at the training labels: the diagonal
            // is sum_k eta_k ||g_k(x_i)||^2.
            return (try source.gram().diagonal, SurrogateKernel.tracin.name)
        case .trakSelf:
            let source = try setup.source(
                for: .trak, labels: labels, log: log, progress: { self.progress("trak train", $0, $1) })
            let q = try source.query(
                train, source: trainName, cached: true, lossLabels: labels, log: log,
                progress: { self.progress("trak self", $0, $1) })
            let k = q.scores ?? q.rows
            return ((0..<n).map { Double(k[$0 * n + $0]) }, SurrogateKernel.trak.name)
        case .ekfacSelf:
            // The training features are whitened gradients at the training labels.
            let source = try setup.source(
                for: .ekfac, labels: labels, log: log, progress: { self.progress("ekfac train", $0, $1) })
            return (try source.gram().diagonal, SurrogateKernel.ekfac.name)
        }
    }

    /// Training text i as a suspect: the surrogate's out-of-fold label c for it and the
    /// `proponents` training texts j != i with the largest positive W[c, j] K(x_i, x_j).
    func suspect(_ i: Int, rank: Int, scores: [String: Double], proponents: Int) throws -> AuditSuspect {
        let train = setup.train
        let n = self.n
        let C = classes
        let e = try surrogate()
        let z = try outOfFoldLogits()
        let c = Softmax.argmax((0..<C).map { z[i * C + $0] })
        let row = try gram().block(rows: [i], columns: Array(0..<n))
        let attribution = e.glm.attributions(kernelRow: row, classIndex: c)
        var best = TopK(k: proponents)
        for j in 0..<n where j != i && attribution[j] > 0 && best.admits(attribution[j]) {
            best.insert(attribution[j], j, kernel: Double(row[j]))
        }
        let items = best.sorted.map { b in
            AttributedText(
                index: b.index, line: train[b.index].line, text: train[b.index].text, label: train[b.index].label ?? "",
                score: b.score, kernel: b.kernel, layerShares: nil)
        }
        return AuditSuspect(
            index: i, line: train[i].line, text: train[i].text, label: train[i].label ?? "",
            surrogateLabel: setup.classifier.labels.names[c], rank: rank, scores: scores, proponents: items)
    }
}
