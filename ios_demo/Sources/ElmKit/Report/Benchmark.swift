/// What a benchmark run does: `rounds` measured rounds after `warmupRounds` unmeasured ones, each a fresh
/// prefill of `promptTokens` tokens followed by `decodeTokens` greedy decode steps.
public struct BenchmarkSettings: Codable, Equatable, Sendable {
    public var promptTokens: Int
    public var decodeTokens: Int
    public var rounds: Int
    public var warmupRounds: Int
    /// Core ML compute units used ("all", "cpuAndNeuralEngine", "cpuAndGPU", "cpuOnly"), or "n/a".
    public var computeUnits: String

    public init(promptTokens: Int = 128, decodeTokens: Int = 64, rounds: Int = 5, warmupRounds: Int = 1, computeUnits: String = "n/a") {
        self.promptTokens = promptTokens
        self.decodeTokens = decodeTokens
        self.rounds = rounds
        self.warmupRounds = warmupRounds
        self.computeUnits = computeUnits
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", decodeTokens = "decode_tokens", rounds
        case warmupRounds = "warmup_rounds", computeUnits = "compute_units"
    }
}

/// Measurements of one round (times in milliseconds, rates in tokens per second).
public struct BenchmarkRound: Codable, Equatable, Sendable {
    public var prefillTokens: Int
    public var prefillMs: Double
    public var prefillTokensPerSecond: Double
    /// From the first prefill call to the first token chosen (prefill + one arg-max).
    public var timeToFirstTokenMs: Double
    public var decodeTokens: Int
    public var decodeMs: Double
    public var decodeTokensPerSecond: Double
    /// Largest memory sample of the round (taken after prefill and after decoding), or nil where the platform reports none.
    public var peakMemoryMB: Double?

    enum CodingKeys: String, CodingKey {
        case prefillTokens = "prefill_tokens", prefillMs = "prefill_ms", prefillTokensPerSecond = "prefill_tokens_per_s"
        case timeToFirstTokenMs = "time_to_first_token_ms"
        case decodeTokens = "decode_tokens", decodeMs = "decode_ms", decodeTokensPerSecond = "decode_tokens_per_s"
        case peakMemoryMB = "peak_memory_mb"
    }

    public init(prefillTokens: Int, prefillMs: Double, prefillTokensPerSecond: Double, timeToFirstTokenMs: Double,
                decodeTokens: Int, decodeMs: Double, decodeTokensPerSecond: Double, peakMemoryMB: Double?) {
        self.prefillTokens = prefillTokens
        self.prefillMs = prefillMs
        self.prefillTokensPerSecond = prefillTokensPerSecond
        self.timeToFirstTokenMs = timeToFirstTokenMs
        self.decodeTokens = decodeTokens
        self.decodeMs = decodeMs
        self.decodeTokensPerSecond = decodeTokensPerSecond
        self.peakMemoryMB = peakMemoryMB
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(prefillTokens, forKey: .prefillTokens)
        try c.encode(prefillMs, forKey: .prefillMs)
        try c.encode(prefillTokensPerSecond, forKey: .prefillTokensPerSecond)
        try c.encode(timeToFirstTokenMs, forKey: .timeToFirstTokenMs)
        try c.encode(decodeTokens, forKey: .decodeTokens)
        try c.encode(decodeMs, forKey: .decodeMs)
        try c.encode(decodeTokensPerSecond, forKey: .decodeTokensPerSecond)
        try c.encode(peakMemoryMB, forKey: .peakMemoryMB)
    }
}

/// Runs the prefill / decode rounds of a benchmark against any `LanguageModel`.
///
/// Why not the `Generator`: a benchmark must run exactly the requested number of steps whatever the model
/// says (an early end-of-sequence would shorten a round), and it measures only model calls and arg-max.
public final class BenchmarkRunner {
    public let model: LanguageModel
    private let clock: GenerationClock
    private let memoryProbe: () -> Double?

    public init(model: LanguageModel, clock: GenerationClock = SystemClock(), memoryProbe: @escaping () -> Double? = MemoryProbe.footprintMB) {
        self.model = model
        self.clock = clock
        self.memoryProbe = memoryProbe
    }

    /// Token ids for a prompt of `count` tokens when the caller has no text: a fixed, repeating pattern.
    public static func syntheticPrompt(count: Int, vocabularySize: Int) -> [Int] {
        (0..<count).map { 1 + ($0 * 7919) % max(1, vocabularySize - 1) }
    }

    /// Runs warm-up and measured rounds. `onRound(index, round)` follows each measured round (index from 0)
    /// and may return false to stop early; the measured rounds so far are returned.
    public func run(_ settings: BenchmarkSettings, prompt: [Int]? = nil,
                    onRound: (Int, BenchmarkRound) -> Bool = { _, _ in true }) throws -> [BenchmarkRound] {
        var tokens = prompt ?? BenchmarkRunner.syntheticPrompt(count: settings.promptTokens, vocabularySize: model.vocabularySize)
        tokens = Array(tokens.prefix(settings.promptTokens))
        guard !tokens.isEmpty else { throw GenerationError.emptyPrompt }
        guard tokens.count < model.contextLength else {
            throw GenerationError.promptTooLong(tokens: tokens.count, contextLength: model.contextLength)
        }
        let decodeSteps = min(settings.decodeTokens, model.contextLength - tokens.count)
        var rounds: [BenchmarkRound] = []
        for index in 0..<(settings.warmupRounds + settings.rounds) {
            let round = try runRound(prompt: tokens, decodeSteps: decodeSteps)
            guard index >= settings.warmupRounds else { continue }
            rounds.append(round)
            if !onRound(rounds.count - 1, round) { break }
        }
        return rounds
    }

    private func runRound(prompt: [Int], decodeSteps: Int) throws -> BenchmarkRound {
        try model.reset()
        var peak: Double?
        func sample() { if let m = memoryProbe() { peak = max(peak ?? m, m) } }

        let start = clock.now()
        let logits = try model.prefillChunked(prompt, from: 0)[0]
        let prefillEnd = clock.now()
        var token = argmax(logits)
        let firstToken = clock.now()
        sample()

        for step in 0..<decodeSteps {
            token = argmax(try model.decode(token, at: prompt.count + step))
        }
        let decodeEnd = clock.now()
        sample()

        let prefillSeconds = prefillEnd - start
        let decodeSeconds = decodeEnd - firstToken
        return BenchmarkRound(
            prefillTokens: prompt.count,
            prefillMs: prefillSeconds * 1000,
            prefillTokensPerSecond: prefillSeconds > 0 ? Double(prompt.count) / prefillSeconds : 0,
            timeToFirstTokenMs: (firstToken - start) * 1000,
            decodeTokens: decodeSteps,
            decodeMs: decodeSeconds * 1000,
            decodeTokensPerSecond: decodeSeconds > 0 ? Double(decodeSteps) / decodeSeconds : 0,
            peakMemoryMB: peak
        )
    }

    private func argmax(_ row: [Float]) -> Int {
        var best = 0
        for i in row.indices where row[i] > row[best] { best = i }
        return best
    }
}
