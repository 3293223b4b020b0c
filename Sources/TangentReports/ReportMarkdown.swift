import Foundation
import TangentEvaluation

/// The reports as Markdown (report.md, poisoning.md, lds.md).
public enum ReportMarkdown {
    /// The report as Markdown: a table per kernel and the grid.
    public static func comparison(_ r: ComparisonReport) -> String {
        var s = "# Kernel surrogate faithfulness: \(r.model)\n\n"
        s +=
            "Training texts: \(r.trainTexts) (\(r.train)); test texts: \(r.testTexts) (\(r.test)); classes: \(r.classes.joined(separator: ", ")).\n"
        s +=
            "Network test accuracy: \(fixed(r.networkTestAccuracy)). Projected kernels use K = \(r.projDim), seed \(r.seed), projector \(r.projectorTag).\n\n"
        s +=
            "tau: Kendall tau-b between the surrogate's and the network's log-odds of the compared class (class 1 for two classes, the true label otherwise) over all test texts. "
        s +=
            "tau (paper): over probabilities, texts at exactly 0 or 1 dropped. TAD: surrogate test accuracy minus the network's. "
        if let rule = r.kernels.first?.selection {
            s +=
                "lambda: chosen on the training texts alone by k-fold cross-validation (\(rule)): network-tau ranks lambdas by Kendall tau between the out-of-fold surrogate's and the network's log-odds on the training texts.\n\n"
            s +=
                "Time: this kernel's wall time (featurization unless cached, fits, measurement); peak memory: the process's peak so far. "
            s +=
                "Best tau over grid: the best test tau of the surrogates fitted on all training texts at each lambda (a rule that looked at the test texts).\n\n"
        } else {
            s +=
                "lambda: chosen by held-out cross-entropy on a tenth of the training texts (a report made before k-fold selection; its grid fits used the other nine tenths).\n\n"
            s +=
                "Time: this kernel's wall time (featurization unless cached, fits, measurement); peak memory: the process's peak so far.\n\n"
        }
        s +=
            "| kernel | tau | tau (paper) | texts kept | TAD | agreement | best tau over grid | lambda | time (s) | peak memory (MiB) | features |\n"
        s += "|---|---|---|---|---|---|---|---|---|---|---|\n"
        for k in r.kernels {
            s +=
                "| \(k.kernel) | \(fixed(k.tau)) | \(fixed(k.tauProbability)) | \(k.tauProbabilityTexts) | \(String(format: "%+.3f", k.tad)) | \(fixed(k.agreement)) | \(fixed(k.bestGridTau)) | \(String(format: "%g", k.lambda)) | \(fixed(k.seconds, 0)) | \(fixed(k.peakMemoryMiB, 0)) | \(k.featuresCached ? "cached" : "computed") |\n"
        }
        for k in r.kernels { if let note = k.note { s += "\n\(k.kernel): \(note).\n" } }
        s += layerShareTable(r) + projectionErrorTable(r) + replicateTable(r)
        if let lds = r.lds { s += "\n## Linear datamodeling score (LDS)\n\n" + ldsBody(lds) }
        s += tauGridTable(r)
        return s
    }

    /// The exact kernels' per-layer shares (NFT-K), when any kernel is exact.
    static func layerShareTable(_ r: ComparisonReport) -> String {
        var s = ""
        let exact = r.kernels.filter { $0.layerShares != nil }
        if let groups = exact.first?.layerShares?.map(\.group) {
            s += "\n## Per-layer share of the exact NTK (NFT-K)\n\n"
            s +=
                "pairs: summed over all test x train pairs; top proponents: over each test text's ten strongest proponents; self: over training self-kernels.\n\n"
            s +=
                "| kernel, view | " + groups.joined(separator: " | ") + " |\n|---|"
                + String(repeating: "---|", count: groups.count) + "\n"
            for k in exact {
                for (view, values) in [
                    ("pairs", k.layerShares!.map(\.pairs)), ("top proponents", k.layerShares!.map(\.topProponents)),
                    ("self", k.layerShares!.map(\.selfKernel)),
                ] {
                    s +=
                        "| \(k.kernel), \(view) | "
                        + values.map { $0.isNaN ? "-" : String(format: "%.1f%%", 100 * $0) }.joined(separator: " | ")
                        + " |\n"
                }
            }
        }
        return s
    }

