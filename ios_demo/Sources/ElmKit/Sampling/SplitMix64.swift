/// SplitMix64 (Steele, Lea & Flood 2014): the seeded generator shared with elmexport/sampling.py.
///
/// Why this one: it is a few lines in any language and has no hidden state, so a device run and a host run with
/// the same seed draw the same uniforms. A double is the top 53 bits scaled by 2^-53, exactly in [0, 1).
public struct SplitMix64: Sendable, Equatable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func nextDouble() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }
}
