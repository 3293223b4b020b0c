import Foundation
import TangentIO
import TangentSafetensors
import TangentTensor

/// Kernel matrices between two feature files: K[i, j] = <f(a_i), f(b_j)>, with the
/// vectors of all outputs of a text concatenated (so trNTK features give
/// sum_c <R g_c, R g'_c>), optionally cosine-normalized. Computed in row blocks of A
/// against column blocks of B and streamed to disk, so memory stays bounded however
/// large B is.
public enum KernelMatrix {
    /// Writes `kernel` F32 [nA, nB] to `url` (atomically, via a temporary file).
    /// With `layer`, the kernel of that layer group's projected features only (files made
    /// with per-layer features), an unbiased estimate of the exact per-layer part;
    /// normalization uses the whole-model norms, as for the exact parts. The layers'
    /// projected kernels add up to the whole only in expectation: the projection's
    /// cross-layer terms <R_l g_l, R_m g_m> vanish on average, not exactly.
    public static func compute(
        a: FeatureFile, b: FeatureFile, normalize: Bool, layer: String? = nil, to url: URL,
        rowBlock: Int = 256, columnBlock: Int = 2048,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws {
        try a.requireWhole()
        try b.requireWhole()
        if let why = a.metadata.incompatibility(with: b.metadata) {
            throw FeatureStoreError("\(a.url.path) and \(b.url.path) cannot be combined: \(why)")
        }
        let nA = a.metadata.texts
        let nB = b.metadata.texts
        let W = a.metadata.outputs * a.metadata.width
        guard W == b.metadata.outputs * b.metadata.width else {
            throw FeatureStoreError("\(a.url.path) and \(b.url.path) have feature vectors of different lengths")
        }
        func vectors(_ f: FeatureFile, _ r: Range<Int>) throws -> [Float] {
            if let layer { return try f.layerFeatures(r, group: layer) }
            return try f.features(r)
        }
        if let layer {
            _ = try a.layerFeatures(0..<0, group: layer)
            _ = try b.layerFeatures(0..<0, group: layer)
        }
        let normsB = normalize ? try squaredNorms(b, block: columnBlock) : []
        var meta: [String: String] = [
            "format": "tangent-kernel-1", "a": a.url.path, "b": b.url.path, "kernel": a.metadata.kernel,
            "normalized": String(normalize), "params": a.metadata.params, "proj_dim": String(a.metadata.projDim),
            "seed": String(a.metadata.seed), "model_fingerprint": a.metadata.modelFingerprint,
        ]
        if let layer { meta["layer"] = layer }
        meta["rows"] = String(nA)
        meta["columns"] = String(nB)
        let layout = SafetensorsLayout(metadata: meta, tensors: [("kernel", .F32, [nA, nB])])
        try AtomicFile.write(to: url) { file in
            try file.append(layout.prefix)
            var tile = [Float](repeating: 0, count: rowBlock * columnBlock)
            var rows = [Float](repeating: 0, count: rowBlock * nB)
            for r0 in stride(from: 0, to: nA, by: rowBlock) {
                let ra = r0..<min(nA, r0 + rowBlock)
                let fa = try vectors(a, ra)
                let whole = layer == nil ? fa : try a.features(ra)
                let normsA: [Float] = normalize ? Gram.squaredNorms(whole, rows: ra.count) : []
                for c0 in stride(from: 0, to: nB, by: columnBlock) {
                    let rb = c0..<min(nB, c0 + columnBlock)
                    let fb = try vectors(b, rb)
                    Float.gemm(
                        transA: false, transB: true, m: ra.count, n: rb.count, k: W, alpha: 1, a: fa, lda: W,
                        b: fb, ldb: W, beta: 0, c: &tile, ldc: rb.count)
                    for i in 0..<ra.count {
                        for j in 0..<rb.count {
                            var v = tile[i * rb.count + j]
                            if normalize { v = Gram.cosine(v, normsA[i], normsB[rb.lowerBound + j]) }
                            rows[i * nB + rb.lowerBound + j] = v
                        }
                    }
                }
                try rows.withUnsafeBytes {
                    try file.append(UnsafeRawBufferPointer(rebasing: $0[0..<(ra.count * nB * 4)]))
                }
                progress(ra.upperBound, nA)
            }
        }
    }

    static func squaredNorms(_ f: FeatureFile, block: Int) throws -> [Float] {
        var out: [Float] = []
        for s in stride(from: 0, to: f.metadata.texts, by: block) {
            let r = s..<min(f.metadata.texts, s + block)
            out += Gram.squaredNorms(try f.features(r), rows: r.count)
        }
        return out
    }
}
