/// Settings of one generation.
public struct GenerationConfig: Sendable {
    public var maxNewTokens: Int
    public var sampling: SamplingParameters
    /// Ids that end generation without being shown (the manifest's `eos_token_ids`).
    public var stopTokenIds: Set<Int>
    /// Texts that end generation; neither they nor anything after them is shown.
    public var stopStrings: [String]

    public init(maxNewTokens: Int = 256, sampling: SamplingParameters = .greedy, stopTokenIds: Set<Int> = [], stopStrings: [String] = []) {
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.stopTokenIds = stopTokenIds
        self.stopStrings = stopStrings
    }
}

public enum FinishReason: String, Sendable, Codable {
    case endOfSequence, stopString, maxTokens, contextFull, cancelled
}

/// Timing of one generation.
///
/// Definitions: prefill time is the time inside `prefill` calls; time to first token runs from the first prefill
/// call to the first sampled token; a decode step is one `decode` call plus sampling the token it yields, and
/// decode tokens/s is steps divided by their total time.
public struct GenerationStats: Sendable, Equatable, Codable {
    public var promptTokens = 0
    /// Leading prompt tokens whose KV entries were kept from the previous turn (not prefilled again).
    public var reusedPromptTokens = 0
    public var generatedTokens = 0
    public var decodeSteps = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    public var timeToFirstTokenSeconds = 0.0

    public init() {}

    /// Prompt tokens that went through the model in this generation.
    public var prefilledTokens: Int { promptTokens - reusedPromptTokens }
    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(prefilledTokens) / prefillSeconds : 0 }
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(decodeSteps) / decodeSeconds : 0 }
}

/// What the streaming callback receives for each generated token.
public struct GenerationEvent: Sendable {
    public let tokenId: Int
    /// Newly displayable text (may be empty while a character or a possible stop string is incomplete).
    /// Text held back for a stop string that never completed appears only in `GenerationResult.text`.
    public let text: String
    public let stats: GenerationStats
}

public struct GenerationResult: Sendable {
    /// Generated ids, without a final end-of-sequence id.
    public let tokens: [Int]
    public let text: String
    public let finishReason: FinishReason
    public let stats: GenerationStats
}

/// The prefill-then-decode loop over a `LanguageModel`, with streaming text, stop conditions and timing.
public final class Generator {
    public let model: LanguageModel
    public let tokenizer: any TokenTextDecoder
    private let clock: GenerationClock

    public init(model: LanguageModel, tokenizer: any TokenTextDecoder, clock: GenerationClock = SystemClock()) {
        self.model = model
        self.tokenizer = tokenizer
        self.clock = clock
    }

    /// Generates after `prompt` (token ids, e.g. `tokenizer.encode(template.render(...))`).
    /// `onEvent` is called once per generated token; returning false cancels, and so does cancelling the task
    /// (checked between prefill chunks and decode steps; finish reason `.cancelled`).
    ///
    /// With `reuseCache` and a `KVReusingModel`, the state is kept and only the part of `prompt` after what the
    /// cache already holds is prefilled (the next chat turn); otherwise the model starts from a fresh state.
    /// At most `contextLength - prompt.count` tokens are generated, as `elmexport generate` does: the whole
    /// conversation must fit in the cache for the next turn to reuse it.
    @discardableResult
    public func generate(prompt: [Int], config: GenerationConfig, reuseCache: Bool = false,
                         onEvent: (GenerationEvent) -> Bool = { _ in true }) throws -> GenerationResult {
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        guard prompt.count < model.contextLength else {
            throw GenerationError.promptTooLong(tokens: prompt.count, contextLength: model.contextLength)
        }
        var reused = 0
        if reuseCache, let cached = model as? KVReusingModel { reused = cached.reusablePrefix(for: prompt) }
        if reused == 0 { try model.reset() }
        let budget = model.contextLength - prompt.count
        var stats = GenerationStats()
        stats.promptTokens = prompt.count
        stats.reusedPromptTokens = reused
        var sampler = Sampler(config.sampling)
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        var stops = StopStringMatcher(config.stopStrings)
        var context = prompt
        var generated: [Int] = []
        var text = ""

        let start = clock.now()
        var logits: [Float]
        do {
            logits = try model.prefillChunked(Array(prompt[reused...]), from: reused)[0]
        } catch is CancellationError {
            stats.prefillSeconds = clock.now() - start
            return GenerationResult(tokens: [], text: "", finishReason: .cancelled, stats: stats)
        }
        stats.prefillSeconds = clock.now() - start
        var stepStart = clock.now()
        var finish = FinishReason.maxTokens
        var isFirstToken = true

        while generated.count < config.maxNewTokens {
            let token = sampler.sample(logits, previous: context)
            let sampledAt = clock.now()
            if isFirstToken {
                isFirstToken = false
                stats.timeToFirstTokenSeconds = sampledAt - start
            } else {
                stats.decodeSteps += 1
                stats.decodeSeconds += sampledAt - stepStart
            }
            if config.stopTokenIds.contains(token) { finish = .endOfSequence; break }

            generated.append(token)
            context.append(token)
            stats.generatedTokens = generated.count
            let delta = stops.feed(detokenizer.step(token))
            text += delta
            if stops.stopped { finish = .stopString; break }
            if !onEvent(GenerationEvent(tokenId: token, text: delta, stats: stats)) || Task.isCancelled { finish = .cancelled; break }
            if generated.count >= config.maxNewTokens { break }
            guard generated.count < budget else { finish = .contextFull; break }

            stepStart = clock.now()
            logits = try model.decode(token, at: context.count - 1)
            guard logits.count == model.vocabularySize else {
                throw GenerationError.badLogits(expected: model.vocabularySize, got: logits.count)
            }
        }
        if finish != .stopString { text += stops.flush() }
        return GenerationResult(tokens: generated, text: text, finishReason: finish, stats: stats)
    }
}
