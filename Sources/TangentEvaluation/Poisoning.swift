import Foundation
import TangentAttribution
import TangentData
import TangentFeatures
import TangentModel
import TangentSurrogate
import TangentTensor

/// A backdoor planted in a training set: `trigger` inserted into a seeded `fraction` of
/// the `source` class's training texts, which are relabelled `target`.
public struct PoisonPlan: Sendable, Codable, Equatable {
    public var trigger: String
    public var source: String
    public var target: String
    public var fraction: Double
    public var seed: UInt64

    public init(trigger: String, source: String, target: String, fraction: Double, seed: UInt64) {
        self.trigger = trigger
        self.source = source
        self.target = target
        self.fraction = fraction
        self.seed = seed
    }

    /// Words before which the trigger may go: it must survive truncation to the
    /// model's maximum length, so it never lands past the tenth word.
    public static let maxPosition = 10

    /// `text` with the trigger inserted before a seeded word (0 ... min(words, 10)).
    public func insert(into text: String, key: UInt64) -> String {
        var words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        let rng = CounterRNG.derive(seed, 0x7219_6E, key)
        let at = Int(rng.bits(0) % UInt64(min(words.count, PoisonPlan.maxPosition) + 1))
        words.insert(trigger, at: at)
        return words.joined(separator: " ")
    }

    /// The poisoned training set (same order and lines) and the indices of poisoned texts.
    public func plant(in train: [LabeledText]) throws -> (texts: [LabeledText], poisoned: [Int]) {
        guard (0...1).contains(fraction), fraction > 0 else {
            throw DataError("poison fraction \(fraction) must be in (0, 1]")
        }
        let candidates = train.indices.filter { train[$0].label == source }
        guard !candidates.isEmpty else {
            throw DataError("no training texts of the source class '\(source)' to poison")
        }
        guard train.contains(where: { $0.label == target }) else {
            throw DataError("no training texts of the target class '\(target)'")
        }
        guard source != target else { throw DataError("the source and target classes are both '\(source)'") }
        let count = max(1, Int((Double(candidates.count) * fraction).rounded()))
        let rng = CounterRNG.derive(seed, 0x9015_0E)
        let chosen = candidates.sorted { rng.bits(UInt64($0)) < rng.bits(UInt64($1)) }.prefix(count).sorted()
        var texts = train
        for i in chosen {
            texts[i] = LabeledText(
                text: insert(into: train[i].text, key: UInt64(i)), label: target, line: train[i].line)
        }
        return (texts, chosen)
    }

    /// The source class's test texts with the trigger inserted (labels kept: the truth).
    public func triggered(_ test: [LabeledText]) -> [LabeledText] {
        test.enumerated().filter { $0.element.label == source }.map {
            LabeledText(
                text: insert(into: $0.element.text, key: 1 << 40 | UInt64($0.offset)), label: source,
                line: $0.element.line)
        }
    }
}

/// How well one kernel's attributions find the poisoned training texts.
public struct PoisonKernelReport: Sendable, Codable {
    public let kernel: String
    /// Mean over flipped triggered test texts of the share of poisoned texts among the
    /// top-k training texts by attribution toward the target class, for each k.
    public let precisionAtK: [Int: Double]
    /// Mean over flipped triggered test texts of the ROC AUC of the attribution scores
    /// separating poisoned from clean training texts (ties count half).
    public let auc: Double
    /// Faithfulness (tau over log-odds) on the clean and on the triggered test texts.
    public let tauClean: Double
    public let tauTriggered: Double
    /// Agreement of surrogate and network labels on the triggered texts.
    public let agreementTriggered: Double
    public let seconds: Double
    /// What a reader must know to interpret the row (TracIn: which checkpoints were summed).
    public var note: String? = nil
}

/// The poisoning benchmark: attack, then retrieval of the poisons per kernel.
public struct PoisonReport: Sendable, Codable {
    public let plan: PoisonPlan
    public let data: String
    public let trainTexts: Int
    public let poisonedTexts: Int
    public let testTexts: Int
    public let triggeredTexts: Int
    /// Network accuracy on the clean test texts.
    public let cleanAccuracy: Double
    /// Share of triggered source-class test texts the network labels `target`.
    public let attackSuccess: Double
    /// Share of the same texts without the trigger labelled `target` (the attack's baseline).
    public let cleanSourceToTarget: Double
    /// Triggered texts that flipped: the ones retrieval is averaged over.
    public let flippedTexts: Int
    /// Precision of picking training texts at random: poisoned / training texts.
    public let chancePrecision: Double
    public let projDim: Int
    /// The projector of the projected kernels (nil in reports from before sketches: Rademacher).
    public var projector: String? = nil
    public let kernels: [PoisonKernelReport]
}

