import Foundation
import Synchronization
import TangentModel
import TangentTensor

/// EK-FAC influence (George et al. 2018; Grosse et al. 2023), as kronfluence 1.0.1 computes
/// it, over every linear layer of the model (weight [out, in] with its bias as an extra input
/// column of ones; embeddings and norms are not linear layers and take no part):
///
///   A = mean over input rows of a a^T (a = [input; 1]),  S = mean over rows of g g^T
///   (g the gradient of the text's loss at the layer's output), both over every row a layer
///   sees (tokens, or one pooled row per text);
///   A = Q_A diag(.) Q_A^T, S = Q_S diag(.) Q_S^T (eigendecompositions);
///   Lambda = mean over training texts of (Q_S^T G_i Q_A)^2 elementwise (the eigenvalue
///   correction, G_i = text i's loss gradient of the layer, [out, in + 1]);
///   influence(q, i) = sum over layers of < Q_S ((Q_S^T G_q Q_A) / (Lambda + lambda)) Q_A^T, G_i >,
///
/// G_q the gradient of the query's measurement (its loss or its margin). The loss is the
/// cross-entropy of the text's label (`Fisher.empirical`) or of a label drawn from the
/// model's own prediction (`Fisher.sampled`, the true Fisher: kronfluence's default).
/// Memory: in^2 + out^2 per layer and shard for the factors, the corrected eigenvalues (one
/// value per linear parameter), and two blocks of per-text gradients when scoring.
public struct EKFAC: Sendable {
    /// One linear layer's factors.
    public struct Layer: Sendable {
        /// The weight tensor [outWidth, inWidth] and its bias, by layout index.
        public let weight: Int, bias: Int?
        public let inWidth: Int, outWidth: Int
        /// Width of the augmented input (`inWidth`, plus 1 with a bias).
        public var augmented: Int { inWidth + (bias == nil ? 0 : 1) }
        /// Eigenvectors of A [augmented, augmented] and S [out, out] as columns, row-major.
        let activationBasis: [Float], gradientBasis: [Float]
        /// The corrected eigenvalues Lambda [out, augmented].
        public let eigenvalues: [Float]
    }

    /// Whose loss the curvature is of.
    public enum Fisher: Sendable, Equatable {
        /// The training texts' own labels (the empirical Fisher).
        case empirical
        /// A label per text drawn from the model's softmax, by `seed` and the text's index.
        case sampled(seed: UInt64)
    }

    /// The damping lambda added to the corrected eigenvalues.
    public enum Damping: Sendable, Equatable {
        /// The same value for every layer.
        case absolute(Double)
        /// This multiple of the mean of each layer's Lambda.
        case relative(Double)
        /// kronfluence's heuristic (`damping_factor=None`): 0.1 times the mean of each layer's Lambda.
        public static let heuristic = Damping.relative(0.1)
    }

    /// What a query's gradient is of.
    public enum Measurement: Sendable, Equatable {
        /// Cross-entropy of the query's label.
        case loss
        /// log p_y - log(1 - p_y) of the query's label y (what LDS measures).
        case margin
    }

    public let layers: [Layer]
    /// The linear tensors (weights and biases) in layout order, as per-text gradients hold them.
    public let subset: ParameterSubset
    /// Training texts the factors were fitted on.
    public let texts: Int

