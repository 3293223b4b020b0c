import RealModule

/// Elementary functions for hot elementwise loops. The `Float` versions are
/// branch-free polynomial/rational approximations that the compiler vectorizes
/// (libm's `expf`/`erff` are opaque calls one element at a time); the `Double`
/// versions call libm, so Float64 gradient checks compare against exact math.
public protocol VectorMath {
    /// e^x. Float: relative error below 3e-7 on [-87, 88]; smaller inputs give ~1e-38.
    static func vexp(_ x: Self) -> Self
    /// erf(x). Float: absolute error below 5e-7 everywhere.
    static func verf(_ x: Self) -> Self
}

extension Float: VectorMath {
    @inlinable @inline(__always)
    public static func vexp(_ x: Float) -> Float {
        // exp(x) = 2^k * exp(r), k = round(x / ln 2), |r| <= ln(2)/2, with Cody-Waite reduction.
        let xc = Swift.min(Swift.max(x, -87.0), 88.0)
        // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits; no
        // checked float-to-int conversion, so the loop stays vectorizable.
        let shifted = xc * 1.442_695_04 + 12_582_912.0
        let k = shifted - 12_582_912.0
        let r = (xc - k * 0.693_145_751_953_125) - k * 1.428_606_765_330_187_045e-06
        // Taylor polynomial of degree 7 (truncation error < 2e-9 on |r| <= 0.35).
        var p: Float = 1.0 / 5040
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let scale = Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) &<< 23)
        return p * scale
    }

    @inlinable @inline(__always)
    public static func verf(_ x: Float) -> Float {
        // Odd rational approximation x P(x^2) / Q(x^2) on [-4, 4], where float erf is +-1
        // beyond. Coefficients: the single-precision minimax fit used by Eigen and XLA.
        let xc = Swift.min(Swift.max(x, -4.0), 4.0)
        let x2 = xc * xc
        var p: Float = -2.726_142_258_013_06e-10
        p = p * x2 + 2.770_681_424_959_02e-08
        p = p * x2 - 2.101_024_020_825_08e-06
        p = p * x2 - 5.692_506_394_623_46e-05
        p = p * x2 - 7.349_906_303_268_55e-04
        p = p * x2 - 2.954_599_808_540_25e-03
        p = p * x2 - 1.609_603_332_624_15e-02
        var q: Float = -1.456_607_184_649_96e-05
        q = q * x2 - 2.133_740_552_789_05e-04
        q = q * x2 - 1.682_826_974_382_03e-03
        q = q * x2 - 7.373_329_167_204_68e-03
        q = q * x2 - 1.426_473_905_141_89e-02
        return xc * p / q
    }
}

extension Double: VectorMath {
    @inlinable @inline(__always)
    public static func vexp(_ x: Double) -> Double { Double.exp(x) }
    @inlinable @inline(__always)
    public static func verf(_ x: Double) -> Double { Double.erf(x) }
}
