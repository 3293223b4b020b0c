import Foundation
import TangentAttribution
import TangentData
import TangentFeatures
import TangentModel
import TangentSurrogate
import TangentTensor

/// How an LDS row's attributions are formed (the report's `attribution` column).
enum LDSAttribution: String {
    /// A kGLM surrogate's representer attribution W[c, i] K(x, x_i).
    case surrogate
    /// The surrogate's own first-order influence (`KERNEL-infl`).
    case surrogateInfluence = "surrogate influence"
    /// The method's kernel value with the test text's loss of the compared class.
    case kernel
    /// TRAK's score.
    case trak
    /// Each training text's label residual alone (the class prior).
    case labelResidual = "label residual"
}

/// One LDS evaluation's shared setting (`Datamodeling.evaluate`): the models, texts,
/// subsets and margins, and how each method's attributions are scored against them.
struct LDSEvaluation {
    let models: [Classifier]
    let train: [LabeledText], test: [LabeledText]
    let subsets: [[Int]], margins: [[Double]]
    /// The mean of two trainings' margins (with a noise ceiling).
    let meanMargins: [[Double]]?
    let lambdaSelection: (subsets: [[Int]], margins: [[Double]])?
    /// The compared class of each test text.
    let compared: [Int]
    let projDim: Int, seed: UInt64
    let projector: ProjectorChoice
    let cache: URL, checkpoints: URL?
    let resamples: Int
    let selector: LambdaSelector
    let log: (String) -> Void
    let progress: (String, Int, Int) -> Void

    var n: Int { train.count }

    /// Choosing lambda by LDS needs every model's fit at every lambda of one fixed grid; it
    /// reaches 1e6, where strong regularization (or damping) has long stopped helping.
    var ldsSelector: LambdaSelector {
        var s = selector.exhaustive
        s.grid = Array(Set(LambdaSelector.defaultGrid + [100, 1000, 10_000, 1e5, 1e6])).sorted()
        s.extendTo = nil
        return s
    }

    /// The LDS row of attribution scores [tests, n], also against the mean of two trainings; logged.
    func scored(_ kernel: String, _ attribution: LDSAttribution, _ scores: [Double], size: Int, seconds: Double)
        -> LDSKernelReport
    {
        var row = LDSKernelReport(
            kernel: kernel, attribution: attribution.rawValue,
            lds: Datamodeling.score(scores, n: n, subsets: subsets, margins: margins, resamples: resamples, seed: seed),
            seconds: seconds, ensemble: size)
        row.ldsMean = meanMargins.map {
            Datamodeling.score(scores, n: n, subsets: subsets, margins: $0, resamples: resamples, seed: seed)
        }
        log(
            String(
                format: "%@ (%@, %ld model%@): LDS %.3f [%.3f, %.3f]%@%@", kernel, attribution.rawValue, size,
                size == 1 ? "" : "s",
                row.lds.mean, row.lds.low, row.lds.high,
                row.ldsMean.map { String(format: ", against the mean of two trainings %.3f", $0.mean) } ?? "",
                row.lds.undefined > 0 ? " (\(row.lds.undefined) test texts undefined)" : ""))
        return row
    }

    /// The class prior: each training text's label residual for the compared class,
    /// [y_i = c] - p_c(x_i) on the model under study, the same for every test text of that
    /// class. What LDS gives for class balance alone, with no similarity between texts.
    func classPrior() throws -> LDSKernelReport {
        let started = Date()
        let model = models[0]
        let C = model.labels.count
        let logits = try model.logits(train.map(\.text))
        let labels = try model.labels.indices(of: train, source: "training data")
        let p = (0..<n).map { i in Softmax.probabilities((0..<C).map { Double(logits[i * C + $0]) }) }
        var scores = [Double](repeating: 0, count: test.count * n)
        for t in test.indices {
            for i in 0..<n { scores[t * n + i] = (labels[i] == compared[t] ? 1 : 0) - p[i][compared[t]] }
        }
        return scored("class-prior", .labelResidual, scores, size: 1, seconds: Date().timeIntervalSince(started))
    }

