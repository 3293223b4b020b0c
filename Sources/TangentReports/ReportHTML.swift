import Foundation
import TangentEvaluation
import TangentSurrogate

/// Renders a comparison report as one self-contained HTML page (inline CSS and SVG, no
/// scripts or external files), readable without the terminal: faithfulness bars, TAD,
/// surrogate-vs-network scatter per kernel, tau over the regularization grid, cost.
public enum ReportHTML {
    public static func render(_ r: ComparisonReport, poisoning: PoisonReport? = nil) -> String {
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"/><title>Kernel surrogate faithfulness: \(esc(r.model))</title>
            <style>
            body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}
            table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
            th:first-child,td:first-child{text-align:left}.small{color:#555;font-size:.9em}
            .grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:.85em;text-align:center}
            </style></head><body>
            <h1>Kernel surrogate faithfulness</h1>
            <p>Model <code>\(esc(r.model))</code>; \(r.trainTexts) training texts (\(esc(r.train))); \(r.testTexts) test texts (\(esc(r.test))); classes \(esc(r.classes.joined(separator: ", "))).
            Network test accuracy \(fixed(r.networkTestAccuracy)). Projected kernels use K = \(r.projDim), seed \(r.seed), projector \(esc(r.projectorTag)).</p>
            <p class="small">For each kernel, a kernel surrogate (kGLM: L2-regularized multinomial logistic regression on the rows of the train &#215; train kernel,
            \(r.kernels.first?.selection.map { "lambda chosen on the training texts alone by cross-validation: " + esc($0) } ?? "lambda chosen by held-out cross-entropy on a tenth of the training texts")) is fitted to the true training labels.
            <b>tau</b> is Kendall's tau-b between the surrogate's and the network's log-odds of the compared class
            (class 1 for two classes, the true label otherwise) over the test texts; 1 means the surrogate ranks texts exactly as the network does.
            <b>TAD</b> is the surrogate's test accuracy minus the network's.</p>

