import Foundation
import TangentData
import TangentSurrogate
import TangentTensor

extension AttributionEngine {
    /// Explains `texts` with an ensemble of engines, one per model (the model under study
    /// first, then, say, its latest earlier checkpoints), each with its own kernel and
    /// surrogate: a training text's score is the mean over the models of
    /// W_m[c, i] K_m(x, x_i) for the class c the first model predicts, its kernel value the
    /// mean of K_m(x, x_i), and the surrogate probability the mean of the surrogates'. The
    /// `top` highest and lowest mean scores are the proponents and opponents (of equal
    /// scores, the earlier training text first), scored by the `SurrogateScorer` of the
    /// plain path, so that a one-model ensemble is the plain explanation bit for bit. No
    /// per-layer shares.
    public static func explain(_ texts: [String], engines: [AttributionEngine], top: Int) throws -> [Explanation] {
        guard let primary = engines.first else {
            throw AttributionError("an ensemble explanation needs at least one model")
        }
        let n = primary.train.count
        let C = primary.classifier.labels.count
        guard engines.allSatisfy({ $0.train.count == n && $0.classifier.labels == primary.classifier.labels }) else {
            throw AttributionError("the ensemble's models must share the training texts and labels")
        }
        let query = texts.enumerated().map { LabeledText(text: $0.element, label: nil, line: $0.offset + 1) }
        let queries = try engines.map { try $0.query(query, source: "query texts") }
        var scorer = SurrogateScorer(
            glms: engines.map(\.glm),
            networkLogits: texts.indices.map { t in (0..<C).map { Double(queries[0].logits[t * C + $0]) } }, top: top,
            members: .ensemble)
        scorer.add(first: 0, rows: n, kernels: queries.map { $0.rows.map(Double.init) })
        return try scorer.explanations(texts, train: primary.train, labels: primary.classifier.labels)
    }
}