    /// The attribution setting of kernel k on model j (TRAK: with the first `trakModels`).
    func setup(_ k: SurrogateKernel, model j: Int, trakModels: Int = 1) -> AttributionSetup {
        let byLDS = lambdaSelection != nil && !k.attributesByKernelValue
        var s = AttributionSetup(
            classifier: models[j], train: train, projDim: projDim, seed: seed, projector: projector, cache: cache,
            selector: byLDS ? ldsSelector : selector.exhaustive,
            checkpoints: j == 0 && k.checkpointSummed ? checkpoints : nil,
            ensemble: k.ensembled ? Array(models[1..<trakModels]) : [], useSurrogateCache: j != 0 && !byLDS)
        // The model under study's surrogate at every lambda (the grid's LDS), and every
        // model's when lambda is chosen by LDS.
        s.fitGrid = (j == 0 || byLDS) && !k.attributesByKernelValue
        // EK-FAC's features for every damping of the grid at once (its rotation is shared).
        if k == .ekfac { s.ekfacDampings = dampingGrid(k) }
        return s
    }

    /// TRAK, whose estimator averages over its ensemble itself: one run per size.
    func trak(_ k: SurrogateKernel, sizes: [Int]) throws -> [LDSKernelReport] {
        let stage = KernelProgress(kernel: k, report: progress)
        var forms = [Form(name: k.name, attribution: .trak, byLDS: false, sum: [])]
        if lambdaSelection != nil {
            forms.append(
                Form(name: k.name + " (damping by LDS)", attribution: .trak, byLDS: true, sum: []))
        }
        try chooseDampings(&forms, kernel: k)
        return try sizes.flatMap { size in
            log("== \(k.name), \(size) model\(size == 1 ? "" : "s")")
            let started = Date()
            let engine = try AttributionEngine(
                setup: setup(k, model: 0, trakModels: size), kernel: k, log: log, progress: stage.progress("train"))
            let q = try engine.query(
                test, source: "test texts", cached: true, lossLabels: compared, log: log,
                progress: stage.progress("test"))
            var row = scored(
                k.name, .trak, engine.methodScores(q, classes: compared), size: size,
                seconds: Date().timeIntervalSince(started))
            row.grid = forms[0].grid
            row.lambda = forms[0].lambda
            row.lambdaRule = "damping: the default, of the curvature's mean diagonal"
            guard forms.count > 1, let d = forms[1].lambda else { return [row] }
            let t0 = Date()
            var byLDS = scored(
                forms[1].name, .trak, try dampedScores(k, model: 0, damping: d, trakModels: size), size: size,
                seconds: Date().timeIntervalSince(t0))
            byLDS.grid = forms[1].grid
            byLDS.lambda = d
            byLDS.lambdaRule = lambdaSelection.map { "damping by lds on \($0.subsets.count) selection subsets" }
            return [row, byLDS]
        }
    }

    /// The dampings an influence baseline's LDS is measured at (relative to its curvature's
    /// mean diagonal): the surrogates' lambda grid, with the default.
    func dampingGrid(_ k: SurrogateKernel) -> [Double] { Array(Set(ldsSelector.grid + [k.defaultDamping!])).sorted() }

    /// An influence baseline's scores [tests, n] on model j with another damping (TRAK: over
    /// its first `trakModels` models); features come from the cache.
    func dampedScores(_ k: SurrogateKernel, model j: Int, damping: Double, trakModels: Int = 1) throws -> [Double] {
        var s = setup(k, model: j, trakModels: trakModels)
        s.damping = damping
        let labels = try models[j].labels.indices(of: train, source: "training data")
        let source = try s.source(for: k, labels: labels, log: { _ in }, progress: { _, _ in })
        let q = try source.query(
            test, source: "test texts", cached: true, lossLabels: compared, log: { _ in }, progress: { _, _ in })
        return (q.scores ?? q.rows).map(Double.init)
    }

