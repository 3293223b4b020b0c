/// A counter-based random generator: every value is a pure function of
/// (key, counter), so streams can be split across threads, shards and machines
/// and still give identical numbers. The mixing function is SplitMix64's finalizer
/// applied twice with distinct constants, which passes BigCrush for sequential counters.
public struct CounterRNG: Sendable, Hashable {
    /// The stream key (derive it with `CounterRNG.derive`).
    public let key: UInt64

    public init(key: UInt64) { self.key = key }

    /// A key derived from a seed and a path of integers, e.g. (seed, step, example).
    public static func derive(_ seed: UInt64, _ path: UInt64...) -> CounterRNG {
        var k = mix(seed &+ 0x9E37_79B9_7F4A_7C15)
        for p in path { k = mix(k ^ mix(p &+ 0xD1B5_4A32_D192_ED03)) }
        return CounterRNG(key: k)
    }

    @inline(__always)
    public static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 64 random bits at position `counter` of this stream.
    @inline(__always)
    public func bits(_ counter: UInt64) -> UInt64 {
        CounterRNG.mix(key ^ CounterRNG.mix(counter &* 0x9E37_79B9_7F4A_7C15 &+ 0x632B_E59B_D9B4_E019))
    }

    /// A uniform number in [0, 1) with 53 random bits.
    @inline(__always)
    public func uniform(_ counter: UInt64) -> Double {
        Double(bits(counter) >> 11) * 0x1.0p-53
    }

    /// A standard normal number (Box-Muller over two uniforms of counters 2c and 2c+1).
    @inline(__always)
    public func normal(_ counter: UInt64) -> Double {
        let u1 = 1.0 - uniform(2 &* counter)  // (0, 1]
        let u2 = uniform(2 &* counter &+ 1)
        return (-2.0 * log(u1)).squareRoot() * cos(2.0 * Double.pi * u2)
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
