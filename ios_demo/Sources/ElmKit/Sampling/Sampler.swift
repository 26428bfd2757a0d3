import Foundation

/// Settings of one sampling run. `temperature == 0` means greedy; `topK == 0` and `topP == 1` disable those filters.
public struct SamplingParameters: Sendable, Equatable, Codable {
    public var temperature: Double
    public var topK: Int
    public var topP: Double
    public var repetitionPenalty: Double
    public var seed: UInt64

    public init(temperature: Double = 0, topK: Int = 0, topP: Double = 1, repetitionPenalty: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.repetitionPenalty = repetitionPenalty
        self.seed = seed
    }

    public static let greedy = SamplingParameters()
}

/// Next-token selection, a port of `sample_next` in elmexport/sampling.py (whose docstring is the specification).
///
/// Why so literal: a host run and a device run must pick identical tokens for identical logits and seeds, so every
/// step keeps the reference's float64 operation order: penalty → temperature (division) → sort by logit descending,
/// ties to the lower id → top-k → `exp(x - max)` with libm → running sum left to right → top-p on `cum / total`
/// → one uniform `u`, first candidate with `cum > u * total`.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    public private(set) var rng: SplitMix64

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SplitMix64(seed: parameters.seed)
    }

    /// HF / CTRL repetition penalty on each distinct previous id: positive logits divided, others multiplied.
    /// Ids outside the vocabulary are ignored (the Python reference raises for them).
    static func applyRepetitionPenalty(_ x: inout [Double], previous: [Int], penalty: Double) {
        guard penalty != 1 else { return }
        for token in Set(previous) where x.indices.contains(token) {
            let v = x[token]
            x[token] = v > 0 ? v / penalty : v * penalty
        }
    }

    /// Index of the largest value, the lowest index among ties.
    static func argmax(_ x: [Double]) -> Int {
        var best = 0
        for i in x.indices where x[i] > x[best] { best = i }
        return best
    }

    /// Candidate ids (best first) and their running weight sums after top-k and top-p; temperature must be > 0.
    static func candidates(_ logits: [Float], parameters p: SamplingParameters, previous: [Int]) -> (ids: [Int], cumulative: [Double]) {
        var x = logits.map(Double.init)
        applyRepetitionPenalty(&x, previous: previous, penalty: p.repetitionPenalty)
        for i in x.indices { x[i] = x[i] / p.temperature }
        var order = Array(x.indices)
        if p.topK > 0 && p.topK < order.count {
            order = topK(order, of: x, k: p.topK)
        } else {
            order.sort { x[$0] > x[$1] || (x[$0] == x[$1] && $0 < $1) }
        }
        let best = x[order[0]]
        var cumulative: [Double] = []
        cumulative.reserveCapacity(order.count)
        var sum = 0.0
        for id in order {
            sum += Foundation.exp(x[id] - best)
            cumulative.append(sum)
        }
        if p.topP < 1 {
            let total = sum
            let cut = cumulative.firstIndex { $0 / total >= p.topP } ?? (cumulative.count - 1)
            order = Array(order[...cut])
            cumulative = Array(cumulative[...cut])
        }
        return (order, cumulative)
    }

    /// The k best ids in (logit descending, id ascending) order, without sorting the whole vocabulary.
    private static func topK(_ ids: [Int], of x: [Double], k: Int) -> [Int] {
        let before: (Int, Int) -> Bool = { x[$0] > x[$1] || (x[$0] == x[$1] && $0 < $1) }
        var kept: [Int] = []
        kept.reserveCapacity(k + 1)
        for id in ids {
            if kept.count == k, let last = kept.last, !before(id, last) { continue }
            var lo = 0, hi = kept.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if before(kept[mid], id) { lo = mid + 1 } else { hi = mid }
            }
            kept.insert(id, at: lo)
            if kept.count > k { kept.removeLast() }
        }
        return kept
    }

    /// Picks the next token from one row of logits; `previous` is the context the repetition penalty looks at.
    public mutating func sample(_ logits: [Float], previous: [Int] = []) -> Int {
        precondition(!logits.isEmpty, "empty logits")
        if parameters.temperature <= 0 {
            var x = logits.map(Double.init)
            Sampler.applyRepetitionPenalty(&x, previous: previous, penalty: parameters.repetitionPenalty)
            return Sampler.argmax(x)
        }
        let (ids, cumulative) = Sampler.candidates(logits, parameters: parameters, previous: previous)
        let r = rng.nextDouble() * cumulative[cumulative.count - 1]
        if let i = cumulative.firstIndex(where: { $0 > r }) { return ids[i] }
        var previousSum = 0.0
        var lastPositive = ids[0]
        for (id, c) in zip(ids, cumulative) {
            if c > previousSum { lastPositive = id }
            previousSum = c
        }
        return lastPositive
    }
}
