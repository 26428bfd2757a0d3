import Foundation
import Testing
@testable import ElmKit

/// Counts things across tasks (a lock, since the tests poke it from inside and outside the actor).
final class SharedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    private var peak = 0

    func add(_ delta: Int) {
        lock.lock(); defer { lock.unlock() }
        value += delta
        peak = max(peak, value)
    }

    var current: Int { lock.lock(); defer { lock.unlock() }; return value }
    var highest: Int { lock.lock(); defer { lock.unlock() }; return peak }
}

/// A backend whose next token is always `last input id + 1`; it counts live instances and calls in flight, and
/// can run a hook on each call (to cancel the calling task at a chosen point).
final class CountingBackend: PredictionBackend {
    let vocabularySize = 64
    private let live: SharedCounter
    private let inFlight: SharedCounter
    private(set) var calls: [(function: EngineFunction, position: Int)] = []
    var onCall: (Int) -> Void = { _ in }

    init(live: SharedCounter, inFlight: SharedCounter) {
        self.live = live
        self.inFlight = inFlight
        live.add(1)
    }

    deinit { live.add(-1) }

    func makeFreshState() throws {}

    func predict(_ function: EngineFunction, inputIds: [Int32], inputPositions: [Int32], logitsRow: Int32?,
                 rows: Range<Int>) throws -> [[Float]] {
        inFlight.add(1)
        defer { inFlight.add(-1) }
        calls.append((function, Int(inputPositions[0])))
        onCall(calls.count)
        usleep(200)  // widens the window in which an unserialised second request would overlap
        let inputRows = logitsRow.map { [Int($0)] } ?? Array(rows)  // prefill returns the logits_row row only
        return inputRows.map { r in
            var row = [Float](repeating: 0, count: vocabularySize)
            row[(Int(inputIds[r]) + 1) % vocabularySize] = 1
            return row
        }
    }
}

@Suite struct ModelHostTests {
    let live = SharedCounter()
    let inFlight = SharedCounter()
    let config = GenerationConfig(maxNewTokens: 6)

    func makeEngine(chunk: Int = 4, onCall: @escaping (Int) -> Void = { _ in }) -> KVCacheEngine {
        let backend = CountingBackend(live: live, inFlight: inFlight)
        backend.onCall = onCall
        return KVCacheEngine(backend: backend, contextLength: 128, prefillChunkLength: chunk)
    }

    @Test func loadingReleasesThePreviousModelFirst() async throws {
        let host = ModelHost()
        let live = self.live
        try await host.load(name: "a", computeUnits: "all") { makeEngine() }
        #expect(live.current == 1)
        let seenWhileLoading = SharedCounter()
        let info = try await host.load(name: "b", computeUnits: "cpuOnly") {
            seenWhileLoading.add(live.current)
            return makeEngine()
        }
        #expect(seenWhileLoading.current == 0)
        #expect(live.current == 1)
        #expect(info.computeUnits == "cpuOnly" && info.name == "b" && info.prefillChunkLength == 4)
        await host.unload()
        #expect(live.current == 0)
    }

    @Test func aFailedLoadLeavesNoModel() async throws {
        struct Broken: Error {}
        let host = ModelHost()
        try await host.load(name: "a", computeUnits: "all") { makeEngine() }
        await #expect(throws: Broken.self) { try await host.load(name: "b", computeUnits: "all") { throw Broken() } }
        #expect(await host.info == nil)
        #expect(live.current == 0)
        await #expect(throws: ModelHost.HostError.noModelLoaded) { try await host.resetState() }
    }

    @Test func chatAndBenchmarkRequestsNeverOverlap() async throws {
        let host = ModelHost()
        try await host.load(name: "a", computeUnits: "all") { makeEngine() }
        let prompt = Array(1...10)
        async let chat = host.generate(prompt: prompt, config: config, reuseCache: true, tokenizer: IdText())
        async let bench = host.benchmark(BenchmarkSettings(promptTokens: 10, decodeTokens: 5, rounds: 2, warmupRounds: 1),
                                         prompt: prompt, memoryProbe: { nil })
        async let chat2 = host.generate(prompt: prompt, config: config, reuseCache: false, tokenizer: IdText())
        let (a, b, c) = try await (chat, bench, chat2)
        #expect(a.tokens == Array(11...16) && c.tokens == Array(11...16))
        #expect(b.count == 2)
        #expect(inFlight.highest == 1)
    }

    @Test func cancellingDuringPrefillStopsBetweenChunksAndKeepsWhatWasCached() async throws {
        let host = ModelHost()
        // The second prefill call cancels the task that is running it: the third chunk must not run.
        try await host.load(name: "a", computeUnits: "all") {
            makeEngine(chunk: 4) { count in if count == 2 { withUnsafeCurrentTask { $0?.cancel() } } }
        }
        let prompt = Array(1...18)  // chunks of 4 at 0, 4, 8, 12, then 16-17
        let cancelled = try await Task { try await host.generate(prompt: prompt, config: config, reuseCache: true, tokenizer: IdText()) }.value
        #expect(cancelled.finishReason == .cancelled)
        #expect(cancelled.tokens.isEmpty)

        let resumed = try await Task { try await host.generate(prompt: prompt, config: config, reuseCache: true, tokenizer: IdText()) }.value
        #expect(resumed.stats.reusedPromptTokens == 8)  // the two chunks that ran are not prefilled again
        #expect(resumed.tokens == Array(19...24))
    }
}