    /// The projected kernels' error against the exact ones over K, when measured.
    static func projectionErrorTable(_ r: ComparisonReport) -> String {
        var s = ""
        if let pe = r.projectionError, !pe.isEmpty {
            s += "\n## Projection error against the exact kernel\n\n"
            s +=
                "Relative Frobenius error of the normalized test x train kernel on \(pe[0].testTexts) test and \(pe[0].trainTexts) training texts"
                + (pe[0].seeds.map { ", root mean square over \($0) projection seeds" } ?? "")
                + ".\n\n| kernel | K | relative error |\n|---|---|---|\n"
            for p in pe { s += "| \(p.label) | \(p.projDim) | \(fixed(p.relativeError, 4)) |\n" }
        }
        return s
    }

    /// tau and TAD over several models, when the report merges them.
    static func replicateTable(_ r: ComparisonReport) -> String {
        var s = ""
        if let rep = r.kernels.first?.replicates {
            s +=
                "\n## Over \(rep.models.count) models\n\nModels: \(rep.models.joined(separator: ", ")). Mean +- sample standard deviation.\n\n| kernel | tau | TAD | tau per model |\n|---|---|---|---|\n"
            for k in r.kernels {
                if let x = k.replicates {
                    s +=
                        "| \(k.kernel) | \(fixed(x.tauMean)) +- \(fixed(x.tauSD)) | \(String(format: "%+.3f", x.tadMean)) +- \(fixed(x.tadSD)) | "
                        + x.tau.map { fixed($0) }.joined(separator: ", ") + " |\n"
                }
            }
        }
        return s
    }

    /// tau and the selection's out-of-fold measures over every kernel's lambda grid.
    static func tauGridTable(_ r: ComparisonReport) -> String {
        var s = ""
        let columns = gridColumns(r.kernels.map { $0.grid.map(\.lambda) })
        s +=
            "\n## tau over the regularization grid\n\n| kernel | "
            + columns.map { String(format: "%g", $0) }.joined(separator: " | ") + " |\n"
        s += "|---|" + String(repeating: "---|", count: columns.count) + "\n"
        for k in r.kernels {
            func row(_ name: String, _ cell: (GridPoint) -> String) {
                s +=
                    "| \(k.kernel) (\(name)) | "
                    + gridCells(k.grid, lambda: \.lambda, columns: columns, cell).joined(separator: " | ") + " |\n"
            }
            row("tau") { fixed($0.tau) }
            if k.grid.contains(where: { $0.heldOutLoss != nil }) {
                row("held-out loss") { fixed($0.heldOutLoss ?? .nan, 4) }
                continue
            }
            row("out-of-fold tau") { fixed($0.networkTau) }
            row("out-of-fold network CE") { fixed($0.networkCrossEntropy, 4) }
            row("out-of-fold label CE") { fixed($0.labelCrossEntropy, 4) }
        }
        return s
    }

    /// The benchmark as Markdown.
    public static func poisoning(_ r: PoisonReport) -> String {
        let ks = (r.kernels.first?.precisionAtK.keys.sorted()) ?? []
        var s = "# Poisoning benchmark: \(r.data)\n\n"
        s +=
            "Trigger \"\(r.plan.trigger)\" inserted into \(r.poisonedTexts) of the '\(r.plan.source)' training texts (fraction \(r.plan.fraction), seed \(r.plan.seed)), relabelled '\(r.plan.target)'; "
        s += "\(r.trainTexts) training texts in all. A model was trained on the poisoned set.\n\n"
        s += "- Clean test accuracy: \(fixed(r.cleanAccuracy)) on \(r.testTexts) texts.\n"
        s +=
            "- Attack: \(fixed(100 * r.attackSuccess, 1))% of \(r.triggeredTexts) triggered '\(r.plan.source)' test texts are predicted '\(r.plan.target)' (\(fixed(100 * r.cleanSourceToTarget, 1))% without the trigger); \(r.flippedTexts) flipped texts are attributed.\n"
        s += "- Chance precision (poisoned share of the training texts): \(fixed(r.chancePrecision, 4)).\n\n"
        s +=
            "Precision@k: share of poisoned texts among the k training texts with the highest attribution toward '\(r.plan.target)', averaged over flipped texts. "
        s +=
            "AUC: area under the ROC curve of the attribution scores for poisoned vs clean training texts, averaged likewise. tau: surrogate faithfulness on clean and triggered test texts.\n\n"
        s +=
            "| kernel | " + ks.map { "precision@\($0)" }.joined(separator: " | ")
            + " | AUC | tau clean | tau triggered | agreement triggered | time (s) |\n"
        s += "|---|" + String(repeating: "---|", count: ks.count + 5) + "\n"
        for k in r.kernels {
            s += "| \(k.kernel) | " + ks.map { fixed(k.precisionAtK[$0] ?? .nan) }.joined(separator: " | ")
            s +=
                " | \(fixed(k.auc)) | \(fixed(k.tauClean)) | \(fixed(k.tauTriggered)) | \(fixed(k.agreementTriggered)) | \(fixed(k.seconds, 0)) |\n"
        }
        for k in r.kernels { if let note = k.note { s += "\n\(k.kernel): \(note).\n" } }
        return s
    }