    /// The model under study's LDS at every damping of the grid, and each form's damping:
    /// the default, or the grid's best on the selection subsets (ties to the stronger damping).
    func chooseDampings(_ forms: inout [Form], kernel k: SurrogateKernel) throws {
        let grid = try dampingGrid(k).map { d -> LDSGridPoint in
            let scores = try dampedScores(k, model: 0, damping: d)
            var p = LDSGridPoint(
                lambda: d, networkTau: .nan,
                lds: Datamodeling.score(scores, n: n, subsets: subsets, margins: margins, resamples: 0, seed: seed)
                    .mean,
                ldsMean: meanMargins.map {
                    Datamodeling.score(scores, n: n, subsets: subsets, margins: $0, resamples: 0, seed: seed).mean
                })
            p.selectionLDS = lambdaSelection.map {
                Datamodeling.score(scores, n: n, subsets: $0.subsets, margins: $0.margins, resamples: 0, seed: seed)
                    .mean
            }
            return p
        }
        let best = grid.filter { $0.selectionLDS?.isFinite == true }.max { a, b in
            a.selectionLDS! < b.selectionLDS! || (a.selectionLDS! == b.selectionLDS! && a.lambda < b.lambda)
        }?.lambda
        for f in forms.indices {
            forms[f].grid = grid
            forms[f].lambda = forms[f].byLDS ? best : k.defaultDamping
        }
        log(
            "\(k.name): LDS over the damping (relative to the curvature's scale) "
                + grid.map { String(format: "%g: %.3f", $0.lambda, $0.lds) }.joined(separator: ", ")
                + (lambdaSelection != nil ? String(format: "; chosen on the selection subsets: %g", best ?? .nan) : ""))
    }

    /// An attribution form scored: the method's own score, or for a surrogate its
    /// representer or influence form at the selector's lambda or (`byLDS`) at the lambda
    /// chosen by LDS on the selection subsets; its running sum over models.
    struct Form {
        let name: String
        let attribution: LDSAttribution
        /// The surrogate's own influence rather than its representer attribution.
        var influence: Bool { attribution == .surrogateInfluence }
        var lambda: Double?
        let byLDS: Bool
        var sum: [Double]
        var seconds = 0.0
        var alone: [Double] = []
        var grid: [LDSGridPoint] = []
    }

    /// Every other method: one engine per model, each form's scores averaged over the
    /// first N models for each N of `sizes`.
    func acrossModels(_ k: SurrogateKernel, sizes: [Int]) throws -> [LDSKernelReport] {
        let surrogate = !k.attributesByKernelValue
        let zero = [Double](repeating: 0, count: test.count * n)
        var forms: [Form] =
            surrogate
            ? [
                Form(name: k.name, attribution: .surrogate, byLDS: false, sum: zero),
                Form(
                    name: k.name + "-infl", attribution: .surrogateInfluence, byLDS: false, sum: zero
                ),
            ]
            : [Form(name: k.name, attribution: .kernel, byLDS: false, sum: zero)]
        let damped = k.defaultDamping != nil
        if damped && lambdaSelection != nil {
            forms.append(
                Form(
                    name: k.name + " (damping by LDS)", attribution: .kernel, byLDS: true, sum: zero)
            )
        }
        if surrogate && lambdaSelection != nil {
            forms += [
                Form(
                    name: k.name + " (lambda by LDS)", attribution: .surrogate, byLDS: true,
                    sum: zero),
                Form(
                    name: k.name + "-infl (lambda by LDS)", attribution: .surrogateInfluence,
                    byLDS: true, sum: zero),
            ]
        }
        let stage = KernelProgress(kernel: k, report: progress)
        var rows: [LDSKernelReport] = []
        for j in 0..<sizes.last! {
            log("== \(k.name), model \(j + 1)/\(sizes.last!)")
            let started = Date()
            let engine = try AttributionEngine(
                setup: setup(k, model: j), kernel: k, log: log, progress: stage.progress("train"))
            let q = try engine.query(
                test, source: "test texts", cached: true, lossLabels: surrogate ? nil : compared, log: log,
                progress: stage.progress("test"))
            let shared = Date().timeIntervalSince(started)
            if surrogate && j == 0 { try chooseLambdas(&forms, engine: engine, query: q, kernel: k) }
            if damped && j == 0 { try chooseDampings(&forms, kernel: k) }
            for f in forms.indices {
                let t0 = Date()
                let scores =
                    damped && forms[f].byLDS
                    ? try dampedScores(k, model: j, damping: forms[f].lambda ?? k.defaultDamping!)
                    : try formScores(forms[f], engine: engine, query: q, model: j)
                for a in scores.indices { forms[f].sum[a] += scores[a] }
                forms[f].alone.append(
                    Datamodeling.score(scores, n: n, subsets: subsets, margins: margins, resamples: 0, seed: seed).mean)
                forms[f].seconds += shared + Date().timeIntervalSince(t0)
            }
            guard sizes.contains(j + 1) else { continue }
            for f in forms {
                var row = scored(
                    f.name, f.attribution, f.sum.map { $0 / Double(j + 1) }, size: j + 1, seconds: f.seconds)
                if j > 0 { row.perModel = f.alone }
                if surrogate {
                    row.grid = f.grid
                    row.lambda = f.lambda
                    row.lambdaRule =
                        f.byLDS
                        ? lambdaSelection.map { "lds on \($0.subsets.count) selection subsets" }
                        : selector.criterion.rawValue
                } else if damped {
                    row.grid = f.grid
                    row.lambda = f.lambda
                    row.lambdaRule =
                        f.byLDS
                        ? lambdaSelection.map { "damping by lds on \($0.subsets.count) selection subsets" }
                        : "damping: the default, of the curvature's mean diagonal"
                }
                rows.append(row)
            }
        }
        return rows
    }

