#if canImport(SwiftUI)
import ElmKit
import SwiftUI

/// Chat with the loaded package: streamed replies, tokens/s and time to first token under the conversation.
struct ChatView: View {
    @Environment(ModelStore.self) private var store
    @State private var session = ChatSession()
    @State private var draft = ""
    @State private var showSettings = false

    var body: some View {
        NavigationStack {
            VStack(spacing: 0) {
                ScrollViewReader { proxy in
                    ScrollView {
                        LazyVStack(alignment: .leading, spacing: 12) {
                            ForEach(session.turns) { turn in
                                Text(turn.text.isEmpty ? "…" : turn.text)
                                    .textSelection(.enabled)
                                    .padding(10)
                                    .background(turn.role == "user" ? Color.accentColor.opacity(0.15) : Color.secondary.opacity(0.1),
                                                in: RoundedRectangle(cornerRadius: 10))
                                    .frame(maxWidth: .infinity, alignment: turn.role == "user" ? .trailing : .leading)
                                    .id(turn.id)
                            }
                        }
                        .padding()
                    }
                    .onChange(of: session.turns.last?.text) {
                        if let last = session.turns.last { proxy.scrollTo(last.id, anchor: .bottom) }
                    }
                }
                if let stats = session.lastStats {
                    Text(String(format: "prefill %.0f tok/s · decode %.1f tok/s · first token %.0f ms · %d tokens · %d reused",
                                stats.prefillTokensPerSecond, stats.decodeTokensPerSecond,
                                stats.timeToFirstTokenSeconds * 1000, stats.generatedTokens, stats.reusedPromptTokens)
                         + (session.finishReason.map { " · \($0.rawValue)" } ?? ""))
                        .font(.caption.monospacedDigit())
                        .foregroundStyle(.secondary)
                        .padding(.vertical, 4)
                }
                if let notice = session.trimNotice {
                    Label(notice, systemImage: "scissors")
                        .font(.caption)
                        .foregroundStyle(.orange)
                        .padding(.horizontal)
                }
                HStack {
                    TextField(store.loaded == nil ? "Load a model first" : "Message", text: $draft, axis: .vertical)
                        .textFieldStyle(.roundedBorder)
                        .disabled(store.loaded == nil)
                    if session.isGenerating {
                        Button("Stop", systemImage: "stop.fill") { session.stop() }
                    } else {
                        Button("Send", systemImage: "arrow.up.circle.fill") {
                            guard let loaded = store.loaded else { return }
                            session.send(draft, using: loaded, host: store.host)
                            draft = ""
                        }
                        .disabled(store.loaded == nil || draft.isEmpty)
                    }
                }
                .padding()
            }
            .navigationTitle(store.loaded?.package.displayName ?? "Chat")
            .toolbar {
                Button("Settings", systemImage: "slider.horizontal.3") { showSettings = true }
                Button("Clear", systemImage: "trash") { session.clear() }
            }
            .sheet(isPresented: $showSettings) { SamplingSettingsView(session: session) }
        }
    }
}

/// Sampling knobs; the defaults mirror `elmexport generate` so host and device runs can be compared.
private struct SamplingSettingsView: View {
    @Bindable var session: ChatSession
    @Environment(\.dismiss) private var dismiss

    var body: some View {
        NavigationStack {
            Form {
                Section("System prompt") { TextField("The package's own", text: $session.systemPrompt, axis: .vertical) }
                Section("Sampling") {
                    Stepper(String(format: "Temperature %.2f (0 = greedy)", session.sampling.temperature),
                            value: $session.sampling.temperature, in: 0...2, step: 0.05)
                    Stepper("Top-k \(session.sampling.topK) (0 = off)", value: $session.sampling.topK, in: 0...200)
                    Stepper(String(format: "Top-p %.2f", session.sampling.topP), value: $session.sampling.topP, in: 0.05...1, step: 0.05)
                    Stepper(String(format: "Repetition penalty %.2f", session.sampling.repetitionPenalty),
                            value: $session.sampling.repetitionPenalty, in: 1...2, step: 0.05)
                    Stepper("Max new tokens \(session.maxNewTokens)", value: $session.maxNewTokens, in: 16...2048, step: 16)
                }
            }
            .navigationTitle("Settings")
            .toolbar { Button("Done") { dismiss() } }
        }
    }
}
#endif