    /// Fits the factors on `texts` (token sequences as the model sees them) with `labels`
    /// (class indices): one backward pass for the covariances, one for the eigenvalue
    /// correction, in batches of `batchSize`. `progress(done, total)` counts texts over both passes.
    public init(
        model: any ClassifierModel<Float>, texts: [[Int32]], labels: [Int], fisher: Fisher = .sampled(seed: 0),
        batchSize: Int = 16, progress: (Int, Int) -> Void = { _, _ in }
    ) throws {
        precondition(texts.count == labels.count && !texts.isEmpty, "one label per text, at least one text")
        let layout = model.layout
        let C = model.shape.classes
        let batches = stride(from: 0, to: texts.count, by: batchSize).map { $0..<min(texts.count, $0 + batchSize) }
        func lossSeeds(_ logits: [Float], _ range: Range<Int>) -> [Float] {
            var s = [Float](repeating: 0, count: range.count * C)
            for (b, t) in range.enumerated() {
                let z = (0..<C).map { Double(logits[b * C + $0]) }
                let y: Int
                switch fisher {
                case .empirical: y = labels[t]
                case .sampled(let seed):
                    y = EKFAC.draw(Softmax.probabilities(z), CounterRNG.derive(seed, 0xecfac, UInt64(t)).uniform(0))
                }
                let r = Softmax.lossResidual(z, label: y)
                for c in 0..<C { s[b * C + c] = Float(r[c]) }
            }
            return s
        }
        // Pass 1: A and S per layer, summed per shard (shards run concurrently), then over shards.
        let everything = ParameterSubset(
            layout: layout, tensorIndices: layout.tensors.indices.filter { $0 != model.tokenTableIndex })
        let shards = (0..<max(1, model.threads)).map { _ in CovarianceSums() }
        for range in batches {
            let logits = try model.forward(
                TokenBatch(sequences: Array(texts[range]), padID: model.shape.padID), rowInvariant: true)
            model.linearRows(seed: lossSeeds(logits, range), subset: everything) { rows, _ in
                shards[rows.shard].add(rows)
            }
            progress(range.upperBound, 2 * texts.count)
        }
        let layers = try EKFAC.bases(shards, layout: layout)
        let subset = ParameterSubset(
            layout: layout, tensorIndices: layers.flatMap { [$0.weight] + ($0.bias.map { [$0] } ?? []) }.sorted())
        // Pass 2: Lambda, the mean squared rotated per-text gradient.
        var lambda = layers.map { [Double](repeating: 0, count: $0.outWidth * $0.augmented) }
        var gradients = [Float](repeating: 0, count: batchSize * subset.count)
        for range in batches {
            let logits = try model.forward(
                TokenBatch(sequences: Array(texts[range]), padID: model.shape.padID), rowInvariant: true)
            gradients.withUnsafeMutableBufferPointer {
                EKFAC.rotatedGradients(
                    layers, model: model, seed: lossSeeds(logits, range), subset: subset, into: $0)
            }
            EKFAC.addSquares(of: gradients, texts: range.count, layers: layers, subset: subset, into: &lambda)
            progress(texts.count + range.upperBound, 2 * texts.count)
        }
        self.layers = zip(layers, lambda).map { l, values in
            Layer(
                weight: l.weight, bias: l.bias, inWidth: l.inWidth, outWidth: l.outWidth,
                activationBasis: l.activationBasis,
                gradientBasis: l.gradientBasis, eigenvalues: values.map { Float($0 / Double(texts.count)) })
        }
        self.subset = subset
        self.texts = texts.count
    }