    /// A form's scores [tests, n] on one model: the method's own, or the surrogate's at the
    /// form's lambda (this model's fit at that lambda).
    func formScores(_ form: Form, engine: AttributionEngine, query q: QueryKernel, model j: Int) throws -> [Double] {
        guard !engine.kernel.attributesByKernelValue else { return engine.methodScores(q, classes: compared) }
        var fit = engine.glm
        if form.byLDS {
            guard let lambda = form.lambda, let g = engine.gridFits.first(where: { $0.lambda == lambda }) else {
                throw AttributionError(
                    "\(engine.kernel.name): model \(j + 1) has no surrogate fitted at lambda \(form.lambda ?? .nan)")
            }
            fit = g
        }
        return form.influence
            ? try engine.surrogateInfluence(fit).scores(rows: q.rows, classes: compared)
            : engine.representerScores(q, classes: compared, glm: fit)
    }

    /// The model under study's LDS at every lambda of its grid, in both forms, and each
    /// form's lambda: the selector's, or the grid's best on the selection subsets (ties to
    /// the stronger regularization, as in the selector).
    func chooseLambdas(
        _ forms: inout [Form], engine: AttributionEngine, query q: QueryKernel, kernel k: SurrogateKernel
    ) throws {
        var grid: [LDSGridPoint] = []
        var influenceGrid: [LDSGridPoint] = []
        for (point, fit) in zip(engine.grid, engine.gridFits) {
            func at(_ s: [Double]) -> LDSGridPoint {
                var p = LDSGridPoint(
                    lambda: point.lambda, networkTau: point.networkTau,
                    lds: Datamodeling.score(s, n: n, subsets: subsets, margins: margins, resamples: 0, seed: seed).mean,
                    ldsMean: meanMargins.map {
                        Datamodeling.score(s, n: n, subsets: subsets, margins: $0, resamples: 0, seed: seed).mean
                    })
                p.selectionLDS = lambdaSelection.map {
                    Datamodeling.score(s, n: n, subsets: $0.subsets, margins: $0.margins, resamples: 0, seed: seed).mean
                }
                return p
            }
            grid.append(at(engine.representerScores(q, classes: compared, glm: fit)))
            influenceGrid.append(at(try engine.surrogateInfluence(fit).scores(rows: q.rows, classes: compared)))
        }
        func best(_ points: [LDSGridPoint]) -> Double? {
            points.filter { $0.selectionLDS?.isFinite == true }.max { a, b in
                a.selectionLDS! < b.selectionLDS! || (a.selectionLDS! == b.selectionLDS! && a.lambda < b.lambda)
            }?.lambda
        }
        for f in forms.indices {
            forms[f].grid = forms[f].influence ? influenceGrid : grid
            forms[f].lambda = forms[f].byLDS ? best(forms[f].grid) : engine.glm.lambda
        }
        log(
            "\(k.name): LDS over lambda "
                + zip(grid, influenceGrid).map { String(format: "%g: %.3f / infl %.3f", $0.lambda, $0.lds, $1.lds) }
                .joined(separator: ", ")
                + (lambdaSelection != nil
                    ? String(
                        format: "; chosen on the selection subsets: %g / infl %g", forms[2].lambda ?? .nan,
                        forms[3].lambda ?? .nan) : ""))
    }
}
