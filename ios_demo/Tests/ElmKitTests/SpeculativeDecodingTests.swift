import Testing
@testable import ElmKit

/// Speculative decoding must reproduce plain greedy decoding of the target exactly, whatever the draft does.
@Suite struct SpeculativeDecodingTests {
    /// Reference greedy decoding: one `decode` call per token, prompt included (no prefill path, no speculation).
    static func greedyReference(_ model: LanguageModel, prompt: [Int], count: Int, stop: Set<Int> = []) throws -> [Int] {
        try model.reset()
        var logits: [Float] = []
        for (p, t) in prompt.enumerated() { logits = try model.decode(t, at: p) }
        var out: [Int] = []
        var position = prompt.count
        while out.count < count {
            let next = logits.indices.max { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) }!
            if stop.contains(next) { break }
            out.append(next)
            if out.count == count || position >= model.contextLength { break }
            logits = try model.decode(next, at: position)
            position += 1
        }
        return out
    }

    static let prompt = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3]

    @Test(arguments: [1, 2, 3, 4, 6], [0, 40, 80, 100])
    func outputEqualsGreedyDecodingOfTheTarget(draftLength: Int, agreement: Int) throws {
        let target = HashModel(seed: 1)
        let draft = DraftModel(target: HashModel(seed: 1), agreementPercent: UInt64(agreement))
        let expected = try Self.greedyReference(HashModel(seed: 1), prompt: Self.prompt, count: 40)
        let result = try SpeculativeDecoder(target: target, draft: draft, k: draftLength)
            .generate(prompt: Self.prompt, maxNewTokens: 40)
        #expect(result.tokens == expected)
        #expect(result.finishReason == .maxTokens)
    }

    @Test func perfectDraftIsAlwaysAcceptedAndSavesPasses() throws {
        let result = try SpeculativeDecoder(target: HashModel(seed: 2), draft: DraftModel(target: HashModel(seed: 2), agreementPercent: 100), k: 4)
            .generate(prompt: Self.prompt, maxNewTokens: 41)
        #expect(result.acceptanceRate == 1)
        // First token from the prompt pass, then 5 tokens (4 drafts + 1) per verification pass.
        #expect(result.verificationPasses == 8)
    }

    @Test func contraryDraftIsNeverAcceptedButOutputIsStillGreedy() throws {
        let expected = try Self.greedyReference(HashModel(seed: 3), prompt: Self.prompt, count: 20)
        let result = try SpeculativeDecoder(target: HashModel(seed: 3), draft: DraftModel(target: HashModel(seed: 3), agreementPercent: 0), k: 3)
            .generate(prompt: Self.prompt, maxNewTokens: 20)
        #expect(result.tokens == expected)
        #expect(result.acceptedDraftTokens == 0)
        #expect(result.acceptanceRate == 0)
        // One kept token per round; a round proposes at most what maxNewTokens leaves after the target's own token
        // (elmexport/speculative.py): 3 while 16 or fewer tokens are kept, then 2, 1, and 0 for the last one.
        #expect(result.proposedDraftTokens == 16 * 3 + 2 + 1)
        #expect(result.targetCalls == 20)
    }

    @Test func partialDraftGivesAnIntermediateAcceptanceRate() throws {
        let result = try SpeculativeDecoder(target: HashModel(seed: 4), draft: DraftModel(target: HashModel(seed: 4), agreementPercent: 60), k: 4)
            .generate(prompt: Self.prompt, maxNewTokens: 60)
        #expect(result.acceptanceRate > 0.2 && result.acceptanceRate < 0.9)
        #expect(Double(result.acceptedDraftTokens) / Double(result.proposedDraftTokens) == result.acceptanceRate)
    }

    @Test func stopsAtEndOfSequenceLikeGreedy() throws {
        let unstopped = try Self.greedyReference(HashModel(seed: 5), prompt: Self.prompt, count: 30)
        let eos = unstopped[17]
        let expected = try Self.greedyReference(HashModel(seed: 5), prompt: Self.prompt, count: 30, stop: [eos])
        let result = try SpeculativeDecoder(target: HashModel(seed: 5), draft: DraftModel(target: HashModel(seed: 5), agreementPercent: 70), k: 4)
            .generate(prompt: Self.prompt, maxNewTokens: 30, stopTokenIds: [eos])
        #expect(result.tokens == expected)
        #expect(result.finishReason == .endOfSequence)
    }

    @Test func respectsTheContextLength() throws {
        let context = Self.prompt.count + 10
        let expected = try Self.greedyReference(HashModel(seed: 6, contextLength: context), prompt: Self.prompt, count: 100)
        let target = HashModel(seed: 6, contextLength: context)
        let result = try SpeculativeDecoder(target: target, draft: DraftModel(target: HashModel(seed: 6), agreementPercent: 90, contextLength: context), k: 4)
            .generate(prompt: Self.prompt, maxNewTokens: 100)
        #expect(result.tokens == Array(expected.prefix(10)))
        #expect(result.tokens.count == 10)  // what the context leaves after the prompt, as elmexport generate makes
        #expect(result.finishReason == .contextFull)
    }

    @Test func matchesTheGeneratorsGreedyOutput() throws {
        let tokenizer = try Fixtures.tokenizer("bytelevel_bpe")
        let target = HashModel(seed: 8, vocabularySize: tokenizer.vocabularySize)
        let plain = try Generator(model: target, tokenizer: tokenizer).generate(prompt: Self.prompt, config: GenerationConfig(maxNewTokens: 25))
        let draft = DraftModel(target: HashModel(seed: 8, vocabularySize: tokenizer.vocabularySize), agreementPercent: 75)
        let result = try SpeculativeDecoder(target: target, draft: draft, k: 3).generate(prompt: Self.prompt, maxNewTokens: 25)
        #expect(result.tokens == plain.tokens)
    }
}
