import Foundation
import TangentData
import TangentTensor

extension AttributionEngine {
    /// Explains `texts` with an ensemble of engines, one per model (the model under study
    /// first, then, say, its latest earlier checkpoints), each with its own kernel and
    /// surrogate: a training text's score is the mean over the models of
    /// W_m[c, i] K_m(x, x_i) for the class c the first model predicts, its kernel value the
    /// mean of K_m(x, x_i), and the surrogate probability the mean of the surrogates'. The
    /// `top` highest and lowest mean scores are the proponents and opponents (of equal
    /// scores, the earlier training text first). No per-layer shares.
    public static func explain(_ texts: [String], engines: [AttributionEngine], top: Int) throws -> [Explanation] {
        guard let primary = engines.first else {
            throw AttributionError("an ensemble explanation needs at least one model")
        }
        let n = primary.train.count
        let C = primary.classifier.labels.count
        let N = Double(engines.count)
        guard engines.allSatisfy({ $0.train.count == n && $0.classifier.labels == primary.classifier.labels }) else {
            throw AttributionError("the ensemble's models must share the training texts and labels")
        }
        let query = texts.enumerated().map { LabeledText(text: $0.element, label: nil, line: $0.offset + 1) }
        let queries = try engines.map { try $0.query(query, source: "query texts") }
        return texts.indices.map { t in
            let network = (0..<C).map { Double(queries[0].logits[t * C + $0]) }
            let c = Softmax.argmax(network)
            var score = [Double](repeating: 0, count: n)
            var kernel = score
            var surrogateProbability = 0.0
            for (e, q) in zip(engines, queries) {
                let row = Array(q.rows[(t * n)..<((t + 1) * n)])
                let a = e.glm.attributions(kernelRow: row, classIndex: c)
                for i in 0..<n {
                    score[i] += a[i] / N
                    kernel[i] += Double(row[i]) / N
                }
                surrogateProbability +=
                    Faithfulness.probability(logits: e.glm.logits(kernelRows: row), classIndex: c) / N
            }
            var best = TopK(k: top)
            var worst = TopK(k: top)
            for i in 0..<n {
                if score[i] > 0, best.admits(score[i]) { best.insert(score[i], i, kernel: kernel[i]) }
                if score[i] < 0, worst.admits(-score[i]) { worst.insert(-score[i], i, kernel: kernel[i]) }
            }
            func item(_ e: TopK.Item, sign: Double) -> AttributedText {
                let x = primary.train[e.index]
                return AttributedText(
                    index: e.index, line: x.line, text: x.text, label: x.label ?? "", score: sign * e.score,
                    kernel: e.kernel, layerShares: nil)
            }
            return Explanation(
                text: texts[t], label: primary.classifier.labels.names[c],
                probability: Faithfulness.probability(logits: network, classIndex: c),
                surrogateProbability: surrogateProbability,
                proponents: best.sorted.map { item($0, sign: 1) }, opponents: worst.sorted.map { item($0, sign: -1) })
        }
    }
}
