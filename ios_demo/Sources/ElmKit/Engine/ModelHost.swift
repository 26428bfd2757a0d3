import Foundation

/// The single owner of the loaded model and its KV state; every model call in the app goes through it.
///
/// Why an actor: Core ML requires predictions on one `MLState` to be serialised, and the chat and the
/// benchmark can both ask for the model at any time. Each request runs start to finish inside one actor
/// method with no suspension point, so requests queue up instead of interleaving, and no request can reset the
/// state under another. Loading drops the previous model before creating the next, so a phone never holds two
/// (a jetsam risk for models of a gigabyte or more). Cancelling the calling task stops a request between
/// prefill chunks or decode steps.
///
/// The requests are synchronous model work; they occupy one thread of the concurrency pool while they run.
public actor ModelHost {
    /// What the app shows and reports about the loaded model.
    public struct LoadedModelInfo: Sendable, Equatable {
        public let name: String
        public let contextLength: Int
        public let prefillChunkLength: Int
        /// The units the model was loaded with (not whatever a picker shows now), e.g. "cpuAndNeuralEngine".
        public let computeUnits: String
        public let loadSeconds: Double

        public init(name: String, contextLength: Int, prefillChunkLength: Int, computeUnits: String, loadSeconds: Double) {
            self.name = name
            self.contextLength = contextLength
            self.prefillChunkLength = prefillChunkLength
            self.computeUnits = computeUnits
            self.loadSeconds = loadSeconds
        }
    }

    public enum HostError: Error, Equatable, CustomStringConvertible {
        case noModelLoaded
        public var description: String { "no model is loaded" }
    }

    private var model: (any LanguageModel)?
    public private(set) var info: LoadedModelInfo?
    private let clock: GenerationClock

    public init(clock: GenerationClock = SystemClock()) {
        self.clock = clock
    }

    /// Replaces the loaded model with the one `make` creates (on the host's executor, after the old model has
    /// been released). On failure no model is loaded.
    @discardableResult
    public func load(name: String, computeUnits: String, _ make: @Sendable () throws -> any LanguageModel) throws -> LoadedModelInfo {
        model = nil
        info = nil
        let start = clock.now()
        let loaded = try make()
        let loadedInfo = LoadedModelInfo(name: name, contextLength: loaded.contextLength, prefillChunkLength: loaded.prefillChunkLength,
                                         computeUnits: computeUnits, loadSeconds: clock.now() - start)
        model = loaded
        info = loadedInfo
        return loadedInfo
    }

    public func unload() {
        model = nil
        info = nil
    }

    /// Forgets the conversation: the next generation starts from a fresh state.
    public func resetState() throws {
        try loadedModel().reset()
    }

    /// One generation (see `Generator.generate`); `onEvent` gets each token's event, in order.
    public func generate(prompt: [Int], config: GenerationConfig, reuseCache: Bool, tokenizer: any TokenTextDecoder & Sendable,
                         onEvent: @Sendable (GenerationEvent) -> Void = { _ in }) throws -> GenerationResult {
        let generator = Generator(model: try loadedModel(), tokenizer: tokenizer, clock: clock)
        return try generator.generate(prompt: prompt, config: config, reuseCache: reuseCache) { event in
            onEvent(event)
            return !Task.isCancelled
        }
    }

    /// Benchmark rounds (see `BenchmarkRunner.run`); each round starts from a fresh state, so a chat that follows
    /// starts over as well.
    public func benchmark(_ settings: BenchmarkSettings, prompt: [Int]?, memoryProbe: @escaping @Sendable () -> Double? = MemoryProbe.footprintMB,
                          onRound: @Sendable (Int, BenchmarkRound) -> Void = { _, _ in }) throws -> [BenchmarkRound] {
        let runner = BenchmarkRunner(model: try loadedModel(), clock: clock, memoryProbe: memoryProbe)
        return try runner.run(settings, prompt: prompt) { index, round in
            onRound(index, round)
            return !Task.isCancelled
        }
    }

    /// Greedy ids after `prompt` from a fresh state (the device report's correctness probe).
    public func greedyTokens(prompt: [Int], maxNewTokens: Int, stopTokenIds: Set<Int>, tokenizer: any TokenTextDecoder & Sendable) throws -> [Int] {
        let config = GenerationConfig(maxNewTokens: maxNewTokens, sampling: .greedy, stopTokenIds: stopTokenIds)
        return try generate(prompt: prompt, config: config, reuseCache: false, tokenizer: tokenizer).tokens
    }

    private func loadedModel() throws -> any LanguageModel {
        guard let model else { throw HostError.noModelLoaded }
        return model
    }
}
