import Foundation
import Testing
@testable import ElmKit

/// Benchmark rounds, their medians, and the report JSON checked against Schemas/device_report.schema.json.
@Suite struct DeviceReportTests {
    @Test func roundsMeasureModelCallsAndMediansAreHandComputed() throws {
        let clock = FakeClock()
        let model = HashModel(seed: 1, vocabularySize: 50, contextLength: 64, prefillChunkLength: 8)
        model.clock = clock
        model.prefillCost = 0.2
        // Costs per decode step for: warm-up, round 0, round 1, round 2.
        var costs = [1.0, 0.1, 0.3, 0.2].makeIterator()
        model.decodeCost = costs.next()!
        var memory = [100, 120, 130, 90, 95, 97, 140, 150].map(Double?.some).makeIterator()
        let resetHook = ResetHook(model: model) { model.decodeCost = costs.next() ?? 0 }
        let runner = BenchmarkRunner(model: resetHook, clock: clock, memoryProbe: { memory.next() ?? nil })
        let settings = BenchmarkSettings(promptTokens: 20, decodeTokens: 10, rounds: 3, warmupRounds: 1)
        let rounds = try runner.run(settings)

        #expect(rounds.count == 3)
        // 20 prompt tokens = 3 chunks of 0.2 s.
        for r in rounds {
            #expect(r.prefillTokens == 20 && r.decodeTokens == 10)
            #expect(abs(r.prefillMs - 600) < 1e-9)
            #expect(abs(r.timeToFirstTokenMs - 600) < 1e-9)
            #expect(abs(r.prefillTokensPerSecond - 20 / 0.6) < 1e-9)
        }
        #expect(rounds.map { ($0.decodeMs * 1000).rounded() / 1000 } == [1000, 3000, 2000])
        #expect(zip(rounds.map(\.decodeTokensPerSecond), [10.0, 10 / 3.0, 5.0]).allSatisfy { abs($0 - $1) < 1e-9 })
        // Memory: two samples per round; the warm-up round takes the first two.
        #expect(rounds.map(\.peakMemoryMB) == [130, 97, 150])

        let summary = DeviceReport.Summary(rounds: rounds)
        #expect(abs(summary.decodeTokensPerSecondMedian - 5) < 1e-9)
        #expect(abs(summary.prefillTokensPerSecondMedian - 20 / 0.6) < 1e-9)
        #expect(summary.peakMemoryMB == 150)
    }

    @Test func medianOfEvenAndOddCounts() {
        #expect(median([3, 1, 2]) == 2)
        #expect(median([4, 1, 3, 2]) == 2.5)
        #expect(median([]) == 0)
    }

    @Test func decodeStepsAreClippedToTheContext() throws {
        let model = HashModel(seed: 2, vocabularySize: 30, contextLength: 24, prefillChunkLength: 8)
        let rounds = try BenchmarkRunner(model: model, memoryProbe: { nil })
            .run(BenchmarkSettings(promptTokens: 20, decodeTokens: 10, rounds: 1, warmupRounds: 0))
        #expect(rounds.first?.decodeTokens == 4)
        #expect(rounds.first?.peakMemoryMB == nil)
    }

