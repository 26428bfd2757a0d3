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
                    Button(running ? "Running…" : "Run benchmark") { run() }
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
        chosen.computeUnits = store.computeUnits.reportName
        let runSettings = chosen
        running = true
        rounds = []
        report = nil
        reportURL = nil
        errorMessage = nil
        let promptText = Self.promptText
        Task.detached(priority: .userInitiated) {
            do {
                // Real text, repeated to the requested length, so the prompt looks like a user's.
                var prompt = loaded.tokenizer.encode(promptText, addSpecialTokens: true)
                while prompt.count < runSettings.promptTokens { prompt += loaded.tokenizer.encode(" " + promptText, addSpecialTokens: false) }
                let measured = try BenchmarkRunner(model: loaded.model).run(runSettings, prompt: prompt) { _, round in
                    DispatchQueue.main.async { MainActor.assumeIsolated { rounds.append(round) } }
                    return true
                }
                let info = Bundle.main.infoDictionary
                let version = "\(info?["CFBundleShortVersionString"] as? String ?? "?") (\(info?["CFBundleVersion"] as? String ?? "?"))"
                let made = DeviceReport(appVersion: version, device: .current(),
                                        package: .init(manifest: loaded.package.manifest, fallbackName: loaded.package.displayName),
                                        settings: runSettings, rounds: measured)
                let url = FileManager.default.temporaryDirectory.appendingPathComponent(made.suggestedFileName)
                try made.jsonData().write(to: url)
                await MainActor.run {
                    rounds = measured
                    report = made
                    reportURL = url
                    running = false
                }
            } catch {
                await MainActor.run {
                    errorMessage = "\(error)"
                    running = false
                }
            }
        }
    }
}
#endif
