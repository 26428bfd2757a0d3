import Foundation
import Testing
@testable import ElmKit

/// Text for ids the tests have no vocabulary for: the token choices are what is compared, not text.
struct IdText: TokenTextDecoder {
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String { ids.map { "<\($0)>" }.joined() }
}

/// The engine's control flow against a real exported package, replayed (see ReplayBackend and
/// Fixtures/make_engine_trace.py): the same calls as the host runner, and the host's greedy tokens.
@Suite struct EngineReplayTests {
    let trace: EngineTrace
    let manifest: ModelManifest

    init() throws {
        trace = try EngineTrace.load()
        manifest = try ModelManifest(contentsOf: Fixtures.root.appendingPathComponent("coreml_engine/manifest.json"))
    }

    func config() -> GenerationConfig {
        GenerationConfig(maxNewTokens: trace.maxNewTokens, sampling: .greedy, stopTokenIds: Set(manifest.eosTokenIds))
    }

    @Test func theManifestDescribesTheTracedPackage() {
        #expect(manifest.contextLength == trace.contextLength)
        #expect(manifest.prefillChunk == trace.prefillChunk)
        #expect(manifest.eosTokenIds == [2])
    }

    @Test func generateGivesTheHostsGreedyTokens() throws {
        // The prompt `elmexport generate` built: the manifest's template and system prompt around the question.
        let question = ChatMessage.user("What is the capital of France?")
        let rendered = ChatTemplate(manifestValue: manifest.chatTemplate).render([question], defaultSystemPrompt: manifest.systemPrompt)
        #expect(rendered == trace.generate.promptText)

        let (engine, backend) = trace.engine(replaying: trace.generate.calls, manifest: manifest)
        let result = try Generator(model: engine, tokenizer: IdText()).generate(prompt: trace.generate.promptIds, config: config())
        #expect(result.tokens == trace.generate.expectedTokens)
        #expect(result.finishReason == .endOfSequence)
        #expect(backend.isFinished)
    }

    @Test func chatTurnsPrefillOnlyWhatTheCacheLacks() throws {
        let (engine, backend) = trace.engine(replaying: trace.chatTurns.flatMap(\.calls), manifest: manifest)
        let generator = Generator(model: engine, tokenizer: IdText())
        for (number, turn) in trace.chatTurns.enumerated() {
            let result = try generator.generate(prompt: turn.promptIds, config: config(), reuseCache: true)
            #expect(result.tokens == turn.expectedTokens, "turn \(number + 1)")
            #expect(result.stats.reusedPromptTokens == turn.reusedPrefix, "turn \(number + 1)")
        }
        #expect(trace.chatTurns.last?.expectedTokens.count == trace.contextLength - (trace.chatTurns.last?.promptIds.count ?? 0))
        #expect(backend.isFinished)
    }

    @Test func theReplayRejectsAnEngineThatDiffersFromTheHost() throws {
        // Same package, but chunks of 32: the first call no longer matches, and the replay says so.
        let backend = ReplayBackend(calls: trace.generate.calls, vocabularySize: trace.vocabularySize)
        let engine = KVCacheEngine(backend: backend, contextLength: trace.contextLength, prefillChunkLength: 32)
        #expect(throws: ReplayBackend.Mismatch.self) {
            try Generator(model: engine, tokenizer: IdText()).generate(prompt: trace.generate.promptIds, config: config())
        }
        // An engine that does not pass logits_row (a package whose prefill returned every row) is caught too.
        let old = KVCacheEngine(backend: ReplayBackend(calls: trace.generate.calls, vocabularySize: trace.vocabularySize),
                                contextLength: trace.contextLength, prefillChunkLength: trace.prefillChunk, prefillReturnsRow: false)
        #expect(throws: ReplayBackend.Mismatch.self) {
            try Generator(model: old, tokenizer: IdText()).generate(prompt: trace.generate.promptIds, config: config())
        }
        // Without reuse, the second turn starts a fresh state where the host kept it.
        let (fresh, _) = trace.engine(replaying: trace.chatTurns.flatMap(\.calls), manifest: manifest)
        let generator = Generator(model: fresh, tokenizer: IdText())
        _ = try generator.generate(prompt: trace.chatTurns[0].promptIds, config: config(), reuseCache: true)
        #expect(throws: ReplayBackend.Mismatch.self) {
            try generator.generate(prompt: trace.chatTurns[1].promptIds, config: config(), reuseCache: false)
        }
    }

    @Test func recordedArgmaxIsTheTopRow() {
        for row in (trace.generate.calls + trace.chatTurns.flatMap(\.calls)).flatMap(\.rows) {
            #expect(row.topIds.first == row.argmax)
        }
    }

    @Test func prefillAsksForTheLastRealTokensRow() {
        // The traced package's prefill returns one row (manifest prefill_logits "row"); the France prompt is shorter
        // than a chunk, so its only prefill call names the prompt's last token's row.
        #expect(manifest.prefillLogits == "row")
        let prefills = trace.generate.calls.filter { $0.function == .prefill }
        #expect(prefills.map(\.logitsRow) == [Int32(trace.generate.promptIds.count - 1)])
        let engine = KVCacheEngine(backend: ReplayBackend(calls: [], vocabularySize: trace.vocabularySize), manifest: manifest,
                                   contextLength: trace.contextLength, prefillChunkLength: trace.prefillChunk)
        #expect(engine.prefillReturnsRow && engine.verifyLength == nil)
    }
}
