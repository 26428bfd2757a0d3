#if canImport(SwiftUI)
import ElmKit
import SwiftUI

/// Runs N prefill/decode rounds on the loaded package and exports the device report JSON
/// (Schemas/device_report.schema.json) for `elmexport validate --device-report`.
struct BenchmarkView: View {
    @Environment(ModelStore.self) private var store
    @State private var settings = BenchmarkSettings(promptTokens: 128, decodeTokens: 64, rounds: 5, warmupRounds: 1)
    @State private var rounds: [BenchmarkRound] = []
    @State private var report: DeviceReport?
    @State private var reportURL: URL?
    @State private var running = false
    @State private var errorMessage: String?

    static let promptText = """
    The precise terms and conditions for copying, distribution and modification follow. This License applies to \
    any program or other work which contains a notice placed by the copyright holder saying it may be distributed \
    under the terms of this General Public License.
    """

    var body: some View {
        NavigationStack {
            Form {
                Section("Settings") {
                    Stepper("Prompt tokens \(settings.promptTokens)", value: $settings.promptTokens, in: 8...2048, step: 8)
                    Stepper("Decode tokens \(settings.decodeTokens)", value: $settings.decodeTokens, in: 8...1024, step: 8)
                    Stepper("Rounds \(settings.rounds)", value: $settings.rounds, in: 1...20)
                    Stepper("Warm-up rounds \(settings.warmupRounds)", value: $settings.warmupRounds, in: 0...5)
                }
                Section {
                    Button(running ? "Running…" : "Run benchmark") { run() }  // rounds appear when all have run
                        .disabled(running || store.loaded == nil)
                    if store.loaded == nil { Text("Load a model on the Models tab first.").foregroundStyle(.secondary) }
                }
                if !rounds.isEmpty {
                    Section("Rounds") {
                        ForEach(Array(rounds.enumerated()), id: \.offset) { i, r in
                            Text(String(format: "#%d  prefill %.0f tok/s · decode %.1f tok/s · TTFT %.0f ms · %@",
                                        i + 1, r.prefillTokensPerSecond, r.decodeTokensPerSecond, r.timeToFirstTokenMs,
                                        r.peakMemoryMB.map { String(format: "%.0f MB", $0) } ?? "mem n/a"))
                                .font(.caption.monospacedDigit())
                        }
                    }
                }
                if let report {
                    Section("Median") {
                        LabeledContent("Prefill", value: String(format: "%.0f tok/s", report.summary.prefillTokensPerSecondMedian))
                        LabeledContent("Decode", value: String(format: "%.1f tok/s", report.summary.decodeTokensPerSecondMedian))
                        LabeledContent("Time to first token", value: String(format: "%.0f ms", report.summary.timeToFirstTokenMsMedian))
                        if let peak = report.summary.peakMemoryMB { LabeledContent("Peak memory", value: String(format: "%.0f MB", peak)) }
                        if let reportURL { ShareLink("Export report JSON", item: reportURL) }
                    }
                }
                if let errorMessage { Section { Text(errorMessage).foregroundStyle(.red).font(.footnote) } }
            }
            .navigationTitle("Benchmark")
        }
    }

    private func run() {
        guard let loaded = store.loaded else { return }
        var chosen = settings
        chosen.computeUnits = loaded.info.computeUnits  // what the model was loaded with, not the picker's value now
        let runSettings = chosen
        running = true
        rounds = []
        report = nil
        reportURL = nil
        errorMessage = nil
        let promptText = Self.promptText
        let host = store.host
        Task {
            do {
                let tokenizer = loaded.tokenizer
                // Real text, repeated to the requested length, so the prompt looks like a user's.
                var prompt = tokenizer.encode(promptText, addSpecialTokens: true)
                while prompt.count < runSettings.promptTokens { prompt += tokenizer.encode(" " + promptText, addSpecialTokens: false) }
                let measured = try await host.benchmark(runSettings, prompt: prompt)
                // Correctness probe: the host's `elmexport generate` must give the same ids for this question.
                let manifest = loaded.package.manifest
                let question = DeviceReport.GreedyCheck.standardQuestion
                let chatPrompt = loaded.package.chatTemplate.render([.user(question)], defaultSystemPrompt: manifest.systemPrompt)
                let promptIds = tokenizer.encode(chatPrompt, addSpecialTokens: true)
                let maxNew = DeviceReport.GreedyCheck.standardMaxNewTokens
                let greedyIds = try await host.greedyTokens(prompt: promptIds, maxNewTokens: maxNew,
                                                            stopTokenIds: Set(manifest.eosTokenIds), tokenizer: tokenizer)
                let info = Bundle.main.infoDictionary
                let version = "\(info?["CFBundleShortVersionString"] as? String ?? "?") (\(info?["CFBundleVersion"] as? String ?? "?"))"
                let made = DeviceReport(appVersion: version, device: .current(),
                                        package: .init(manifest: manifest, fallbackName: loaded.package.displayName),
                                        settings: runSettings, rounds: measured, loadMs: loaded.info.loadSeconds * 1000,
                                        greedyCheck: .init(prompt: question, promptIds: promptIds, maxNewTokens: maxNew, tokenIds: greedyIds))
                let url = FileManager.default.temporaryDirectory.appendingPathComponent(made.suggestedFileName)
                try made.jsonData().write(to: url)
                rounds = measured
                report = made
                reportURL = url
            } catch {
                errorMessage = "\(error)"
            }
            running = false
        }
    }
}
#endif
