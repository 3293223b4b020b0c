import Foundation
import TangentTensor

/// Token plus position embeddings for packed texts.
enum Embedding {
    /// out [N, D] = tokenTable[ids[n]] + positionTable[positions[n]] (the token rows
    /// alone without a position table).
    static func forward<T: BLASScalar>(
        out: UnsafeMutablePointer<T>, ids: UnsafePointer<Int32>, positions: UnsafePointer<Int32>,
        tokenTable: UnsafePointer<T>, positionTable: UnsafePointer<T>?, n: Int, d: Int
    ) {
        for r in 0..<n {
            let y = out + r * d
            let t = tokenTable + Int(ids[r]) * d
            guard let positionTable else {
                y.update(from: t, count: d)
                continue
            }
            let p = positionTable + Int(positions[r]) * d
            for j in 0..<d { y[j] = t[j] + p[j] }
        }
    }

    /// Scatters dout rows into the rows of the tables they came from, per segment (nil: skipped).
    static func backward<T: BLASScalar>(
        dtokenTable: UnsafeMutablePointer<T>?, dpositionTable: UnsafeMutablePointer<T>?,
        dout: UnsafePointer<T>, ids: UnsafePointer<Int32>, positions: UnsafePointer<Int32>,
        d: Int, segments: Segments
    ) {
        for (k, range) in segments.ranges.enumerated() {
            for r in range {
                let g = dout + r * d
                if let dt = dtokenTable {
                    let row = dt + k * segments.stride + Int(ids[r]) * d
                    for j in 0..<d { row[j] += g[j] }
                }
                if let dp = dpositionTable {
                    let row = dp + k * segments.stride + Int(positions[r]) * d
                    for j in 0..<d { row[j] += g[j] }
                }
            }
        }
    }

    /// DistilBERT's fixed positions (`sinusoidal_pos_embds`): row p, column j holds
    /// sin(p / 10000^(2 floor(j/2) / d)) for even j and the cosine for odd j, computed in
    /// Float64 and rounded once, as transformers fills the table with numpy.
    static func sinusoidalTable<T: BLASScalar>(into table: UnsafeMutablePointer<T>, positions: Int, d: Int) {
        for p in 0..<positions {
            for j in 0..<d {
                let angle = Double(p) / pow(10000, Double(2 * (j / 2)) / Double(d))
                table[p * d + j] = T(j % 2 == 0 ? sin(angle) : cos(angle))
            }
        }
    }
}
