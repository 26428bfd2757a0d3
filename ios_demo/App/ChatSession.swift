#if canImport(SwiftUI)
import ElmKit
import Foundation
import Observation

/// The conversation shown by `ChatView`, and the background generation that streams into it.
@MainActor @Observable
final class ChatSession {
    struct Turn: Identifiable {
        let id = UUID()
        let role: String
        var text: String
    }

    private(set) var turns: [Turn] = []
    private(set) var isGenerating = false
    private(set) var lastStats: GenerationStats?
    private(set) var finishReason: FinishReason?
    var systemPrompt = ""
    var sampling = SamplingParameters(temperature: 0.7, topK: 40, topP: 0.9, repetitionPenalty: 1.1, seed: 42)
    var maxNewTokens = 256
    @ObservationIgnored private var task: Task<Void, Never>?

    func clear() {
        stop()
        turns = []
        lastStats = nil
    }

    func stop() { task?.cancel() }

    /// Adds streamed text to a turn, unless the conversation was cleared meanwhile.
    private func append(_ text: String, at index: Int) {
        guard turns.indices.contains(index) else { return }
        turns[index].text += text
    }

    func send(_ text: String, using loaded: ModelStore.LoadedModel) {
        guard !isGenerating, !text.isEmpty else { return }
        turns.append(Turn(role: "user", text: text))
        var messages = turns.map { ChatMessage(role: $0.role, content: $0.text) }
        if !systemPrompt.isEmpty { messages.insert(.system(systemPrompt), at: 0) }
        turns.append(Turn(role: "assistant", text: ""))
        let index = turns.count - 1

        let template = loaded.package.chatTemplate
        let prompt = loaded.tokenizer.encode(template.render(messages), addSpecialTokens: true)
        let config = GenerationConfig(maxNewTokens: maxNewTokens, sampling: sampling,
                                      stopTokenIds: Set(loaded.package.manifest.eosTokenIds),
                                      stopStrings: template.stopStrings)
        let generator = Generator(model: loaded.model, tokenizer: loaded.tokenizer)
        isGenerating = true
        finishReason = nil

        task = Task.detached(priority: .userInitiated) { [self] in  // the session outlives its generations
            let result: GenerationResult?
            do {
                result = try generator.generate(prompt: prompt, config: config) { event in
                    let text = event.text, stats = event.stats
                    // The main queue keeps deltas in order (unstructured tasks need not).
                    DispatchQueue.main.async {
                        MainActor.assumeIsolated {
                            self.append(text, at: index)
                            self.lastStats = stats
                        }
                    }
                    return !Task.isCancelled
                }
            } catch {
                let message = "\(error)"
                await MainActor.run { self.append("\n[error: \(message)]", at: index) }
                result = nil
            }
            await MainActor.run {
                if let result, self.turns.indices.contains(index) {
                    self.turns[index].text = result.text  // includes text held back for an unfinished stop string
                    self.lastStats = result.stats
                    self.finishReason = result.finishReason
                }
                self.isGenerating = false
            }
        }
    }
}
#endif