    /// lds.md: the setting and one row per method.
    public static func lds(_ r: LDSReport) -> String {
        "# Linear datamodeling score\n\n" + ldsBody(r)
    }

    /// A row's lambda, or "-" for methods without a surrogate.
    static func lambdaCell(_ k: LDSKernelReport) -> String { k.lambda.map { String(format: "%g", $0) } ?? "-" }

    /// The setting, what LDS measures, the noise ceiling, the table, LDS against the
    /// ensemble size, and LDS over the surrogates' lambda grid (also a section of report.md).
    public static func ldsBody(_ r: LDSReport) -> String {
        var s = ""
        if let c = r.setting { s += ldsSetting(c) }
        s += "LDS: mean over test texts of the Spearman correlation, over subsets, between a test text's margin "
        s +=
            "(log-odds of the compared class) under each subset's model and the sum of its attributions over the subset; "
        s +=
            "95% bootstrap interval over test texts. Attribution: surrogate = W[c,i] K(x,x_i) (representer); surrogate influence = the first-order change of the surrogate's margin when training text i's term is dropped from its fit (KERNEL-infl); "
        s += "kernel = the kernel value with the test text's loss of the compared class "
        s += "(loss-gradient kernels; for influence functions minus Koh & Liang's influence); trak = TRAK's score.\n\n"
        s += ldsTable(r)
        let rules = Array(Set(r.kernels.compactMap(\.lambdaRule))).sorted()
        if !rules.isEmpty {
            s += "\nThe surrogates' lambda (of the model under study; every model of an ensemble uses the same rule): "
            s +=
                rules.map { rule in
                    rule.hasPrefix("lds on")
                        ? "rows marked \"lambda by LDS\": the grid's best by \(rule) (models of other seeded subsets than the evaluation ones), for the representer and the influence form apart"
                        : "chosen on the training texts by 5-fold out-of-fold \(rule)"
                }.joined(separator: "; ") + ".\n"
        }
        if let curve = r.curve { s += ldsCurve(r, curve) }
        s += ldsGridTable(r)
        return s
    }

    /// The run's setting: texts, models, recipe, ensemble and times.
    static func ldsSetting(_ c: LDSSetting) -> String {
        var s = ""
        s += "Training texts: \(c.train), \(c.trainTexts) texts; test texts: \(c.test), \(c.testTexts) texts.\n\n"
        s += String(
            format:
                "%ld models trained on seeded random %.0f%% subsets (mean test accuracy %.3f) and the model under study on all training texts (test accuracy %.3f), ",
            c.subsets, 100 * c.fraction, c.subsetAccuracy, c.modelAccuracy)
        s +=
            "all from the same initialization with the recipe: \(c.recipe). These are not the compared model: LDS asks how well each method, applied to the model under study, predicts what retraining on subsets does. "
        s +=
            "Attributions are averaged over \(c.ensemble) model\(c.ensemble == 1 ? "" : "s") trained on all training texts (seeds \(c.seed)...\(c.seed + UInt64(c.ensemble) - 1)): each kGLM surrogate is fitted once per model; TRAK averages inside its estimator.\n\n"
        s += String(format: "Run %@: %.0f s (subset training %.0f s", c.run, c.seconds, c.trainingSeconds)
        if let t = c.ceilingTrainingSeconds { s += String(format: ", their second training %.0f s", t) }
        if let m = c.modelSeconds, !m.isEmpty {
            s += String(format: ", %.1f s per model on all training texts", m.reduce(0, +) / Double(m.count))
        }
        s += ").\n\n"
        return s
    }

