import Foundation
import TangentAttribution
import TangentEvaluation

/// The page and the Markdown of `tangent audit`: the methods (with the benchmark's AUC and
/// precision when labels were flipped) and the suspects, each with its label, the
/// surrogate's label, every method's score and the training texts that support the
/// surrogate's label.
public enum AuditHTML {
    /// The marker in the page's head by which an earlier page may be replaced.
    public static let generator = "tangent audit"

    public static func render(_ r: AuditReport) -> String {
        let esc = ReportHTML.esc
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"/><meta name="generator" content="\(generator)"/>
            <title>Label audit: \(esc(r.train))</title>
            <style>
            body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222;line-height:1.4}
            section{border-top:1px solid #ccc;padding:.6em 0 1em}h2{font-size:1.05em;margin:.3em 0}
            table{border-collapse:collapse;margin:.4em 0 .8em}td,th{border-bottom:1px solid #e4e4e4;padding:2px 8px;text-align:left;vertical-align:top;font-size:.92em}
            td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.small{color:#555;font-size:.88em}
            .lab{display:inline-block;padding:0 5px;border-radius:3px;background:#eef;font-size:.85em;white-space:nowrap}
            .bad{background:#fbe3e3}.flip{color:#a00;font-weight:600}
            </style></head><body>
            <h1>Which training labels look wrong?</h1>
            <p>Model <code>\(esc(r.model))</code>; training texts <code>\(esc(r.train))</code> (\(r.trainTexts)); kernel surrogate <b>\(esc(r.kernel))</b>\(r.lambda.map { String(format: " (lambda %g)", $0) } ?? "").
            Suspects are ranked by <b>\(esc(r.rankedBy))</b>; higher scores are more suspect under every method.</p>
            <p class="small">surrogate-oof: minus the out-of-fold log-odds of the text's label under the surrogate fitted without its fold.
            surrogate-self: how much the text's own term in the surrogate's fit raises its margin of its label (first-order influence).
            network-loss: the network's cross-entropy on the label. tracin-self: TracIn self-influence (sum over checkpoints of &#951;&#183;|gradient|&#178;).
            trak-self: TRAK's score of the text on itself. ekfac-self: EK-FAC self-influence (the loss gradient's norm under the inverse Kronecker-factored curvature).</p>

            """
        h += "<h2>Methods</h2>\n<table><tr><th>method</th><th>kernel</th>"
        if r.flip != nil { h += "<th>AUC</th><th>precision at the flip rate</th>" }
        h += "<th>time (s)</th></tr>\n"
        for m in r.methods {
            h += "<tr><td>\(esc(m.method))</td><td>\(esc(m.kernel ?? "-"))</td>"
            if r.flip != nil {
                h +=
                    "<td class=\"num\">\(fixed(m.auc ?? .nan))</td><td class=\"num\">\(fixed(m.precisionAtFlipRate ?? .nan))</td>"
            }
            h += "<td class=\"num\">\(fixed(m.seconds, 1))</td></tr>\n"
        }
        h += "</table>\n"
        let flipped = Set(r.flip?.flipped ?? [])
        if let f = r.flip {
            h +=
                "<p class=\"small\">Benchmark: \(f.flipped.count) of the \(r.trainTexts) training labels (\(fixed(100 * f.rate, 1))%, seed \(f.seed)) were flipped to another label at random "
            h +=
                "and the model retrained with the recipe \(esc(f.recipe)) (\(fixed(f.trainingSeconds, 0)) s). AUC: flipped against untouched texts (0.5: chance); "
            h +=
                "precision: flipped share of the \(f.flipped.count) most suspect (chance \(fixed(f.rate))). Flipped suspects are marked <span class=\"flip\">flipped</span>.</p>\n"
        }
        h += "<h2>Suspects</h2>\n"
        for s in r.suspects {
            h += "<section><h2>\(s.rank). \(esc(s.text))</h2>\n"
            h +=
                "<p>label <span class=\"lab bad\">\(esc(s.label))</span>, surrogate says <span class=\"lab\">\(esc(s.surrogateLabel))</span>"
            h +=
                " <span class=\"small\">(line \(s.line))</span>"
                + (flipped.contains(s.index) ? " <span class=\"flip\">flipped</span>" : "") + "</p>\n"
            h +=
                "<p class=\"small\">"
                + s.scores.keys.sorted().map { "\(esc($0)) \(fixed(s.scores[$0]!))" }.joined(separator: " &#183; ")
                + "</p>\n"
            if !s.proponents.isEmpty {
                h +=
                    "<table><tr><th>training texts supporting '\(esc(s.surrogateLabel))'</th><th>label</th><th>score</th></tr>\n"
                for p in s.proponents {
                    h +=
                        "<tr><td>\(esc(p.text))</td><td><span class=\"lab\">\(esc(p.label))</span></td><td class=\"num\">\(String(format: "%.3g", p.score))</td></tr>\n"
                }
                h += "</table>\n"
            }
            h += "</section>\n"
        }
        return h + "</body></html>\n"
    }

    /// The methods table and the suspects as Markdown (the command's standard output).
    public static func markdown(_ r: AuditReport) -> String {
        var s =
            "# Label audit of \(r.train) (\(r.trainTexts) texts)\n\nKernel \(r.kernel)"
            + (r.lambda.map { String(format: ", lambda %g", $0) } ?? "") + "; suspects ranked by \(r.rankedBy).\n\n"
        if let f = r.flip {
            s +=
                "Benchmark: \(f.flipped.count) labels (\(String(format: "%.1f", 100 * f.rate))%) flipped at random (seed \(f.seed)); model retrained with \(f.recipe).\n\n"
            s += "| method | kernel | AUC | precision at flip rate | time (s) |\n|---|---|---|---|---|\n"
            for m in r.methods {
                s += String(
                    format: "| %@ | %@ | %.3f | %.3f | %.1f |\n", m.method, m.kernel ?? "-", m.auc ?? .nan,
                    m.precisionAtFlipRate ?? .nan, m.seconds)
            }
        } else {
            s += "| method | kernel | time (s) |\n|---|---|---|\n"
            for m in r.methods { s += String(format: "| %@ | %@ | %.1f |\n", m.method, m.kernel ?? "-", m.seconds) }
        }
        let flipped = Set(r.flip?.flipped ?? [])
        s += "\n| rank | line | label | surrogate | \(r.rankedBy) | text |\n|---|---|---|---|---|---|\n"
        for x in r.suspects {
            let text = x.text.count > 80 ? String(x.text.prefix(77)) + "..." : x.text
            s +=
                "| \(x.rank) | \(x.line) | \(x.label)\(flipped.contains(x.index) ? " (flipped)" : "") | \(x.surrogateLabel) | "
                + String(format: "%.3f", x.scores[r.rankedBy] ?? .nan)
                + " | \(text.replacingOccurrences(of: "|", with: "\\|")) |\n"
        }
        return s
    }
}