    /// Adds the squares of `texts` rotated gradients (rows of `subset.count` in `gradients`,
    /// laid out as `rotate` writes them) to each layer's sums [out, augmented], layers in
    /// parallel.
    static func addSquares(
        of gradients: [Float], texts: Int, layers: [Layer], subset: ParameterSubset, into sums: inout [[Double]]
    ) {
        sums.withUnsafeMutableBufferPointer { lp in
            gradients.withUnsafeBufferPointer { gp in
                parallelFor(layers.count) { l in
                    let L = layers[l]
                    let i = L.inWidth
                    let a = L.augmented
                    lp[l].withUnsafeMutableBufferPointer { acc in
                        for b in 0..<texts {
                            let text = gp.baseAddress! + b * subset.count
                            let w = text + subset.compactOffsets[L.weight]!
                            for r in 0..<L.outWidth {
                                for c in 0..<i { acc[r * a + c] += Double(w[r * i + c]) * Double(w[r * i + c]) }
                                if let bias = L.bias {
                                    let v = Double(text[subset.compactOffsets[bias]! + r])
                                    acc[r * a + i] += v * v
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Each linear layer's eigenbases Q_A and Q_S from its covariances summed over the
    /// shards (eigenvalues not yet corrected), in tensor order.
    static func bases(_ shards: [CovarianceSums], layout: ParameterLayout) throws -> [Layer] {
        var found: [Int: (bias: Int?, i: Int, o: Int)] = [:]
        for s in shards { for (w, l) in s.layers { found[w] = (l.bias, l.i, l.o) } }
        guard !found.isEmpty else { throw FeatureStoreError("EK-FAC: the model has no linear layers") }
        var layers: [Layer] = []
        for w in found.keys.sorted() {
            let (bias, i, o) = found[w]!
            let a = i + (bias == nil ? 0 : 1)
            var A = [Double](repeating: 0, count: a * a)
            var S = [Double](repeating: 0, count: o * o)
            var rowsA = 0
            var rowsS = 0
            for s in shards {
                guard let l = s.layers[w] else { continue }
                for k in A.indices { A[k] += Double(l.A[k]) }
                for k in S.indices { S[k] += Double(l.S[k]) }
                rowsA += l.rows
                rowsS += l.rows
            }
            guard let qa = EKFAC.basis(A, n: a, rows: rowsA), let qs = EKFAC.basis(S, n: o, rows: rowsS) else {
                throw FeatureStoreError(
                    "EK-FAC: the eigendecomposition of \(layout.tensors[w].name)'s factors did not converge")
            }
            layers.append(
                Layer(
                    weight: w, bias: bias, inWidth: i, outWidth: o, activationBasis: qa, gradientBasis: qs,
                    eigenvalues: []))
        }
        return layers
    }

    /// influence(q, i) for every query (rows) and training text (columns), [queries, train]
    /// row-major: the queries' measurement gradients (their `queryLabels`; nil: the
    /// predicted class) preconditioned once, then against the training texts' loss
    /// gradients (their labels), `blockSize` texts at a time.
    public func influence(
        model: any ClassifierModel<Float>, queries: [[Int32]], queryLabels: [Int?], measurement: Measurement,
        train: [[Int32]], trainLabels: [Int], damping: Damping, blockSize: Int = 16,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> [Float] {
        precondition(queries.count == queryLabels.count && train.count == trainLabels.count, "one label per text")
        let P = subset.count
        let C = model.shape.classes
        let nq = queries.count
        let nt = train.count
        let dampings = dampings(damping)
        var out = [Float](repeating: 0, count: nq * nt)
        let queryBlocks = stride(from: 0, to: nq, by: blockSize).map { $0..<min(nq, $0 + blockSize) }
        let trainBlocks = stride(from: 0, to: nt, by: blockSize).map { $0..<min(nt, $0 + blockSize) }
        var preconditioned = [Float](repeating: 0, count: blockSize * P)
        var trainGradients = [Float](repeating: 0, count: blockSize * P)
        var tile = [Float](repeating: 0, count: blockSize * blockSize)
        var done = 0
        for qb in queryBlocks {
            let logits = try model.forward(
                TokenBatch(sequences: Array(queries[qb]), padID: model.shape.padID), rowInvariant: true)
            var seeds = [Float](repeating: 0, count: qb.count * C)
            for b in 0..<qb.count {
                let z = (0..<C).map { Double(logits[b * C + $0]) }
                let y = queryLabels[qb.lowerBound + b] ?? Softmax.argmax(z)
                let r =
                    measurement == .loss ? Softmax.lossResidual(z, label: y) : Softmax.marginCoefficients(z, label: y)
                for c in 0..<C { seeds[b * C + c] = Float(r[c]) }
            }
            preconditioned.withUnsafeMutableBufferPointer {
                model.perExampleGradients(seed: seeds, subset: subset, into: $0)
            }
            let ls = layers
            preconditioned.withUnsafeMutableBufferPointer { gp in
                parallelFor(ls.count) { l in
                    for b in 0..<qb.count {
                        ls[l].precondition(gp.baseAddress! + b * P, subset: subset, damping: dampings[l])
                    }
                }
            }
            for tb in trainBlocks {
                let tl = try model.forward(
                    TokenBatch(sequences: Array(train[tb]), padID: model.shape.padID), rowInvariant: true)
                var s = [Float](repeating: 0, count: tb.count * C)
                for b in 0..<tb.count {
                    let r = Softmax.lossResidual(
                        (0..<C).map { Double(tl[b * C + $0]) }, label: trainLabels[tb.lowerBound + b])
                    for c in 0..<C { s[b * C + c] = Float(r[c]) }
                }
                trainGradients.withUnsafeMutableBufferPointer {
                    model.perExampleGradients(seed: s, subset: subset, into: $0)
                }
                Float.gemm(
                    transA: false, transB: true, m: qb.count, n: tb.count, k: P, alpha: 1, a: preconditioned, lda: P,
                    b: trainGradients, ldb: P, beta: 0, c: &tile, ldc: tb.count)
                for x in 0..<qb.count {
                    for y in 0..<tb.count { out[(qb.lowerBound + x) * nt + tb.lowerBound + y] = tile[x * tb.count + y] }
                }
                done += qb.count * tb.count
                progress(done, nq * nt)
            }
        }
        return out
    }

    /// Each layer's damping value.
    public func dampings(_ damping: Damping) -> [Float] {
        layers.map { l in
            switch damping {
            case .absolute(let v): return Float(v)
            case .relative(let f):
                return Float(f * l.eigenvalues.reduce(0.0) { $0 + Double($1) } / Double(max(1, l.eigenvalues.count)))
            }
        }
    }

    /// Replaces each text's gradient (rows of `subset.count` at `g`, `texts` of them, in the
    /// compact layout of `subset`, which holds this model's linear tensors) by its rotation
    /// Q_S^T G Q_A, layer by layer; the [out, in + 1] matrix goes back into the weight's and
    /// bias's places (a fixed order of its entries). `scale` then whitens it.
    public func rotate(_ g: UnsafeMutablePointer<Float>, texts: Int, subset: ParameterSubset) {
        let ls = layers
        let P = subset.count
        parallelFor(ls.count) { l in
            let L = ls[l]
            let o = L.outWidth
            let a = L.augmented
            var R = [Float](repeating: 0, count: o * a)
            for b in 0..<texts {
                let text = g + b * P
                L.rotate(text, subset: subset, into: &R)
                R.withUnsafeBufferPointer { L.store($0.baseAddress!, into: text, subset: subset) }
            }
        }
    }

    /// `rotate` of each text's gradient of the last forward pass's backward of `seed`
    /// ([B, C]), computed from the linear layers' rows (`ClassifierModel.linearRows`)
    /// without forming the gradient: with G = sum over a text's rows of g a^T,
    /// Q_S^T G Q_A = (Gout Q_S)^T ([A, 1] Q_A) over its rows. That costs o^2 + a^2 + o a per
    /// row instead of o a (o + a) per text (plus the gradient itself): about 10x less on a
    /// MiniLM layer for texts of 64 tokens. Writes B rows of `subset.count` (the compact
    /// layout of `subset`, which holds this model's linear tensors) into `g`.
    public func rotatedGradients(
        model: any ClassifierModel<Float>, seed: [Float], subset: ParameterSubset,
        into g: UnsafeMutableBufferPointer<Float>
    ) {
        EKFAC.rotatedGradients(layers, model: model, seed: seed, subset: subset, into: g)
    }

    /// `rotatedGradients` with these layers' bases (their eigenvalues are not used).
    static func rotatedGradients(
        _ layers: [Layer], model: any ClassifierModel<Float>, seed: [Float], subset: ParameterSubset,
        into g: UnsafeMutableBufferPointer<Float>
    ) {
        let P = subset.count
        let C = model.shape.classes
        precondition(g.count >= seed.count / C * P, "room for every text's rotated gradient")
        let index = Dictionary(uniqueKeysWithValues: layers.enumerated().map { ($1.weight, $0) })
        // One scratch per shard: a shard's visits run one after another, shards concurrently.
        let scratch = Mutex<[Int: RowScratch]>([:])
        let base = g.baseAddress!
        model.linearRows(seed: seed, subset: subset) { rows, firstText in
            guard let l = index[rows.weight] else { return }
            let work = scratch.withLock { s in
                if let w = s[rows.shard] { return w }
                let w = RowScratch()
                s[rows.shard] = w
                return w
            }
            layers[l].rotateRows(rows, firstText: firstText, subset: subset, scratch: work, into: base)
        }
    }

    /// Work space of one shard for `Layer.rotateRows`, grown as needed.
    final class RowScratch: @unchecked Sendable {
        var u: [Float] = [], v: [Float] = [], r: [Float] = []
    }

    /// Rotated gradients (`rotate`) divided by sqrt(Lambda + damping), entry by entry:
    /// products of these whitened gradients are the EK-FAC influence g^T (G + damping)^-1 g'.
    public func scale(_ g: UnsafeMutablePointer<Float>, texts: Int, subset: ParameterSubset, dampings: [Float]) {
        let ls = layers
        let P = subset.count
        parallelFor(ls.count) { l in
            let L = ls[l]
            let i = L.inWidth
            let o = L.outWidth
            let a = L.augmented
            let inverse = L.eigenvalues.map { 1 / ($0 + dampings[l]).squareRoot() }
            for b in 0..<texts {
                let text = g + b * P
                let w = text + subset.compactOffsets[L.weight]!
                for r in 0..<o {
                    for c in 0..<i { w[r * i + c] *= inverse[r * a + c] }
                    if let bias = L.bias { text[subset.compactOffsets[bias]! + r] *= inverse[r * a + i] }
                }
            }
        }
    }

    /// The linear layers' tensors (weights and biases, layout indices in order), found by
    /// one backward pass over `probe` (any text the model takes).
    public static func linearTensors(model: any ClassifierModel<Float>, probe: [Int32]) throws -> [Int] {
        let layout = model.layout
        _ = try model.forward(TokenBatch(sequences: [probe], padID: model.shape.padID), rowInvariant: true)
        let everything = ParameterSubset(
            layout: layout, tensorIndices: layout.tensors.indices.filter { $0 != model.tokenTableIndex })
        let found = Mutex<Set<Int>>([])
        model.linearRows(seed: [Float](repeating: 1, count: model.shape.classes), subset: everything) { rows, _ in
            found.withLock {
                $0.insert(rows.weight)
                if let b = rows.bias { $0.insert(b) }
            }
        }
        return found.withLock { $0.sorted() }
    }

    /// A label drawn from probabilities `p` by a uniform `u` in [0, 1).
    static func draw(_ p: [Double], _ u: Double) -> Int {
        var cumulative = 0.0
        for (c, pc) in p.enumerated() {
            cumulative += pc
            if u < cumulative { return c }
        }
        return p.count - 1
    }

    /// Eigenvectors (as Float columns) of a summed covariance over `rows` rows, symmetrized first.
    static func basis(_ sum: [Double], n: Int, rows: Int) -> [Float]? {
        var m = sum
        for i in 0..<n {
            for j in 0..<n { m[i * n + j] = 0.5 * (sum[i * n + j] + sum[j * n + i]) / Double(max(rows, 1)) }
        }
        return SymmetricEigen.decompose(m, n: n).map { $0.vectors.map(Float.init) }
    }

    /// Per shard, per linear layer (by weight index): the sums of a a^T and g g^T over the rows it saw.
    final class CovarianceSums: @unchecked Sendable {
        struct Sums {
            var bias: Int?
            var i: Int
            var o: Int
            var A: [Float]
            var S: [Float]
            var rows: Int
        }
        var layers: [Int: Sums] = [:]

        func add(_ r: LinearRows<Float>) {
            let i = r.inWidth
            let o = r.outWidth
            let a = i + (r.bias == nil ? 0 : 1)
            var sums =
                layers[r.weight]
                ?? Sums(
                    bias: r.bias, i: i, o: o, A: [Float](repeating: 0, count: a * a),
                    S: [Float](repeating: 0, count: o * o), rows: 0)
            for (inp, dout, texts) in [(r.inputs, r.outputGradients, r.texts)] + (r.extra.map { [$0] } ?? []) {
                for range in EKFAC.merged(texts) where !range.isEmpty {
                    let x = inp + range.lowerBound * i
                    let g = dout + range.lowerBound * o
                    Float.gemm(
                        transA: true, transB: false, m: i, n: i, k: range.count, alpha: 1, a: x, lda: i, b: x, ldb: i,
                        beta: 1, c: &sums.A, ldc: a)
                    Float.gemm(
                        transA: true, transB: false, m: o, n: o, k: range.count, alpha: 1, a: g, lda: o, b: g, ldb: o,
                        beta: 1, c: &sums.S, ldc: o)
                    if a > i {
                        // The bias column: the inputs' sums, and the row count in the corner.
                        for row in 0..<range.count {
                            for j in 0..<i {
                                sums.A[j * a + i] += x[row * i + j]
                                sums.A[i * a + j] += x[row * i + j]
                            }
                        }
                        sums.A[i * a + i] += Float(range.count)
                    }
                    sums.rows += range.count
                }
            }
            layers[r.weight] = sums
        }
    }

    /// Consecutive ranges joined, so that each product runs over as many rows as it can.
    static func merged(_ ranges: [Range<Int>]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        for r in ranges where !r.isEmpty {
            if let last = out.last, last.upperBound == r.lowerBound {
                out[out.count - 1] = last.lowerBound..<r.upperBound
            } else {
                out.append(r)
            }
        }
        return out
    }
}

extension EKFAC.Layer {
    /// Q_S^T G Q_A of the text's gradient (compact `subset` layout at `g`) into `out` [out, augmented].
    func rotate(_ g: UnsafePointer<Float>, subset: ParameterSubset, into out: inout [Float]) {
        let i = inWidth
        let o = outWidth
        let a = augmented
        var G = [Float](repeating: 0, count: o * a)
        var T = [Float](repeating: 0, count: o * a)
        let w = g + subset.compactOffsets[weight]!
        for r in 0..<o {
            for c in 0..<i { G[r * a + c] = w[r * i + c] }
            if let b = bias { G[r * a + i] = g[subset.compactOffsets[b]! + r] }
        }
        Float.gemm(
            transA: false, transB: false, m: o, n: a, k: a, alpha: 1, a: G, lda: a, b: activationBasis, ldb: a, beta: 0,
            c: &T, ldc: a)
        Float.gemm(
            transA: true, transB: false, m: o, n: a, k: o, alpha: 1, a: gradientBasis, lda: o, b: T, ldb: a, beta: 0,
            c: &out, ldc: a)
    }

    /// For each text of `rows` (the text `firstText + k` of the batch for `rows.texts[k]`), its
    /// rotation Q_S^T G Q_A from the rows, written where `EKFAC.rotate` writes it in that
    /// text's row of `subset.count` at `g`. DeBERTa's extra rows add to the same texts.
    func rotateRows(
        _ rows: LinearRows<Float>, firstText: Int, subset: ParameterSubset, scratch: EKFAC.RowScratch,
        into g: UnsafeMutablePointer<Float>
    ) {
        let i = inWidth
        let o = outWidth
        let a = augmented
        let P = subset.count
        if scratch.r.count < o * a { scratch.r = [Float](repeating: 0, count: o * a) }
        let parts = [(rows.inputs, rows.outputGradients, rows.texts)] + (rows.extra.map { [$0] } ?? [])
        for k in rows.texts.indices {
            scratch.r.withUnsafeMutableBufferPointer { R in
                for j in 0..<(o * a) { R[j] = 0 }
            }
            for (inputs, outputGradients, texts) in parts {
                let range = texts[k]
                guard !range.isEmpty else { continue }
                let n = range.count
                if scratch.u.count < n * o { scratch.u = [Float](repeating: 0, count: n * o) }
                if scratch.v.count < n * a { scratch.v = [Float](repeating: 0, count: n * a) }
                // U = Gout Q_S [n, o]; V = A Q_A[0..<i] + 1 Q_A[i] [n, a]; R += U^T V.
                Float.gemm(
                    transA: false, transB: false, m: n, n: o, k: o, alpha: 1, a: outputGradients + range.lowerBound * o,
                    lda: o, b: gradientBasis, ldb: o, beta: 0, c: &scratch.u, ldc: o)
                Float.gemm(
                    transA: false, transB: false, m: n, n: a, k: i, alpha: 1, a: inputs + range.lowerBound * i, lda: i,
                    b: activationBasis, ldb: a, beta: 0, c: &scratch.v, ldc: a)
                if bias != nil {
                    scratch.v.withUnsafeMutableBufferPointer { v in
                        activationBasis.withUnsafeBufferPointer { q in
                            for t in 0..<n {
                                for c in 0..<a { v[t * a + c] += q[i * a + c] }
                            }
                        }
                    }
                }
                Float.gemm(
                    transA: true, transB: false, m: o, n: a, k: n, alpha: 1, a: scratch.u, lda: o, b: scratch.v, ldb: a,
                    beta: 1, c: &scratch.r, ldc: a)
            }
            scratch.r.withUnsafeBufferPointer { store($0.baseAddress!, into: g + (firstText + k) * P, subset: subset) }
        }
    }

    /// The text's gradient (compact `subset` layout at `g`) replaced, for this layer, by
    /// Q_S ((Q_S^T G Q_A) / (Lambda + damping)) Q_A^T.
    func precondition(_ g: UnsafeMutablePointer<Float>, subset: ParameterSubset, damping: Float) {
        let o = outWidth
        let a = augmented
        var R = [Float](repeating: 0, count: o * a)
        var T = [Float](repeating: 0, count: o * a)
        var G = [Float](repeating: 0, count: o * a)
        rotate(g, subset: subset, into: &R)
        for k in R.indices { R[k] /= eigenvalues[k] + damping }
        Float.gemm(
            transA: false, transB: false, m: o, n: a, k: o, alpha: 1, a: gradientBasis, lda: o, b: R, ldb: a, beta: 0,
            c: &T, ldc: a)
        Float.gemm(
            transA: false, transB: true, m: o, n: a, k: a, alpha: 1, a: T, lda: a, b: activationBasis, ldb: a, beta: 0,
            c: &G, ldc: a)
        G.withUnsafeBufferPointer { store($0.baseAddress!, into: g, subset: subset) }
    }

    /// Writes a layer matrix [out, augmented] (weight columns, then the bias column) into
    /// its weight's and bias's places in one text's row (compact `subset` layout at `text`).
    func store(_ m: UnsafePointer<Float>, into text: UnsafeMutablePointer<Float>, subset: ParameterSubset) {
        let i = inWidth
        let a = augmented
        let w = text + subset.compactOffsets[weight]!
        for r in 0..<outWidth {
            for c in 0..<i { w[r * i + c] = m[r * a + c] }
            if let b = bias { text[subset.compactOffsets[b]! + r] = m[r * a + i] }
        }
    }
}
