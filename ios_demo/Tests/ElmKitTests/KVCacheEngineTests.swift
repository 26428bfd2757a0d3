import Testing
@testable import ElmKit

/// Records what the engine asks of its backend; logits depend on the whole cache, like a real model's.
final class RecordingBackend: PredictionBackend {
    struct Call: Equatable {
        let function: EngineFunction
        let ids: [Int32]
        let positions: [Int32]
        let rows: Range<Int>
    }

    let vocabularySize = 32
    private(set) var calls: [Call] = []
    private(set) var freshStates = 0
    /// Token at each position, as the model's KV cache would hold it (padding included).
    private(set) var cache: [Int32] = []

    func makeFreshState() throws {
        freshStates += 1
        cache = []
    }

    func predict(_ function: EngineFunction, inputIds: [Int32], inputPositions: [Int32], rows: Range<Int>) throws -> [[Float]] {
        calls.append(Call(function: function, ids: inputIds, positions: inputPositions, rows: rows))
        for (id, p) in zip(inputIds, inputPositions) {
            while cache.count <= Int(p) { cache.append(-1) }
            cache[Int(p)] = id
        }
        return rows.map { r in
            let context = cache[...Int(inputPositions[r])]
            return HashModel(seed: 9, vocabularySize: vocabularySize).logits(after: ArraySlice(context.map(Int.init)))
        }
    }
}

@Suite struct KVCacheEngineTests {
    @Test func shortChunksArePaddedWithZeroAndOnlyTheLastRealRowIsRead() throws {
        let backend = RecordingBackend()
        let engine = KVCacheEngine(backend: backend, contextLength: 64, prefillChunkLength: 8)
        try engine.reset()
        _ = try engine.prefillChunked([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], from: 0)
        #expect(backend.calls == [
            .init(function: .prefill, ids: [5, 6, 7, 8, 9, 10, 11, 12], positions: Array(0...7), rows: 7..<8),
            .init(function: .prefill, ids: [13, 14, 15, 0, 0, 0, 0, 0], positions: Array(8...15), rows: 2..<3),
        ])
        #expect(engine.cachedTokens == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
    }

    @Test func aSingleTokenAndATailNearTheEndGoThroughDecode() throws {
        let backend = RecordingBackend()
        let engine = KVCacheEngine(backend: backend, contextLength: 12, prefillChunkLength: 8)
        try engine.reset()
        _ = try engine.prefillChunked([1], from: 0)
        #expect(backend.calls.map(\.function) == [.decode])
        // From position 1, a chunk of 8 fits (1 + 8 <= 12); from 9, a padded chunk would run past 12.
        _ = try engine.prefillChunked(Array(2...11), from: 1)
        #expect(backend.calls.dropFirst().map(\.function) == [.prefill, .decode, .decode])
        #expect(backend.calls.last?.positions == [10])
        #expect(engine.cachedTokens == Array(1...11))
    }

    @Test func writesMustBeContiguousAndInsideTheContext() throws {
        let engine = KVCacheEngine(backend: RecordingBackend(), contextLength: 10, prefillChunkLength: 4)
        try engine.reset()
        #expect(throws: KVCacheEngine.EngineError.gapInCache(position: 2, cached: 0)) { try engine.decode(1, at: 2) }
        _ = try engine.prefillChunked(Array(1...9), from: 0)
        #expect(throws: KVCacheEngine.EngineError.beyondContext(end: 11, contextLength: 10)) {
            try engine.prefill([1, 2], at: 9, allLogits: false)
        }
    }

    @Test func rewindingOverwritesTheCacheAndMatchesAFreshRun() throws {
        let backend = RecordingBackend()
        let engine = KVCacheEngine(backend: backend, contextLength: 32, prefillChunkLength: 4)
        try engine.reset()
        _ = try engine.prefillChunked([1, 2, 3, 4, 5, 6], from: 0)
        _ = try engine.prefill([7, 8, 9], at: 6, allLogits: true)  // a draft, then rejected after 7
        let rewound = try engine.decode(20, at: 7)
        #expect(engine.cachedTokens == [1, 2, 3, 4, 5, 6, 7, 20])

        let fresh = KVCacheEngine(backend: RecordingBackend(), contextLength: 32, prefillChunkLength: 4)
        try fresh.reset()
        let reference = try fresh.prefillChunked([1, 2, 3, 4, 5, 6, 7, 20], from: 0)[0]
        #expect(rewound == reference)
    }

    @Test func speculativeDecodingThroughTheEngineEqualsGreedy() throws {
        let prompt = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7]
        let reference = KVCacheEngine(backend: RecordingBackend(), contextLength: 64, prefillChunkLength: 4)
        let expected = try Generator(model: reference, tokenizer: IdText()).generate(prompt: prompt, config: GenerationConfig(maxNewTokens: 20)).tokens
        let target = KVCacheEngine(backend: RecordingBackend(), contextLength: 64, prefillChunkLength: 4)
        let draft = KVCacheEngine(backend: RecordingBackend(), contextLength: 64, prefillChunkLength: 4)
        let result = try SpeculativeDecoder(target: target, draft: draft, draftLength: 3).generate(prompt: prompt, maxNewTokens: 20)
        #expect(result.tokens == expected)
    }

    @Test func reusablePrefixAlwaysRerunsTheLastPromptToken() throws {
        let engine = KVCacheEngine(backend: RecordingBackend(), contextLength: 32, prefillChunkLength: 4)
        try engine.reset()
        _ = try engine.prefillChunked([1, 2, 3, 4, 5], from: 0)
        #expect(engine.reusablePrefix(for: [1, 2, 3, 4, 5]) == 4)
        #expect(engine.reusablePrefix(for: [1, 2, 3, 4, 5, 6, 7]) == 5)
        #expect(engine.reusablePrefix(for: [1, 2, 9, 4, 5, 6]) == 2)
        #expect(engine.reusablePrefix(for: [8]) == 0)
    }
}
