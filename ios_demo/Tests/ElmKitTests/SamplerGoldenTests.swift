import Foundation
import Testing
@testable import ElmKit

/// The Swift sampler against outputs of elmexport/sampling.py recorded by make_fixtures.py: same SplitMix64
/// stream, and the same 24 draws per case for fixed float32 logits and seeds.
@Suite struct SamplerGoldenTests {
    static func fixture() throws -> JSONValue { try Fixtures.json("sampling/expected.json") }

    /// Float32 logits as written by the fixture (exact decimals; null stands for -infinity).
    static func logits(_ name: String, in fixture: JSONValue) throws -> [Float] {
        let values = try #require(fixture["logits"]?[name]?.arrayValue)
        return values.map { $0.doubleValue.map(Float.init) ?? -Float.infinity }
    }

    @Test func splitMix64StreamsMatch() throws {
        let streams = try #require(try Self.fixture()["splitmix64"]?.arrayValue)
        #expect(streams.count == 4)
        for stream in streams {
            let seed = try #require(stream["seed"]?.stringValue.flatMap { UInt64($0) })
            var rng = SplitMix64(seed: seed)
            let u64 = (stream["u64"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap { UInt64($0) } }
            #expect(u64.count == 6)
            #expect((0..<u64.count).map { _ in rng.next() } == u64)
            var rng2 = SplitMix64(seed: seed)
            let doubles = (stream["doubles"]?.arrayValue ?? []).compactMap(\.doubleValue)
            #expect((0..<doubles.count).map { _ in rng2.nextDouble() } == doubles)
        }
    }

    @Test func drawsMatchTheReferenceSampler() throws {
        let fixture = try Self.fixture()
        let cases = try #require(fixture["cases"]?.arrayValue)
        #expect(cases.count >= 20)
        for c in cases {
            let name = try #require(c["logits"]?.stringValue)
            let parameters = SamplingParameters(
                temperature: try #require(c["temperature"]?.doubleValue),
                topK: try #require(c["top_k"]?.intValue),
                topP: try #require(c["top_p"]?.doubleValue),
                repetitionPenalty: try #require(c["repetition_penalty"]?.doubleValue),
                seed: try #require(c["seed"]?.stringValue.flatMap { UInt64($0) })
            )
            let logits = try Self.logits(name, in: fixture)
            let previous = Fixtures.ints(c["previous_tokens"])
            var sampler = Sampler(parameters)
            let draws = (0..<24).map { _ in sampler.sample(logits, previous: previous) }
            #expect(draws == Fixtures.ints(c["draws"]), "case \(name) \(parameters)")
        }
    }

    @Test func topKSelectionEqualsAFullSortPrefix() {
        // The partial top-k path must give the same candidates, in the same order, as sorting everything.
        var rng = SplitMix64(seed: 3)
        let logits = (0..<500).map { _ in Float((rng.nextDouble() * 8).rounded() / 2) }  // many ties
        let full = Sampler.candidates(logits, parameters: SamplingParameters(temperature: 1), previous: []).ids
        for k in [1, 2, 7, 40, 499] {
            let partial = Sampler.candidates(logits, parameters: SamplingParameters(temperature: 1, topK: k), previous: []).ids
            #expect(partial == Array(full.prefix(k)))
        }
    }

    @Test func greedyIgnoresTheRandomStream() {
        var sampler = Sampler(.greedy)
        #expect(sampler.sample([0.5, 2, -1, 2, 1.9]) == 1)
        #expect(sampler.rng == SplitMix64(seed: 0))
    }
}
