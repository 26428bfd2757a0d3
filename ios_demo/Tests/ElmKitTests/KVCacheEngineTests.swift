import Testing
@testable import ElmKit

/// Records what the engine asks of its backend; logits depend on the whole cache, like a real model's.
final class RecordingBackend: PredictionBackend {
    struct Call: Equatable {
        let function: EngineFunction
        let ids: [Int32]
        let positions: [Int32]
        let logitsRow: Int32?
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

    func predict(_ function: EngineFunction, inputIds: [Int32], inputPositions: [Int32], logitsRow: Int32?,
                 rows: Range<Int>) throws -> [[Float]] {
        calls.append(Call(function: function, ids: inputIds, positions: inputPositions, logitsRow: logitsRow, rows: rows))
        for (id, p) in zip(inputIds, inputPositions) {
            while cache.count <= Int(p) { cache.append(-1) }
            cache[Int(p)] = id
        }
        // prefill with logits_row returns that one row; the other functions return a row per input token
        let inputRows = logitsRow.map { [Int($0)] } ?? Array(rows)
        return inputRows.map { r in
            let context = cache[...Int(inputPositions[r])]
            return HashModel(seed: 9, vocabularySize: vocabularySize).logits(after: ArraySlice(context.map(Int.init)))
        }
    }
}

@Suite struct KVCacheEngineTests {
    @Test func shortChunksArePaddedWithZeroAndPrefillReturnsTheLastRealRow() throws {
        let backend = RecordingBackend()
        let engine = KVCacheEngine(backend: backend, contextLength: 64, prefillChunkLength: 8)
        try engine.reset()
        let last = try engine.prefillChunked([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], from: 0)
        #expect(backend.calls == [
            .init(function: .prefill, ids: [5, 6, 7, 8, 9, 10, 11, 12], positions: Array(0...7), logitsRow: 7, rows: 0..<1),
            .init(function: .prefill, ids: [13, 14, 15, 0, 0, 0, 0, 0], positions: Array(8...15), logitsRow: 2, rows: 0..<1),
        ])
        #expect(engine.cachedTokens == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
        #expect(last == [HashModel(seed: 9, vocabularySize: 32).logits(after: ArraySlice(Array(5...15)))])
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

    @Test func everyRowGoesThroughVerifyInPiecesOrThroughDecode() throws {
        let backend = RecordingBackend()
        let engine = KVCacheEngine(backend: backend, contextLength: 16, prefillChunkLength: 8, verifyLength: 3)
        try engine.reset()
        let rows = try engine.prefill([1, 2, 3, 4, 5, 6, 7], at: 0, allLogits: true)
        #expect(backend.calls == [
            .init(function: .verify, ids: [1, 2, 3], positions: [0, 1, 2], logitsRow: nil, rows: 0..<3),
            .init(function: .verify, ids: [4, 5, 6], positions: [3, 4, 5], logitsRow: nil, rows: 0..<3),
            .init(function: .decode, ids: [7], positions: [6], logitsRow: nil, rows: 0..<1),
        ])
        let model = HashModel(seed: 9, vocabularySize: 32)
        #expect(rows == (1...7).map { model.logits(after: ArraySlice(Array(1...$0))) })
        // Near the context's end a padded verify call would run past it: decode instead.
        _ = try engine.prefillChunked(Array(8...14), from: 7)
        let before = backend.calls.count
        _ = try engine.prefill([15, 16], at: 14, allLogits: true)
        #expect(backend.calls[before...].map(\.function) == [.decode, .decode])

        let plain = RecordingBackend()
        let noVerify = KVCacheEngine(backend: plain, contextLength: 16, prefillChunkLength: 8)
        try noVerify.reset()
        #expect(try noVerify.prefill([1, 2, 3, 4, 5, 6, 7], at: 0, allLogits: true) == rows)
        #expect(plain.calls.map(\.function) == Array(repeating: .decode, count: 7))
    }

    @Test func aPackageWhosePrefillReturnsEveryRowIsReadAsBefore() throws {
        let backend = RecordingBackend()
        let engine = KVCacheEngine(backend: backend, contextLength: 64, prefillChunkLength: 8, prefillReturnsRow: false)
        try engine.reset()
        let rows = try engine.prefill([5, 6, 7], at: 0, allLogits: true)
        _ = try engine.prefill([8, 9], at: 3, allLogits: false)
        #expect(backend.calls == [
            .init(function: .prefill, ids: [5, 6, 7, 0, 0, 0, 0, 0], positions: Array(0...7), logitsRow: nil, rows: 0..<3),
            .init(function: .prefill, ids: [8, 9, 0, 0, 0, 0, 0, 0], positions: Array(3...10), logitsRow: nil, rows: 1..<2),
        ])
        #expect(rows.count == 3)
    }

    @Test func theManifestSaysWhichFunctionsThePackageHas() throws {
        let json = try JSONValue.parse(#"{"functions": ["prefill", "decode", "verify"], "verify_tokens": 5, "prefill_logits": "row"}"#)
        let manifest = ModelManifest(json: json)
        let engine = KVCacheEngine(backend: RecordingBackend(), manifest: manifest, contextLength: 64, prefillChunkLength: 8)
        #expect(engine.verifyLength == 5 && engine.prefillReturnsRow)
        let older = KVCacheEngine(backend: RecordingBackend(), manifest: ModelManifest(json: try JSONValue.parse(#"{"verify_tokens": 5}"#)),
                                  contextLength: 64, prefillChunkLength: 8)
        #expect(older.verifyLength == nil && !older.prefillReturnsRow)
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
        let engine = KVCacheEngine(backend: backend, contextLength: 32, prefillChunkLength: 4, verifyLength: 4)
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

    @Test(arguments: [nil, 4, 6]) func speculativeDecodingThroughTheEngineEqualsGreedy(verifyLength: Int?) throws {
        let prompt = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7]
        let reference = KVCacheEngine(backend: RecordingBackend(), contextLength: 64, prefillChunkLength: 4)
        let expected = try Generator(model: reference, tokenizer: IdText()).generate(prompt: prompt, config: GenerationConfig(maxNewTokens: 20)).tokens
        let target = KVCacheEngine(backend: RecordingBackend(), contextLength: 64, prefillChunkLength: 4, verifyLength: verifyLength)
        let draft = KVCacheEngine(backend: RecordingBackend(), contextLength: 64, prefillChunkLength: 4)
        let result = try SpeculativeDecoder(target: target, draft: draft, k: 3).generate(prompt: prompt, maxNewTokens: 20)
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
