import Foundation
import Testing
@testable import ElmKit

/// The generation loop: chunked prefill, streaming text, stop conditions and timing, against scripted fakes.
@Suite struct GeneratorTests {
    let tokenizer: Tokenizer
    let prompt: [Int]

    init() throws {
        tokenizer = try Fixtures.tokenizer("bytelevel_bpe")
        prompt = tokenizer.encode(ChatTemplate.chatml.render([.user("Explain the licence in one line, please.")]))
    }

    func model(script text: String, extra: [Int] = [], contextLength: Int = 512) -> ScriptedModel {
        ScriptedModel(prompt: prompt, script: tokenizer.encode(text, addSpecialTokens: false) + extra,
                      vocabularySize: tokenizer.vocabularySize, contextLength: contextLength)
    }

    @Test func streamsTheScriptedTextAndStopsAtMaxTokens() throws {
        let text = "You may copy it freely; naïve café 😀 ok."
        let m = model(script: text)
        var streamed = ""
        var events = 0
        let result = try Generator(model: m, tokenizer: tokenizer).generate(
            prompt: prompt, config: GenerationConfig(maxNewTokens: m.script.count)) { event in
            streamed += event.text
            events += 1
            return true
        }
        #expect(result.tokens == m.script)
        #expect(result.text == text)
        #expect(streamed == text)
        #expect(events == m.script.count)
        #expect(result.finishReason == .maxTokens)
    }

    @Test func endOfSequenceIdEndsWithoutBeingShown() throws {
        let eos = try #require(tokenizer.tokenId(for: "<|im_end|>"))
        let m = model(script: "Short answer.", extra: [eos, 40, 41])
        let result = try Generator(model: m, tokenizer: tokenizer).generate(
            prompt: prompt, config: GenerationConfig(maxNewTokens: 50, stopTokenIds: [eos]))
        #expect(result.finishReason == .endOfSequence)
        #expect(result.text == "Short answer.")
        #expect(!result.tokens.contains(eos))
    }

    @Test func stopStringIsNeverShown() throws {
        let m = model(script: "Sure thing.\nUser: next question")
        var streamed = ""
        let result = try Generator(model: m, tokenizer: tokenizer).generate(
            prompt: prompt, config: GenerationConfig(maxNewTokens: 50, stopStrings: ["\nUser:"])) { event in
            streamed += event.text
            return true
        }
        #expect(result.finishReason == .stopString)
        #expect(result.text == "Sure thing.")
        #expect(streamed == "Sure thing.")
    }

    @Test func callbackCanCancel() throws {
        let m = model(script: "one two three four five six")
        var seen = 0
        let result = try Generator(model: m, tokenizer: tokenizer).generate(
            prompt: prompt, config: GenerationConfig(maxNewTokens: 50)) { _ in
            seen += 1
            return seen < 3
        }
        #expect(result.finishReason == .cancelled)
        #expect(result.tokens.count == 3)
    }

    @Test func stopsWhenTheContextIsFull() throws {
        // Context L, prompt P: like `elmexport generate`, L - P tokens come out, so prompt and reply fit the cache.
        let m = model(script: String(repeating: "word ", count: 40), contextLength: prompt.count + 6)
        let result = try Generator(model: m, tokenizer: tokenizer).generate(prompt: prompt, config: GenerationConfig(maxNewTokens: 100))
        #expect(result.finishReason == .contextFull)
        #expect(result.tokens.count == 6)
        #expect(m.calls.allSatisfy { $0.position + $0.count <= m.contextLength })
    }

    @Test func promptIsPrefilledInChunksAtTheRightPositions() throws {
        let m = model(script: "ok")
        _ = try Generator(model: m, tokenizer: tokenizer).generate(prompt: prompt, config: GenerationConfig(maxNewTokens: 1))
        let prefills = m.calls.filter { $0.kind == "prefill" }
        let expectedStarts = Array(stride(from: 0, to: prompt.count, by: 8))
        #expect(prefills.map(\.position) == expectedStarts)
        #expect(prefills.map(\.count) == expectedStarts.map { min(8, prompt.count - $0) })
    }

    @Test func timingArithmetic() throws {
        let clock = FakeClock()
        let m = model(script: "a b c d e f")
        m.clock = clock
        m.prefillCost = 0.5
        m.decodeCost = 0.1
        let result = try Generator(model: m, tokenizer: tokenizer, clock: clock).generate(
            prompt: prompt, config: GenerationConfig(maxNewTokens: 5))
        let chunks = Double((prompt.count + 7) / 8)
        #expect(result.stats.promptTokens == prompt.count)
        #expect(result.stats.prefillSeconds == 0.5 * chunks)
        #expect(result.stats.timeToFirstTokenSeconds == 0.5 * chunks)
        #expect(result.stats.decodeSteps == 4)
        #expect(abs(result.stats.decodeSeconds - 0.4) < 1e-12)
        #expect(abs(result.stats.decodeTokensPerSecond - 10) < 1e-9)
        #expect(abs(result.stats.prefillTokensPerSecond - Double(prompt.count) / (0.5 * chunks)) < 1e-9)
    }

    @Test func seededSamplingIsRepeatable() throws {
        let m = HashModel(seed: 9, vocabularySize: tokenizer.vocabularySize)
        let config = GenerationConfig(maxNewTokens: 12, sampling: SamplingParameters(temperature: 0.9, topK: 20, topP: 0.95, seed: 123))
        let a = try Generator(model: m, tokenizer: tokenizer).generate(prompt: prompt, config: config)
        let b = try Generator(model: m, tokenizer: tokenizer).generate(prompt: prompt, config: config)
        var other = config
        other.sampling.seed = 124
        let c = try Generator(model: m, tokenizer: tokenizer).generate(prompt: prompt, config: other)
        #expect(a.tokens == b.tokens)
        #expect(a.tokens != c.tokens)
    }

    @Test func rejectsPromptsThatDoNotFit() {
        let m = model(script: "x", contextLength: 4)
        #expect(throws: GenerationError.promptTooLong(tokens: prompt.count, contextLength: 4)) {
            try Generator(model: m, tokenizer: tokenizer).generate(prompt: prompt, config: GenerationConfig())
        }
        #expect(throws: GenerationError.emptyPrompt) {
            try Generator(model: m, tokenizer: tokenizer).generate(prompt: [], config: GenerationConfig())
        }
    }
}