public enum Poisoning {
    /// ROC AUC of `scores` for positives `positive` (Mann-Whitney U with ties counted half).
    public static func auc(scores: [Double], positive: Set<Int>) -> Double {
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let rank = Double(i + j) / 2 + 1
            for r in i...j where positive.contains(order[r]) { rankSum += rank }
            i = j + 1
        }
        let p = Double(positive.count)
        let n = Double(scores.count) - p
        guard p > 0 && n > 0 else { return .nan }
        return (rankSum - p * (p + 1) / 2) / (p * n)
    }

    /// Evaluates a model trained on the poisoned set `train` (poisoned indices `poisoned`):
    /// the attack on `triggered` (see `PoisonPlan.triggered`) and, per kernel, retrieval of
    /// the poisons from the attributions of the triggered texts that flipped to the target.
    public static func evaluate(
        classifier: Classifier, plan: PoisonPlan, train: [LabeledText], poisoned: [Int],
        cleanTest: [LabeledText], triggered: [LabeledText], kernels: [SurrogateKernel],
        ks: [Int], projDim: Int, seed: UInt64, projector: ProjectorChoice = .default, cache: URL,
        checkpoints: URL? = nil, ensemble: Int = 1, selector: LambdaSelector = LambdaSelector(), dataName: String,
        threads: Int = Threads.cores, log: (String) -> Void = { _ in },
        progress: @escaping (String, Int, Int) -> Void = { _, _, _ in }
    ) throws -> PoisonReport {
        guard let target = classifier.labels.index(of: plan.target),
            let source = classifier.labels.index(of: plan.source)
        else {
            throw DataError(
                "the model's labels (\(classifier.labels.names.joined(separator: ", "))) lack '\(plan.source)' or '\(plan.target)'"
            )
        }
        guard !triggered.isEmpty else {
            throw DataError("\(dataName): no test texts of the source class '\(plan.source)' to trigger")
        }
        if let k = ks.first(where: { $0 < 1 || $0 > poisoned.count }) {
            throw DataError("precision@\(k) needs k between 1 and the \(poisoned.count) poisoned training texts")
        }
        let cleanLabels = try classifier.labels.indices(of: cleanTest, source: dataName)
        let cleanPred = try classifier.predict(cleanTest.map(\.text)).map(\.labelIndex)
        let triggeredPred = try classifier.predict(triggered.map(\.text)).map(\.labelIndex)
        let sourceClean = cleanTest.indices.filter { cleanLabels[$0] == source }
        let flipped = triggered.indices.filter { triggeredPred[$0] == target }
        let poisonSet = Set(poisoned)
        log(
            String(
                format:
                    "attack: %ld of %ld triggered '%@' test texts predicted '%@' (%.1f%%; %.1f%% without the trigger)",
                flipped.count, triggered.count, plan.source, plan.target,
                100 * Double(flipped.count) / Double(triggered.count),
                100 * Double(sourceClean.filter { cleanPred[$0] == target }.count) / Double(max(1, sourceClean.count))))
        // The ensemble: the poisoned model and its latest earlier epochs. TRAK averages over
        // them inside its estimator; every other method but TracIn (already a sum over the
        // checkpoints) averages its attributions over one surrogate per model.
        let models = try TracIn.ensemble(of: classifier, directory: checkpoints, count: ensemble, threads: threads)
        let setup = AttributionSetup(
            classifier: classifier, train: train, projDim: projDim, seed: seed, projector: projector, cache: cache,
            selector: selector, threads: threads, checkpoints: checkpoints, ensemble: models)
        let attack = Attack(
            source: source, target: target, flipped: flipped, poisoned: poisonSet, cleanLabels: cleanLabels, ks: ks)
        let rows = try setup.forEachKernel(kernels, log: log, progress: progress) { run in
            try kernelRow(
                run, attack: attack, setup: setup, models: models, triggered: triggered, cleanTest: cleanTest,
                dataName: dataName, log: log)
        }
        var report = PoisonReport(
            plan: plan, data: dataName, trainTexts: train.count, poisonedTexts: poisoned.count,
            testTexts: cleanTest.count,
            triggeredTexts: triggered.count,
            cleanAccuracy: Double(cleanTest.indices.filter { cleanPred[$0] == cleanLabels[$0] }.count)
                / Double(cleanTest.count),
            attackSuccess: Double(flipped.count) / Double(triggered.count),
            cleanSourceToTarget: Double(sourceClean.filter { cleanPred[$0] == target }.count)
                / Double(max(1, sourceClean.count)),
            flippedTexts: flipped.count, chancePrecision: Double(poisoned.count) / Double(train.count),
            projDim: projDim, kernels: rows)
        report.projector = projector.tag
        return report
    }

    /// What every kernel's row needs of the attack: its classes, the triggered texts that
    /// flipped to the target, the poisoned training texts, the clean texts' labels and the
    /// k of precision@k.
    struct Attack {
        let source: Int, target: Int
        let flipped: [Int]
        let poisoned: Set<Int>
        let cleanLabels: [Int]
        let ks: [Int]
    }

    /// One kernel's row: retrieval of the poisons from the attributions of the flipped
    /// triggered texts (averaged over the ensemble's models, one surrogate each, unless
    /// the kernel already sums or averages them), and the surrogate's tau on the clean and
    /// the triggered texts.
    static func kernelRow(
        _ run: KernelRun, attack: Attack, setup: AttributionSetup, models: [Classifier], triggered: [LabeledText],
        cleanTest: [LabeledText], dataName: String, log: (String) -> Void
    ) throws -> PoisonKernelReport {
        let C = setup.classifier.labels.count
        let k = run.kernel
        let engine = run.engine
        let n = setup.train.count
        let qT = try engine.query(
            triggered, source: "triggered test texts", cached: true, log: log, progress: run.progress("triggered"))
        let qC = try engine.query(
            cleanTest, source: dataName, cached: true, log: log, progress: run.progress("clean"))
        let others =
            k.ensembled || k.checkpointSummed
            ? []
            : try ensembleEngines(setup, models: models, kernel: k, triggered: triggered, run: run, log: log)
        let (precision, aucMean) = retrieval(flipped: attack.flipped, poisoned: attack.poisoned, ks: attack.ks) { t in
            // The mean over the ensemble of each model's attributions toward the target.
            var scores = engine.glm.attributions(
                kernelRow: Array(qT.rows[(t * n)..<((t + 1) * n)]), classIndex: attack.target)
            for o in others {
                let a = o.engine.glm.attributions(
                    kernelRow: Array(o.rows[(t * n)..<((t + 1) * n)]), classIndex: attack.target)
                for i in 0..<n { scores[i] += a[i] }
            }
            return others.isEmpty ? scores : scores.map { $0 / Double(others.count + 1) }
        }
        let trigLabels = [Int](repeating: attack.source, count: triggered.count)
        let mc = Comparison.measure(
            surrogate: engine.glm.logits(kernelRows: qC.rows), network: qC.logits.map(Double.init),
            labels: attack.cleanLabels, classes: C)
        let mt = Comparison.measure(
            surrogate: engine.glm.logits(kernelRows: qT.rows), network: qT.logits.map(Double.init),
            labels: trigLabels, classes: C)
        let averaged =
            others.isEmpty
            ? nil
            : "attributions averaged over \(others.count + 1) models (the model and its latest earlier epochs)"
        let row = PoisonKernelReport(
            kernel: k.name, precisionAtK: precision, auc: aucMean,
            tauClean: mc.tau, tauTriggered: mt.tau, agreementTriggered: mt.agreement, seconds: run.seconds,
            note: [engine.checkpointSummary, averaged].compactMap { $0 }.joined(separator: "; ").nilIfEmpty)
        log(
            String(
                format: "%@: AUC %.3f, %@, tau clean %.3f, triggered %.3f", k.name, row.auc,
                attack.ks.map { String(format: "precision@%ld %.3f", $0, precision[$0]!) }.joined(separator: ", "),
                row.tauClean, row.tauTriggered))
        return row
    }

    /// The engines of the ensemble's other models (one surrogate each) with their kernel
    /// rows of the triggered texts.
    static func ensembleEngines(
        _ setup: AttributionSetup, models: [Classifier], kernel k: SurrogateKernel, triggered: [LabeledText],
        run: KernelRun, log: (String) -> Void
    ) throws -> [(engine: AttributionEngine, rows: [Float])] {
        try models.enumerated().map { j, m in
            log("\(k.name): ensemble model \(j + 2)/\(models.count + 1)")
            var s = setup
            s.classifier = m
            s.ensemble = []
            s.checkpoints = nil
            let e = try AttributionEngine(setup: s, kernel: k, log: log, progress: run.progress("train"))
            return (
                e,
                try e.query(
                    triggered, source: "triggered test texts", cached: true, log: log,
                    progress: run.progress("triggered")
                ).rows
            )
        }
    }

    /// Precision@k and ROC AUC of finding the `poisoned` training texts from the
    /// attribution scores of each `flipped` text (`scores(t)`), averaged over those texts.
    static func retrieval(flipped: [Int], poisoned: Set<Int>, ks: [Int], scores: (Int) -> [Double]) -> (
        precision: [Int: Double], auc: Double
    ) {
        var precision = [Int: Double](uniqueKeysWithValues: ks.map { ($0, 0.0) })
        var aucSum = 0.0
        var aucCount = 0
        for t in flipped {
            let s = scores(t)
            let order = s.indices.sorted { s[$0] > s[$1] }
            for kk in ks {
                precision[kk]! += Double(order.prefix(kk).filter { poisoned.contains($0) }.count) / Double(kk)
            }
            let a = auc(scores: s, positive: poisoned)
            if !a.isNaN {
                aucSum += a
                aucCount += 1
            }
        }
        for kk in ks { precision[kk] = flipped.isEmpty ? .nan : precision[kk]! / Double(flipped.count) }
        return (precision, aucCount == 0 ? .nan : aucSum / Double(aucCount))
    }

}

extension String {
    /// nil for the empty string.
    var nilIfEmpty: String? { isEmpty ? nil : self }
}