            """
        h += faithfulnessBars(r)
        if let lds = r.lds { h += ldsSection(lds) }
        h += "<h2>Surrogate vs network log-odds</h2>\n<div class=\"grid\">\n"
        for k in r.kernels { h += scatter(k) }
        h +=
            "</div>\n<h2>Numbers</h2>\n<table><tr><th>kernel</th><th>tau</th><th>tau (paper)</th><th>texts kept</th><th>TAD</th><th>agreement</th><th>best tau over grid</th><th>lambda</th><th>time (s)</th><th>peak memory (MiB)</th><th>features</th></tr>\n"
        for k in r.kernels {
            h +=
                "<tr><td>\(esc(k.kernel))</td><td>\(fixed(k.tau))</td><td>\(fixed(k.tauProbability))</td><td>\(k.tauProbabilityTexts)</td><td>\(String(format: "%+.3f", k.tad))</td><td>\(fixed(k.agreement))</td><td>\(fixed(k.bestGridTau))</td><td>\(String(format: "%g", k.lambda))</td><td>\(fixed(k.seconds, 0))</td><td>\(fixed(k.peakMemoryMiB, 0))</td><td>\(k.featuresCached ? "cached" : "computed")</td></tr>\n"
        }
        h +=
            "</table>\n<p class=\"small\">tau (paper): over probabilities, texts at exactly 0 or 1 dropped (texts kept). Time: this kernel's wall time (featurization unless cached, fits, measurement); peak memory: the process's peak so far.</p>\n"
        for k in r.kernels {
            if let note = k.note { h += "<p class=\"small\"><b>\(esc(k.kernel))</b>: \(esc(note)).</p>\n" }
        }
        h += layerSection(r.kernels)
        h += projectionSection(r.projectionError ?? [])
        if let poisoning { h += poisonSection(poisoning) }
        h += gridSection(r) + "</body></html>\n"
        return h
    }

    /// tau and TAD as bars per kernel: the first model's, or the mean and standard
    /// deviation over several models.
    static func faithfulnessBars(_ r: ComparisonReport) -> String {
        var h = ""
        if let rep = r.kernels.first?.replicates {
            let models = rep.models.count
            h +=
                "<p>Over \(models) models (\(esc(rep.models.joined(separator: ", ")))): bars show the mean and whiskers one sample standard deviation; the scatter plots and tables below describe the first model.</p>\n"
            h +=
                "<h2>Faithfulness (tau)</h2>\n"
                + bars(
                    r.kernels.map { ($0.kernel, $0.replicates?.tauMean ?? $0.tau, nil) }, lo: -1, hi: 1,
                    caption: "mean tau over \(models) models, +- one standard deviation",
                    errors: r.kernels.map { $0.replicates?.tauSD ?? 0 })
            let tads = r.kernels.map { $0.replicates?.tadMean ?? $0.tad }
            let sds = r.kernels.map { $0.replicates?.tadSD ?? 0 }
            h +=
                "<h2>Test accuracy differential (TAD)</h2>\n"
                + bars(
                    zip(r.kernels, tads).map { ($0.kernel, $1, nil) },
                    lo: min(-0.1, (zip(tads, sds).map { $0 - $1 }.min() ?? 0) - 0.02),
                    hi: max(0.1, (zip(tads, sds).map { $0 + $1 }.max() ?? 0) + 0.02),
                    caption:
                        "mean surrogate minus network test accuracy over \(models) models, +- one standard deviation",
                    errors: sds)
        } else {
            h +=
                "<h2>Faithfulness (tau)</h2>\n"
                + bars(
                    r.kernels.map { ($0.kernel, $0.tau, $0.bestGridTau) }, lo: -1, hi: 1,
                    caption: "bars: tau at the chosen lambda; ticks: best tau over the grid")
            h +=
                "<h2>Test accuracy differential (TAD)</h2>\n"
                + bars(
                    r.kernels.map { ($0.kernel, $0.tad, nil) },
                    lo: min(-0.1, (r.kernels.map(\.tad).min() ?? 0) - 0.02),
                    hi: max(0.1, (r.kernels.map(\.tad).max() ?? 0) + 0.02),
                    caption: "surrogate minus network test accuracy")
        }
        return h
    }

    /// tau over every kernel's lambda grid: the lines and the table.
    static func gridSection(_ r: ComparisonReport) -> String {
        var h = ""
        h += "<h2>tau over the regularization grid</h2>\n" + gridLines(r.kernels)
        let columns = gridColumns(r.kernels.map { $0.grid.map(\.lambda) })
        h += "<table><tr><th>kernel</th>" + columns.map { "<th>\(String(format: "%g", $0))</th>" }.joined() + "</tr>\n"
        for k in r.kernels {
            func row(_ name: String, _ cell: (GridPoint) -> String) {
                h +=
                    "<tr><td>\(esc(k.kernel)) \(name)</td>"
                    + gridCells(k.grid, lambda: \.lambda, columns: columns, cell).map { "<td>\($0)</td>" }.joined()
                    + "</tr>\n"
            }
            row("tau") { fixed($0.tau) }
            if k.grid.contains(where: { $0.heldOutLoss != nil }) {
                row("held-out loss") { fixed($0.heldOutLoss ?? .nan, 4) }
            } else {
                row("out-of-fold tau") { fixed($0.networkTau) }
            }
        }
        h +=
            "</table>\n<p class=\"small\">tau: on the test texts, of the surrogate fitted on all training texts at each lambda. Out-of-fold tau: the selector's figure, on the training texts (network-tau picks its largest); the report.md grid also lists the out-of-fold cross-entropies against the network's probabilities and against the labels.</p>\n"
        return h
    }

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static let palette = [
        "#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD",
    ]

    /// Horizontal bars from 0, one per kernel, with an optional tick per bar, and whiskers
    /// of +- `errors` or over `intervals` (low, high).
    static func bars(
        _ items: [(String, Double, Double?)], lo: Double, hi: Double, caption: String, errors: [Double]? = nil,
        intervals: [(Double, Double)]? = nil, reference: Double? = nil
    ) -> String {
        // The label column fits the longest label (about 6.5 px per character at 12 px).
        let left = max(110, 6.5 * Double(items.map(\.0.count).max() ?? 0) + 12)
        let w = 530 + left
        let rowH = 26.0
        let hgt = Double(items.count) * rowH + 30
        // The axis runs between round tick values that include 0.
        let ticks = niceTicks(lo, hi, count: 6)
        let lo = min(lo, ticks.first ?? lo)
        let hi = max(hi, ticks.last ?? hi)
        func x(_ v: Double) -> Double { left + (min(max(v, lo), hi) - lo) / (hi - lo) * (w - left - 60) }
        var s =
            "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(hgt))\" role=\"img\">\n"
        for t in ticks {
            s +=
                "<line x1=\"\(x(t))\" y1=\"5\" x2=\"\(x(t))\" y2=\"\(hgt - 20)\" stroke=\"#ddd\"/><text x=\"\(x(t))\" y=\"\(hgt - 5)\" font-size=\"11\" text-anchor=\"middle\">\(tickLabel(t))</text>\n"
        }
        for (i, item) in items.enumerated() {
            let y = 8 + Double(i) * rowH
            let a = x(0)
            let b = x(item.1.isNaN ? 0 : item.1)
            s += "<text x=\"\(left - 6)\" y=\"\(y + 14)\" font-size=\"12\" text-anchor=\"end\">\(esc(item.0))</text>\n"
            s +=
                "<rect x=\"\(min(a, b))\" y=\"\(y)\" width=\"\(abs(b - a))\" height=\"18\" fill=\"\(palette[i % palette.count])\"/>\n"
            let whisker = intervals?[i] ?? errors.map { (item.1 - $0[i], item.1 + $0[i]) }
            // The value goes right of everything drawn on its row, so nothing covers it.
            var labelX = max(a, b)
            if let t = item.2, !t.isNaN { labelX = max(labelX, x(t)) }
            if let (_, high) = whisker, !high.isNaN { labelX = max(labelX, x(high)) }
            s +=
                "<text x=\"\(labelX + 5)\" y=\"\(y + 14)\" font-size=\"11\">\(item.1.isNaN ? "-" : String(format: "%.3f", item.1))</text>\n"
            if let t = item.2, !t.isNaN {
                s +=
                    "<line x1=\"\(x(t))\" y1=\"\(y - 2)\" x2=\"\(x(t))\" y2=\"\(y + 20)\" stroke=\"#000\" stroke-width=\"2\"/>\n"
            }
            if let (low, high) = whisker, high > low, !item.1.isNaN, !low.isNaN {
                let l = x(low)
                let r = x(high)
                s +=
                    "<line x1=\"\(l)\" y1=\"\(y + 9)\" x2=\"\(r)\" y2=\"\(y + 9)\" stroke=\"#000\"/><line x1=\"\(l)\" y1=\"\(y + 4)\" x2=\"\(l)\" y2=\"\(y + 14)\" stroke=\"#000\"/><line x1=\"\(r)\" y1=\"\(y + 4)\" x2=\"\(r)\" y2=\"\(y + 14)\" stroke=\"#000\"/>\n"
            }
        }
        if let reference, reference.isFinite {
            s +=
                "<line x1=\"\(x(reference))\" y1=\"2\" x2=\"\(x(reference))\" y2=\"\(hgt - 20)\" stroke=\"#000\" stroke-dasharray=\"5,4\"/>\n"
        }
        s +=
            "<line x1=\"\(x(0))\" y1=\"5\" x2=\"\(x(0))\" y2=\"\(hgt - 20)\" stroke=\"#444\"/>\n</svg><figcaption>\(esc(caption))</figcaption></figure>\n"
        return s
    }

    /// Round tick values, about `count` of them, covering [lo, hi] (and 0 when it lies within).
    /// Round tick values from at most `lo` to at least `hi`; never empty. Values read from
    /// a report may be anything: a range that overflows, or whose step is below the
    /// values' precision, gets its two ends as ticks (and never an endless loop).
    static func niceTicks(_ lo: Double, _ hi: Double, count: Int) -> [Double] {
        guard hi > lo, lo.isFinite, hi.isFinite else { return [lo.isFinite ? lo : 0] }
        let raw = (hi - lo) / Double(count)
        let magnitude = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw * 0.999 } ?? 10 * magnitude
        var t = Foundation.floor(lo / step + 1e-9) * step
        guard raw.isFinite, step.isFinite, step > 0, t.isFinite, t + step > t else { return [lo, hi] }
        var ticks: [Double] = []
        while t < hi + step * 0.999 && ticks.count <= 4 * count + 4 {
            ticks.append(abs(t) < step * 1e-6 ? 0 : t)
            t += step
        }
        return ticks.isEmpty ? [lo, hi] : ticks
    }

    static func tickLabel(_ v: Double) -> String { String(format: "%g", (v * 1e6).rounded() / 1e6) }

    /// Scatter of surrogate against network log-odds (each clipped to +-15, each axis over
    /// its own range with tick values; the grey line is y = x where it crosses the panel).
    static func scatter(_ k: KernelReport) -> String {
        let size = 250.0
        let left = 44.0
        let bottom = 40.0
        let top = 8.0
        let right = 10.0
        let lim = 15.0
        func c(_ v: Double) -> Double { max(-lim, min(lim, v)) }
        let pairs = zip(k.networkLogOdds, k.surrogateLogOdds).filter { $0.0.isFinite && $0.1.isFinite }.map {
            (c($0.0), c($0.1))
        }
        func axis(_ v: [Double]) -> [Double] {
            let lo = v.min() ?? -1
            let hi = v.max() ?? 1
            return niceTicks(lo == hi ? lo - 1 : lo, lo == hi ? hi + 1 : hi, count: 4)
        }
        let xt = axis(pairs.map(\.0))
        let yt = axis(pairs.map(\.1))
        let x0 = xt.first ?? -1
        let x1 = xt.last ?? 1
        let y0 = yt.first ?? -1
        let y1 = yt.last ?? 1
        func px(_ v: Double) -> Double { left + (v - x0) / (x1 - x0) * (size - left - right) }
        func py(_ v: Double) -> Double { size - bottom - (v - y0) / (y1 - y0) * (size - bottom - top) }
        var s =
            "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(size))\" height=\"\(Int(size))\" role=\"img\">\n"
        s +=
            "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(size - left - right)\" height=\"\(size - bottom - top)\" fill=\"none\" stroke=\"#999\"/>\n"
        let d0 = max(x0, y0)
        let d1 = min(x1, y1)
        if d1 > d0 {
            s += "<line x1=\"\(px(d0))\" y1=\"\(py(d0))\" x2=\"\(px(d1))\" y2=\"\(py(d1))\" stroke=\"#ccc\"/>\n"
        }
        for t in xt {
            s +=
                "<line x1=\"\(px(t))\" y1=\"\(size - bottom)\" x2=\"\(px(t))\" y2=\"\(size - bottom + 4)\" stroke=\"#999\"/>"
            s +=
                "<text x=\"\(px(t))\" y=\"\(size - bottom + 14)\" font-size=\"9\" text-anchor=\"middle\">\(tickLabel(t))</text>\n"
        }
        for t in yt {
            s += "<line x1=\"\(left - 4)\" y1=\"\(py(t))\" x2=\"\(left)\" y2=\"\(py(t))\" stroke=\"#999\"/>"
            s +=
                "<text x=\"\(left - 6)\" y=\"\(py(t) + 3)\" font-size=\"9\" text-anchor=\"end\">\(tickLabel(t))</text>\n"
        }
        for (a, b) in pairs {
            s +=
                "<circle cx=\"\(String(format: "%.1f", px(a)))\" cy=\"\(String(format: "%.1f", py(b)))\" r=\"1.6\" fill=\"#4C72B0\" fill-opacity=\"0.5\"/>\n"
        }
        s +=
            "<text x=\"\(left + (size - left - right) / 2)\" y=\"\(size - 8)\" font-size=\"10\" text-anchor=\"middle\">network log-odds</text>\n"
        s +=
            "<text x=\"10\" y=\"\(top + (size - bottom - top) / 2)\" font-size=\"10\" text-anchor=\"middle\" transform=\"rotate(-90 10 \(top + (size - bottom - top) / 2))\">surrogate log-odds</text>\n"
        s += "</svg><figcaption>\(esc(k.kernel)): tau \(String(format: "%.3f", k.tau))</figcaption></figure>\n"
        return s
    }

    /// NFT-K view: stacked bars of each layer group's share of every exact NTK, over
    /// test x train pairs, over each test text's top proponents, and over self-kernels.
    static func layerSection(_ ks: [KernelReport]) -> String {
        let exact = ks.filter { $0.layerShares != nil }
        guard !exact.isEmpty else { return "" }
        var h = "<h2>Which layers carry the NTK (NFT-K decomposition)</h2>\n"
        h +=
            "<p class=\"small\">The exact NTK is a sum of one part per layer group (embeddings, each transformer block, the final norm, the head). "
        h +=
            "Each bar splits the kernel into those parts: summed over all test &#215; train pairs, over each test text's ten strongest proponents, "
        h += "and over the training texts' self-kernels K(x, x), where the embedding table's own tokens dominate. "
        h +=
            "Parts are signed: summed over all pairs, the head's part largely cancels between texts of different classes while the position embeddings, "
        h += "shared by every text, add up; the top-proponent view shows what drives attributions.</p>\n"
        let groups = exact[0].layerShares!.map(\.group)
        let w = 640.0
        let left = 190.0
        let rowH = 24.0
        let rows = exact.flatMap { k in
            [
                ("\(k.kernel): pairs", k.layerShares!.map(\.pairs)),
                ("\(k.kernel): top proponents", k.layerShares!.map(\.topProponents)),
                ("\(k.kernel): self-kernels", k.layerShares!.map(\.selfKernel)),
            ]
        }
        let hgt = Double(rows.count) * rowH + 40
        h +=
            "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(hgt))\" role=\"img\">\n"
        for (r, row) in rows.enumerated() {
            let y = 6 + Double(r) * rowH
            h += "<text x=\"\(left - 6)\" y=\"\(y + 13)\" font-size=\"11\" text-anchor=\"end\">\(esc(row.0))</text>\n"
            // Negative parts (possible off the diagonal) are drawn as zero width; the table has them.
            let positive = row.1.map { $0.isNaN ? 0 : max(0, $0) }
            let sum = max(positive.reduce(0, +), 1e-12)
            var x = left
            for (g, v) in positive.enumerated() {
                let width = v / sum * (w - left - 10)
                h +=
                    "<rect x=\"\(String(format: "%.1f", x))\" y=\"\(y)\" width=\"\(String(format: "%.1f", width))\" height=\"16\" fill=\"\(palette[g % palette.count])\"/>\n"
                x += width
            }
        }
        for (g, name) in groups.enumerated() {
            let x = left + Double(g) * 85
            h +=
                "<rect x=\"\(x)\" y=\"\(hgt - 22)\" width=\"10\" height=\"10\" fill=\"\(palette[g % palette.count])\"/><text x=\"\(x + 14)\" y=\"\(hgt - 13)\" font-size=\"11\">\(esc(name))</text>\n"
        }
        h += "</svg><figcaption>share of the exact NTK per layer group</figcaption></figure>\n"
        h += "<table><tr><th>kernel, view</th>" + groups.map { "<th>\(esc($0))</th>" }.joined() + "</tr>\n"
        for row in rows {
            h +=
                "<tr><td>\(esc(row.0))</td>"
                + row.1.map { "<td>\($0.isNaN ? "-" : String(format: "%.1f%%", 100 * $0))</td>" }.joined() + "</tr>\n"
        }
        return h + "</table>\n"
    }

    /// Projection error against K on log-log axes, with the 1/sqrt(K) rate for reference.
    static func projectionSection(_ points: [ProjectionErrorPoint]) -> String {
        guard let first = points.first else { return "" }
        let names = points.map(\.label).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let dims = points.map { Double($0.projDim) }
        let errs = points.map(\.relativeError).filter { $0 > 0 }
        guard let dMin = dims.min(), let dMax = dims.max(), dMax > dMin, let eMin = errs.min(), let eMax = errs.max()
        else { return "" }
        let w = 640.0
        let hgt = 280.0
        let pad = 50.0
        let ly0 = Foundation.log10(eMin) - 0.2
        let ly1 = Foundation.log10(eMax) + 0.2
        func px(_ d: Double) -> Double {
            pad + (Foundation.log2(d) - Foundation.log2(dMin)) / (Foundation.log2(dMax) - Foundation.log2(dMin))
                * (w - 2 * pad - 110)
        }
        func py(_ e: Double) -> Double { hgt - pad - (Foundation.log10(e) - ly0) / (ly1 - ly0) * (hgt - 2 * pad) }
        var h =
            "<h2>Projection error against K</h2>\n<p class=\"small\">Relative Frobenius error of each projected kernel's normalized test &#215; train block against the exact kernel, on \(first.testTexts) test and \(first.trainTexts) training texts\(first.seeds.map { ", root mean square over \($0) projection seeds" } ?? ""). The dashed line falls like 1/sqrt(K), the rate of a random projection.</p>\n"
        h +=
            "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(hgt))\" role=\"img\">\n"
        for d in Set(dims).sorted() {
            h +=
                "<line x1=\"\(px(d))\" y1=\"\(pad)\" x2=\"\(px(d))\" y2=\"\(hgt - pad)\" stroke=\"#eee\"/><text x=\"\(px(d))\" y=\"\(hgt - pad + 14)\" font-size=\"10\" text-anchor=\"middle\">\(Int(d))</text>\n"
        }
        var e = Foundation.pow(10, Foundation.floor(ly0))
        while Foundation.log10(e) <= ly1 {
            for mult in [1.0, 2, 5] where Foundation.log10(e * mult) >= ly0 && Foundation.log10(e * mult) <= ly1 {
                h +=
                    "<line x1=\"\(pad)\" y1=\"\(py(e * mult))\" x2=\"\(w - pad - 110)\" y2=\"\(py(e * mult))\" stroke=\"#eee\"/><text x=\"\(pad - 4)\" y=\"\(py(e * mult) + 4)\" font-size=\"10\" text-anchor=\"end\">\(String(format: "%g", e * mult))</text>\n"
            }
            e *= 10
        }
        for (i, name) in names.enumerated() {
            let pts = points.filter { $0.label == name && $0.relativeError > 0 }.sorted { $0.projDim < $1.projDim }
            let color = palette[i % palette.count]
            h +=
                "<polyline points=\""
                + pts.map {
                    "\(String(format: "%.1f", px(Double($0.projDim)))),\(String(format: "%.1f", py($0.relativeError)))"
                }.joined(separator: " ") + "\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            if let p0 = pts.first, let p1 = pts.last {
                let ref1 = p0.relativeError * (Double(p0.projDim) / Double(p1.projDim)).squareRoot()
                h +=
                    "<line x1=\"\(px(Double(p0.projDim)))\" y1=\"\(py(p0.relativeError))\" x2=\"\(px(Double(p1.projDim)))\" y2=\"\(py(ref1))\" stroke=\"\(color)\" stroke-dasharray=\"4 3\"/>\n"
            }
            h +=
                "<text x=\"\(w - pad - 100)\" y=\"\(pad + Double(i) * 15)\" font-size=\"11\" fill=\"\(color)\">\(esc(name))</text>\n"
        }
        h +=
            "<text x=\"\((w - 110) / 2)\" y=\"\(hgt - 8)\" font-size=\"11\" text-anchor=\"middle\">K (projected dimension)</text>\n</svg></figure>\n"
        h +=
            "<table><tr><th>kernel</th>"
            + Array(Set(points.map(\.projDim))).sorted().map { "<th>K = \($0)</th>" }.joined() + "</tr>\n"
        for name in names {
            h +=
                "<tr><td>\(esc(name))</td>"
                + Array(Set(points.map(\.projDim))).sorted().map { d in
                    "<td>"
                        + (points.first { $0.label == name && $0.projDim == d }.map {
                            String(format: "%.4f", $0.relativeError)
                        } ?? "-") + "</td>"
                }.joined() + "</tr>\n"
        }
        return h + "</table>\n"
    }

    /// LDS bars with their bootstrap intervals and the noise ceiling, LDS against the
    /// ensemble size, and what was retrained.
    static func ldsSection(_ r: LDSReport) -> String {
        let values = r.kernels.map(\.lds)
        let lo = min(-0.1, (values.map(\.low).filter { !$0.isNaN }.min() ?? 0) - 0.05)
        let hi = max(0.2, (([r.ceiling?.high ?? 0] + values.map(\.high).filter { !$0.isNaN }).max() ?? 0) + 0.05)
        var h = "<h2>Counterfactual check: linear datamodeling score (LDS)</h2>\n"
        var caption =
            "LDS with 95% bootstrap intervals over test texts; * the method's own score (kernel value, influence, TRAK, surrogate influence) instead of the surrogate's W[c,i] K(x,x_i)"
        if let c = r.ceiling {
            caption += String(
                format: "; dashed: the noise ceiling %.3f (one training of each subset model against another)", c.mean)
        }
        h += bars(
            r.kernels.map { ($0.kernel + ($0.attribution == "surrogate" ? "" : " *"), $0.lds.mean, nil) }, lo: lo,
            hi: hi,
            caption: caption, intervals: values.map { ($0.low, $0.high) }, reference: r.ceiling?.mean)
        if let c = r.ceiling {
            h += "<p class=\"small\">" + String(format: "Noise ceiling %.3f [%.3f, %.3f]: ", c.mean, c.low, c.high)
            h +=
                "every subset model was trained twice, from the same initialization with other dropout masks and batch order; the ceiling is the mean over test texts of the Spearman correlation, over subsets, between the two trainings' margins. "
            h += "Share of the ceiling (LDS against the mean of both trainings / ceiling): "
            h +=
                r.kernels.compactMap { k in
                    k.ldsMean.map { "\(esc(k.kernel)) " + String(format: "%.2f", $0.mean / c.mean) }
                }.joined(separator: ", ") + ".</p>\n"
        }
        if let curve = r.curve {
            // Methods scored at several ensemble sizes, at the selector's lambda (the lambda-by-LDS
            // rows are in the tables).
            let names = r.kernels.map(\.kernel).filter { name in
                !name.contains("lambda by LDS") && curve.filter { $0.kernel == name }.count > 1
            }
            let all =
                curve.filter { names.contains($0.kernel) }.map(\.lds.mean).filter(\.isFinite) + [r.ceiling?.mean ?? 0]
            let y0 = Foundation.floor(min(0, all.min() ?? 0) * 10) / 10
            let y1 = Foundation.ceil(max(0.1, all.max() ?? 0) * 10) / 10
            h += "<h3>LDS against the number of models averaged</h3>\n"
            h += lines(
                names.map { name in
                    (name, curve.filter { $0.kernel == name }.map { (Double($0.ensemble ?? 1), $0.lds.mean) })
                },
                yRange: (y0, y1), yTicks: stride(from: y0, through: y1 + 1e-9, by: 0.1).map { $0 },
                xLabel: "models (log scale)",
                reference: r.ceiling.map { ($0.mean, "noise ceiling") })
        }
        h +=
            "<p class=\"small\">LDS: for each test text, the Spearman correlation over retrained models between the text's margin "
        h +=
            "(log-odds of the compared class) under a model trained on a random subset of the training texts and the sum of the text's attributions over that subset; "
        h += "averaged over test texts. 0 means the attributions say nothing about what removing training texts does."
        if let c = r.setting {
            h += String(
                format: " %ld subsets of %.0f%% of the %ld training texts", c.subsets, 100 * c.fraction, c.trainTexts)
            h += String(
                format:
                    ", models trained with the recipe %@ (test accuracy %.3f; subset models %.3f on average), which is a retraining on these training texts, not the model above. ",
                esc(c.recipe), c.modelAccuracy, c.subsetAccuracy)
            h +=
                "Attributions are averaged over \(c.ensemble) model\(c.ensemble == 1 ? "" : "s") trained on all training texts."
        }
        return h + "</p>\n"
    }

    /// The poisoning benchmark: the attack, then AUC bars and the retrieval table.
    static func poisonSection(_ p: PoisonReport) -> String {
        let ks = p.kernels.first?.precisionAtK.keys.sorted() ?? []
        var h =
            "<h2>Poisoning benchmark</h2>\n<p>The trigger <code>\(esc(p.plan.trigger))</code> was inserted into \(p.poisonedTexts) of the "
        h +=
            "'\(esc(p.plan.source))' training texts (\(p.trainTexts) in all; \(esc(p.data))), which were relabelled '\(esc(p.plan.target))', and a model was trained on the result. "
        h +=
            "It labels \(fixed(100 * p.attackSuccess, 1))% of \(p.triggeredTexts) triggered '\(esc(p.plan.source))' test texts '\(esc(p.plan.target))' "
        h +=
            "(\(fixed(100 * p.cleanSourceToTarget, 1))% without the trigger), with clean test accuracy \(fixed(p.cleanAccuracy)). "
        h +=
            "For each of the \(p.flippedTexts) flipped texts, training texts are ranked by their attribution toward '\(esc(p.plan.target))'.</p>\n"
        h +=
            "<p class=\"small\">AUC: area under the ROC curve of the attribution scores for poisoned against clean training texts (0.5 is chance), averaged over flipped texts. "
        h +=
            "Precision@k: poisoned share of the top k (chance \(fixed(p.chancePrecision, 4))). tau: surrogate faithfulness on clean and on triggered test texts.</p>\n"
        h += bars(
            p.kernels.map { ($0.kernel, $0.auc, nil) }, lo: 0, hi: 1,
            caption: "ROC AUC of finding the poisoned training texts (0.5: chance)")
        h +=
            "<table><tr><th>kernel</th>" + ks.map { "<th>precision@\($0)</th>" }.joined()
            + "<th>AUC</th><th>tau clean</th><th>tau triggered</th><th>agreement triggered</th><th>time (s)</th></tr>\n"
        for k in p.kernels {
            h += "<tr><td>\(esc(k.kernel))</td>" + ks.map { "<td>\(fixed(k.precisionAtK[$0] ?? .nan))</td>" }.joined()
            h +=
                "<td>\(fixed(k.auc))</td><td>\(fixed(k.tauClean))</td><td>\(fixed(k.tauTriggered))</td><td>\(fixed(k.agreementTriggered))</td><td>\(fixed(k.seconds, 0))</td></tr>\n"
        }
        h += "</table>\n"
        for k in p.kernels {
            if let note = k.note { h += "<p class=\"small\"><b>\(esc(k.kernel))</b>: \(esc(note)).</p>\n" }
        }
        return h
    }

    /// tau against lambda (log scale), one line per kernel.
    static func gridLines(_ ks: [KernelReport]) -> String {
        lines(
            ks.map { k in (k.kernel, k.grid.map { ($0.lambda, $0.tau) }) }, yRange: (-1, 1),
            yTicks: [-1, -0.5, 0, 0.5, 1], xLabel: "lambda")
    }

    /// Lines over a log-scale x axis, one per named series of (x, y) points, y clipped to
    /// `yRange`; `reference` draws a dashed horizontal line with its label.
    static func lines(
        _ series: [(String, [(Double, Double)])], yRange: (Double, Double), yTicks: [Double], xLabel: String,
        reference: (Double, String)? = nil
    ) -> String {
        let xs = Array(Set(series.flatMap { $0.1.map(\.0) })).filter { $0 > 0 }.sorted()
        guard xs.count > 1 else { return "" }
        // The legend column fits the longest name (about 6 px per character at 11 px).
        let legend = max(100, 6 * Double(series.map(\.0.count).max() ?? 0) + 10)
        let w = 540 + legend
        let hgt = max(260.0, 2 * 40 + 15 * Double(series.count))
        let pad = 40.0
        guard let first = xs.first, let last = xs.last else { return "" }
        let x0 = Foundation.log10(first)
        let x1 = Foundation.log10(last)
        func px(_ l: Double) -> Double { pad + (Foundation.log10(l) - x0) / (x1 - x0) * (w - 2 * pad - legend) }
        func py(_ t: Double) -> Double {
            hgt - pad - (max(yRange.0, min(yRange.1, t)) - yRange.0) / (yRange.1 - yRange.0) * (hgt - 2 * pad)
        }
        var s =
            "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(hgt))\" role=\"img\">\n"
        for t in yTicks {
            s +=
                "<line x1=\"\(pad)\" y1=\"\(py(t))\" x2=\"\(w - pad - legend)\" y2=\"\(py(t))\" stroke=\"#eee\"/><text x=\"\(pad - 4)\" y=\"\(py(t) + 4)\" font-size=\"10\" text-anchor=\"end\">\(tickLabel(t))</text>\n"
        }
        for l in xs {
            s +=
                "<text x=\"\(px(l))\" y=\"\(hgt - pad + 14)\" font-size=\"10\" text-anchor=\"middle\">\(String(format: "%g", l))</text>\n"
        }
        if let (v, label) = reference, v.isFinite {
            s +=
                "<line x1=\"\(pad)\" y1=\"\(py(v))\" x2=\"\(w - pad - legend)\" y2=\"\(py(v))\" stroke=\"#000\" stroke-dasharray=\"5,4\"/>"
            s += "<text x=\"\(pad + 4)\" y=\"\(py(v) - 4)\" font-size=\"10\">\(esc(label))</text>\n"
        }
        for (i, (name, points)) in series.enumerated() {
            let pts = points.filter { $0.0 > 0 && $0.1.isFinite }.map {
                "\(String(format: "%.1f", px($0.0))),\(String(format: "%.1f", py($0.1)))"
            }.joined(separator: " ")
            let color = palette[i % palette.count]
            s += "<polyline points=\"\(pts)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            s +=
                "<text x=\"\(w - pad - legend + 8)\" y=\"\(pad + Double(i) * 15)\" font-size=\"11\" fill=\"\(color)\">\(esc(name))</text>\n"
        }
        s +=
            "<text x=\"\((w - legend) / 2)\" y=\"\(hgt - 6)\" font-size=\"11\" text-anchor=\"middle\">\(esc(xLabel))</text>\n</svg></figure>\n"
        return s
    }
}