    /// The methods' table, with the noise ceiling's columns when the run has one.
    static func ldsTable(_ r: LDSReport) -> String {
        var s = ""
        if let c = r.ceiling {
            s += String(
                format:
                    "**Noise ceiling: %.3f** [%.3f, %.3f]. Every subset model was trained a second time from the same initialization with another training seed (dropout masks, batch order); ",
                c.mean, c.low, c.high)
            s +=
                "the ceiling is the mean over test texts of the Spearman correlation, over subsets, between the two trainings' margins: how well one retraining predicts another. "
            s +=
                "\"vs mean\" scores each method against the mean of the two trainings' margins, and its share is that over the ceiling. "
            s +=
                "A method that predicted the expected margin perfectly would score about sqrt(2c / (1 + c)) against the mean (Spearman-Brown), above the ceiling c itself.\n\n"
            s +=
                "| method | attribution | lambda | models | LDS | 95% interval | vs mean | share of ceiling | undefined | time (s) |\n|---|---|---|---|---|---|---|---|---|---|\n"
            for k in r.kernels {
                let mean = k.ldsMean?.mean ?? .nan
                s += String(
                    format: "| %@ | %@ | %@ | %ld | %.3f | [%.3f, %.3f] | %.3f | %.2f | %ld | %.0f |\n", k.kernel,
                    k.attribution, lambdaCell(k), k.ensemble ?? 1,
                    k.lds.mean, k.lds.low, k.lds.high, mean, mean / c.mean, k.lds.undefined, k.seconds)
            }
        } else {
            s +=
                "| method | attribution | lambda | models | LDS | 95% interval | undefined | time (s) |\n|---|---|---|---|---|---|---|---|\n"
            for k in r.kernels {
                s += String(
                    format: "| %@ | %@ | %@ | %ld | %.3f | [%.3f, %.3f] | %ld | %.0f |\n", k.kernel, k.attribution,
                    lambdaCell(k), k.ensemble ?? 1,
                    k.lds.mean, k.lds.low, k.lds.high, k.lds.undefined, k.seconds)
            }
        }
        return s
    }

    /// LDS against the number of models, and each model's LDS alone.
    static func ldsCurve(_ r: LDSReport, _ curve: [LDSKernelReport]) -> String {
        var s = ""
        let sizes = Array(Set(curve.compactMap(\.ensemble))).sorted()
        s +=
            "\n### LDS against the number of models\n\nEach cell: LDS of the attributions averaged over the first N models (the model under study and N-1 retrainings), and in brackets the seconds of attribution they took (features, kernels, surrogates, scores; training the models not included).\n\n"
        s +=
            "| method | " + sizes.map { "N = \($0)" }.joined(separator: " | ") + " |\n|---|"
            + sizes.map { _ in "---|" }.joined() + "\n"
        for name in r.kernels.map(\.kernel) {
            s +=
                "| \(name) | "
                + sizes.map { n in
                    curve.first { $0.kernel == name && $0.ensemble == n }.map {
                        String(format: "%.3f (%.0f)", $0.lds.mean, $0.seconds)
                    } ?? "-"
                }.joined(separator: " | ") + " |\n"
        }
        let spread = r.kernels.filter { ($0.perModel?.count ?? 0) > 1 }
        if !spread.isEmpty {
            s +=
                "\nEach model's attributions alone (the model under study, then its retrainings): mean [min, max] of their LDS.\n\n| method | model under study | mean | min | max |\n|---|---|---|---|---|\n"
            for k in spread {
                let v = k.perModel ?? []
                s += String(
                    format: "| %@ | %.3f | %.3f | %.3f | %.3f |\n", k.kernel, v[0],
                    v.reduce(0, +) / Double(v.count), v.min() ?? .nan, v.max() ?? .nan)
            }
        }
        return s
    }

    /// LDS over each surrogate's lambda and each influence baseline's damping (the model
    /// under study alone), one column per value any method has.
    static func ldsGridTable(_ r: LDSReport) -> String {
        var s = ""
        let gridded = r.kernels.filter { ($0.grid ?? []).count > 1 }
        if !gridded.isEmpty {
            let lambdas = gridColumns(gridded.map { ($0.grid ?? []).map(\.lambda) })
            s +=
                "\n### LDS over the surrogate's lambda and the influence baselines' damping\n\nThe model under study alone: each surrogate refitted at every lambda of its grid, and each influence baseline (if-head, if-proj, TRAK with one model, ekfac) with its curvature damped by each multiple of the curvature's scale (its mean diagonal; for ekfac each layer's mean corrected eigenvalue; empty: not on that method's grid); * marks the value used.\n\n"
            s +=
                "| method | " + lambdas.map { String(format: "%g", $0) }.joined(separator: " | ") + " |\n|---|"
                + lambdas.map { _ in "---|" }.joined() + "\n"
            for k in gridded {
                s +=
                    "| \(k.kernel) | "
                    + gridCells(k.grid ?? [], lambda: \.lambda, columns: lambdas) {
                        String(format: "%.3f", $0.lds) + ($0.lambda == k.lambda ? "*" : "")
                    }
                    .joined(separator: " | ") + " |\n"
            }
            for k in gridded where (k.grid ?? []).contains(where: { $0.selectionLDS != nil }) {
                s +=
                    "| \(k.kernel) (selection subsets) | "
                    + gridCells(k.grid ?? [], lambda: \.lambda, columns: lambdas) {
                        String(format: "%.3f", $0.selectionLDS ?? .nan)
                    }
                    .joined(separator: " | ") + " |\n"
            }
        }
        return s
    }
}