    func makeReport(peak: Double?, loadMs: Double? = nil, greedy: DeviceReport.GreedyCheck? = nil) -> DeviceReport {
        let round = BenchmarkRound(prefillTokens: 64, prefillMs: 80, prefillTokensPerSecond: 800, timeToFirstTokenMs: 81,
                                   decodeTokens: 32, decodeMs: 800, decodeTokensPerSecond: 40, peakMemoryMB: peak)
        let manifest = ModelManifest(json: try! JSONValue.parse(#"{"name": "tiny", "target": "coreml", "context_length": 512}"#))
        return DeviceReport(appVersion: "0.1.0 (1)", date: Date(timeIntervalSince1970: 1_700_000_000),
                            device: DeviceInfo(model: "iPhone16,1", osName: "iOS", osVersion: "18.2.0"),
                            package: .init(manifest: manifest, fallbackName: "dir"),
                            settings: BenchmarkSettings(promptTokens: 64, decodeTokens: 32, rounds: 1, warmupRounds: 0, computeUnits: "all"),
                            rounds: [round], loadMs: loadMs, greedyCheck: greedy)
    }

    @Test func loadTimeAndGreedyIdsAreWrittenAndNullWhenUnknown() throws {
        let greedy = DeviceReport.GreedyCheck(prompt: DeviceReport.GreedyCheck.standardQuestion, promptIds: [1, 2, 3],
                                              maxNewTokens: 32, tokenIds: [504, 3575])
        let filled = try JSONValue.parse(try makeReport(peak: 1, loadMs: 1234.5, greedy: greedy).jsonData())
        #expect(SchemaCheck.errors(filled, against: SchemaCheck.deviceReportSchema) == [])
        #expect(filled["schema_version"]?.intValue == 2)
        #expect(filled["load_ms"]?.doubleValue == 1234.5)
        #expect(Fixtures.ints(filled["greedy_check"]?["token_ids"]) == [504, 3575])
        #expect(filled["greedy_check"]?["max_new_tokens"]?.intValue == 32)
        let empty = try JSONValue.parse(try makeReport(peak: 1).jsonData())
        #expect(SchemaCheck.errors(empty, against: SchemaCheck.deviceReportSchema) == [])
        #expect(empty["load_ms"]?.isNull == true && empty["greedy_check"]?.isNull == true)
        #expect(try DeviceReport.decode(makeReport(peak: 1, loadMs: 3, greedy: greedy).jsonData()).greedyCheck == greedy)
    }

    @Test func greedyCheckFromTheHostGreedyRun() async throws {
        // The probe the app runs for the report, through the model host, on the replayed real package: the
        // ids it reports are the host's `elmexport generate` ids.
        let trace = try EngineTrace.load()
        let manifest = try ModelManifest(contentsOf: Fixtures.root.appendingPathComponent("coreml_engine/manifest.json"))
        let host = ModelHost()
        try await host.load(name: "smol", computeUnits: "cpuOnly") { trace.engine(replaying: trace.generate.calls, manifest: manifest).0 }
        let ids = try await host.greedyTokens(prompt: trace.generate.promptIds, maxNewTokens: DeviceReport.GreedyCheck.standardMaxNewTokens,
                                              stopTokenIds: [2], tokenizer: IdText())
        #expect(ids == trace.generate.expectedTokens)
    }

    @Test(arguments: [nil, 321.5] as [Double?])
    func encodedReportSatisfiesTheSchema(peak: Double?) throws {
        let json = try JSONValue.parse(try makeReport(peak: peak).jsonData())
        #expect(SchemaCheck.errors(json, against: SchemaCheck.deviceReportSchema) == [])
        #expect(json["timestamp"]?.stringValue == "2023-11-14T22:13:20Z")
        #expect(json["package"]?["quantization"]?.isNull == true)  // written as null, not left out
        #expect(json["summary"]?["peak_memory_mb"] == (peak.map(JSONValue.number) ?? .null))
    }

    @Test func schemaCheckerRejectsBrokenReports() throws {
        var json = try JSONValue.parse(try makeReport(peak: 1).jsonData())
        guard case var .object(members) = json else { Issue.record("not an object"); return }
        members.removeAll { $0.key == "rounds" }
        members.append((key: "surprise", value: .number(1)))
        json = .object(members)
        let errors = SchemaCheck.errors(json, against: SchemaCheck.deviceReportSchema)
        #expect(errors.contains("$: missing rounds"))
        #expect(errors.contains("$: unexpected surprise"))
    }

    @Test func documentedExampleDecodesAndSatisfiesTheSchema() throws {
        let url = Fixtures.root.deletingLastPathComponent().appendingPathComponent("Schemas/device_report.example.json")
        let data = try Data(contentsOf: url)
        #expect(SchemaCheck.errors(try JSONValue.parse(data), against: SchemaCheck.deviceReportSchema) == [])
        let report = try DeviceReport.decode(data)
        #expect(report.rounds.count == 3)
        #expect(DeviceReport.Summary(rounds: report.rounds) == report.summary)
    }

    @Test func reportRoundTripsThroughJSON() throws {
        let report = makeReport(peak: 12)
        #expect(try DeviceReport.decode(report.jsonData()) == report)
        #expect(report.suggestedFileName == "device-report-tiny-2023-11-14T22-13-20Z.json")
    }
}

/// Wraps a model to run `onReset` at each round's start (the runner resets the model once per round).
final class ResetHook: LanguageModel {
    let model: LanguageModel
    let onReset: () -> Void
    private var resets = 0

    init(model: LanguageModel, onReset: @escaping () -> Void) {
        self.model = model
        self.onReset = onReset
    }

    var vocabularySize: Int { model.vocabularySize }
    var contextLength: Int { model.contextLength }
    var prefillChunkLength: Int { model.prefillChunkLength }

    func reset() throws {
        if resets > 0 { onReset() }
        resets += 1
        try model.reset()
    }

    func prefill(_ tokens: [Int], at position: Int, allLogits: Bool) throws -> [[Float]] {
        try model.prefill(tokens, at: position, allLogits: allLogits)
    }

    func decode(_ token: Int, at position: Int) throws -> [Float] { try model.decode(token, at: position) }
}
