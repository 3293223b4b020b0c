import TangentData
import TangentTensor

/// The one scoring path from kernel values to explanations, shared by the in-memory
/// engine (whole kernel rows), the streamed scorer (blocks of training texts) and the
/// ensemble explanation (one surrogate and kernel per model): each surrogate's logits
/// bias_c + sum_i W[c, i] K(x, x_i), accumulated in Double in training order, and the
/// running top-k of the attributions to the network's predicted class c: W[c, i] K(x, x_i)
/// of the first surrogate, or for an ensemble the mean over its models of
/// W_m[c, i] K_m(x, x_i) (with the mean kernel value). Given the same kernel values, any
/// split of the training texts into blocks gives the same bits, and a one-model ensemble
/// the plain path's.
package struct SurrogateScorer {
    /// What the surrogates are.
    package enum Members {
        /// Surrogates over one kernel (say, lambdas of a grid); the first is explained.
        case sharedKernel
        /// One surrogate per model of an ensemble, each over its own model's kernel.
        case ensemble
    }

    package let glms: [KernelGLM]
    package let members: Members
    /// The network's logits [m][C] and predicted classes.
    package let networkLogits: [[Double]]
    package let predicted: [Int]
    package let top: Int
    /// Each surrogate's logits [surrogate][m][C].
    package private(set) var logits: [[[Double]]]
    private var best: [TopK], worst: [TopK]

    package init(glms: [KernelGLM], networkLogits: [[Double]], top: Int, members: Members = .sharedKernel) {
        self.glms = glms
        self.members = members
        self.networkLogits = networkLogits
        predicted = networkLogits.map { Softmax.argmax($0) }
        self.top = top
        let m = networkLogits.count
        logits = glms.map { g in (0..<m).map { _ in g.bias } }
        best = (0..<m).map { _ in TopK(k: top) }
        worst = best
    }

    /// Adds training texts `first ..< first + rows`, whose kernel values with the m texts
    /// are `kernel` [m, rows] (row t: text t), in ascending order of training text.
    package mutating func add(first: Int, rows: Int, kernel: [Double]) {
        precondition(members == .sharedKernel, "an ensemble adds one kernel block per model")
        add(first: first, rows: rows, kernels: [kernel])
    }

    /// Adds training texts `first ..< first + rows` with each model's kernel block
    /// [m, rows] (`.ensemble`: one per surrogate, in the same order; else one).
    package mutating func add(first: Int, rows: Int, kernels: [[Double]]) {
        precondition(kernels.count == (members == .ensemble ? glms.count : 1), "one kernel block per model")
        let C = glms[0].classes
        let n = glms[0].trainCount
        let N = Double(glms.count)
        for t in predicted.indices {
            let c = predicted[t]
            for a in 0..<rows {
                let i = first + a
                var score = 0.0
                var k = 0.0
                for (g, surrogate) in glms.enumerated() {
                    let kg = kernels[members == .ensemble ? g : 0][t * rows + a]
                    for c in 0..<C { logits[g][t][c] += surrogate.weights[c * n + i] * kg }
                    switch members {
                    case .sharedKernel where g == 0:
                        score = surrogate.weights[c * n + i] * kg
                        k = kg
                    case .sharedKernel:
                        break
                    case .ensemble:
                        score += surrogate.weights[c * n + i] * kg / N
                        k += kg / N
                    }
                }
                guard top > 0 else { continue }
                if score > 0, best[t].admits(score) { best[t].insert(score, i, kernel: k) }
                if score < 0, worst[t].admits(-score) { worst[t].insert(-score, i, kernel: k) }
            }
        }
    }

    /// The surrogate probability reported for text t's class c: the first surrogate's, or
    /// the mean of an ensemble's.
    package func surrogateProbability(_ t: Int, classIndex c: Int) -> Double {
        switch members {
        case .sharedKernel: return Faithfulness.probability(logits: logits[0][t], classIndex: c)
        case .ensemble:
            return logits.reduce(0.0) {
                $0 + Faithfulness.probability(logits: $1[t], classIndex: c) / Double(logits.count)
            }
        }
    }

    /// The `top` largest attributions of text t, strongest first.
    package func proponents(_ t: Int) -> [TopK.Item] { best[t].sorted }
    /// The `top` most negative attributions of text t (scores negative), strongest first.
    package func opponents(_ t: Int) -> [TopK.Item] {
        worst[t].sorted.map { TopK.Item(score: -$0.score, index: $0.index, kernel: $0.kernel) }
    }

    /// The explanations of `texts` (the scorer's m texts) from what was added, each
    /// training item with its per-layer shares when `shares` gives them.
    package func explanations(
        _ texts: [String], train: [LabeledText], labels: LabelSet,
        shares: (_ text: Int, _ items: [Int]) throws -> [Int: [String: Double]] = { _, _ in [:] }
    ) rethrows -> [Explanation] {
        try texts.indices.map { t in
            let c = predicted[t]
            let pro = proponents(t)
            let con = opponents(t)
            let layerShares = try shares(t, (pro + con).map(\.index))
            func item(_ e: TopK.Item) -> AttributedText {
                let i = e.index
                return AttributedText(
                    index: i, line: train[i].line, text: train[i].text, label: train[i].label ?? "",
                    score: e.score, kernel: e.kernel, layerShares: layerShares[i])
            }
            return Explanation(
                text: texts[t], label: labels.names[c],
                probability: Faithfulness.probability(logits: networkLogits[t], classIndex: c),
                surrogateProbability: surrogateProbability(t, classIndex: c),
                proponents: pro.map(item), opponents: con.map(item))
        }
    }
}

/// The k largest scores seen so far with their indices and kernel values; of equal
/// scores the earlier index ranks first, as a stable sort of all scores would have it.
package struct TopK {
    package struct Item {
        package let score: Double
        package let index: Int
        package let kernel: Double
    }

    package let k: Int
    /// Weakest first: ascending by score, then descending by index.
    package private(set) var items: [Item] = []

    package init(k: Int) { self.k = k }

    package func admits(_ s: Double) -> Bool { items.count < k || s > items[0].score }

    package mutating func insert(_ s: Double, _ i: Int, kernel: Double) {
        if items.count == k { items.removeFirst() }
        let at = items.firstIndex { $0.score > s || ($0.score == s && $0.index < i) } ?? items.count
        items.insert(Item(score: s, index: i, kernel: kernel), at: at)
    }

    /// Strongest first.
    package var sorted: [Item] { items.reversed() }
}
