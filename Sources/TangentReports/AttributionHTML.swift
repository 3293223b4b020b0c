import Foundation
import TangentSurrogate

/// The page `tangent attribute --html` writes: every explained text with its prediction
/// and its proponents and opponents (score, kernel value, training label, per-layer
/// shares), self-contained (inline style and a few lines of script, no requests), with a
/// filter by predicted class.
public enum AttributionHTML {
    /// The marker in the page's head by which an earlier page may be replaced.
    public static let generator = "tangent attribute"

    public static func render(
        _ explanations: [Explanation], model: String, train: String, kernel: String, classes: [String]
    ) -> String {
        let esc = ReportHTML.esc
        let counts = Dictionary(grouping: explanations, by: \.label).mapValues(\.count)
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"/><meta name="generator" content="\(generator)"/>
            <title>Attributions: \(esc(model))</title>
            <style>
            body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222;line-height:1.4}
            section{border-top:1px solid #ccc;padding:.6em 0 1em}h2{font-size:1.05em;margin:.3em 0}
            table{border-collapse:collapse;margin:.4em 0 .8em;width:100%;table-layout:fixed}td,th{border-bottom:1px solid #e4e4e4;padding:2px 6px;text-align:left;vertical-align:top;font-size:.92em}
            td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.small{color:#555;font-size:.88em}
            .lab{display:inline-block;padding:0 5px;border-radius:3px;background:#eef;font-size:.85em;white-space:nowrap}
            .shares{white-space:normal}.sh{display:inline-block;margin-right:6px;font-size:.8em}
            .bar{display:inline-block;height:8px;vertical-align:middle;margin-right:2px}.pos{background:#4C72B0}.neg{background:#C44E52}
            .pred{font-weight:600}
            </style></head><body>
            <h1>Which training texts made the model say this?</h1>
            <p>Model <code>\(esc(model))</code>; training texts <code>\(esc(train))</code>; kernel surrogate <b>\(esc(kernel))</b>.
            A training text's <b>score</b> is W[c,i]&#183;K(x,x<sub>i</sub>), its term in the surrogate's logit for the predicted class c:
            positive scores push toward c (proponents), negative ones away (opponents). <b>k</b> is K(x,x<sub>i</sub>).
            Layer shares split the exact NTK between the two texts into its layer groups, signed, as shares of the sum of the parts' absolute values.</p>
            <p><label>Predicted class: <select id="cls" onchange="filter()"><option value="">all (\(explanations.count))</option>
            """
        for c in classes where counts[c] != nil {
            h += "<option value=\"\(esc(c))\">\(esc(c)) (\(counts[c]!))</option>"
        }
        h += "</select></label> <span id=\"shown\" class=\"small\"></span></p>\n"
        for (t, e) in explanations.enumerated() {
            h += "<section class=\"expl\" data-label=\"\(esc(e.label))\">\n"
            h += "<h2>\(t + 1). \(esc(e.text))</h2>\n"
            h +=
                "<p>prediction <span class=\"lab pred\">\(esc(e.label))</span> p = \(String(format: "%.3f", e.probability)); surrogate p = \(String(format: "%.3f", e.surrogateProbability))</p>\n"
            h += table(e.proponents, title: "Proponents (push toward \(e.label))")
            h += table(e.opponents, title: "Opponents (push away from \(e.label))")
            h += "</section>\n"
        }
        h += """
            <script>
            function filter(){var c=document.getElementById('cls').value,n=0;
            document.querySelectorAll('section.expl').forEach(function(s){var on=!c||s.dataset.label===c;s.style.display=on?'':'none';if(on)n++;});
            document.getElementById('shown').textContent=n+' shown';}
            filter();
            </script>
            </body></html>

            """
        return h
    }

    static func table(_ items: [AttributedText], title: String) -> String {
        let esc = ReportHTML.esc
        // Fixed column widths, so that every table of the page lines up.
        var h =
            "<table><colgroup><col style=\"width:3%\"/><col style=\"width:9%\"/><col style=\"width:7%\"/><col style=\"width:8%\"/>"
            + "<col style=\"width:48%\"/><col style=\"width:25%\"/></colgroup><tr><th colspan=\"6\">\(esc(title))</th></tr>\n"
        if items.isEmpty { return h + "<tr><td colspan=\"6\" class=\"small\">none</td></tr></table>\n" }
        h +=
            "<tr class=\"small\"><th>#</th><th>score</th><th>k</th><th>label</th><th>training text (line)</th><th>layer shares</th></tr>\n"
        for (i, a) in items.enumerated() {
            h +=
                "<tr><td class=\"num\">\(i + 1)</td><td class=\"num\">\(String(format: "%+.4g", a.score))</td><td class=\"num\">\(String(format: "%.4g", a.kernel))</td>"
            h +=
                "<td><span class=\"lab\">\(esc(a.label))</span></td><td>\(esc(a.text)) <span class=\"small\">(\(a.line))</span></td>"
            h += "<td class=\"shares\">\(shares(a.layerShares))</td></tr>\n"
        }
        return h + "</table>\n"
    }

    /// The three largest shares as small signed bars with their percentages.
    static func shares(_ s: [String: Double]?) -> String {
        guard let s else { return "<span class=\"small\">-</span>" }
        return s.sorted { abs($0.value) > abs($1.value) }.prefix(3).map { g, v in
            "<span class=\"sh\"><span class=\"bar \(v < 0 ? "neg" : "pos")\" style=\"width:\(Int((abs(v) * 40).rounded()))px\"></span>"
                + "\(ReportHTML.esc(g)) \(String(format: "%+.0f%%", 100 * v))</span>"
        }.joined()
    }
}
