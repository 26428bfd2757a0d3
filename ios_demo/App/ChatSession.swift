#if canImport(SwiftUI)
import ElmKit
import Foundation
import Observation

/// The conversation shown by `ChatView`, and the generation that streams into it.
///
/// Every turn goes through the store's `ModelHost` with cache reuse: only the tokens after what the KV cache
/// already holds are prefilled. `ChatConversation` keeps the prompt inside the context, dropping the oldest
/// exchanges when needed; `trimNotice` says so on screen.
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
    /// Shown above the input when earlier messages no longer fit the context, or when the package's chat template
    /// is one the app does not render.
    private(set) var trimNotice: String?
    /// Empty: the package's own system prompt (manifest `system_prompt`).
    var systemPrompt = ""
    var sampling = SamplingParameters(temperature: 0.7, topK: 40, topP: 0.9, repetitionPenalty: 1.1, seed: 42)
    var maxNewTokens = 256
    @ObservationIgnored private var conversation: ChatConversation?
    @ObservationIgnored private var conversationPackageID: String?
    @ObservationIgnored private var task: Task<Void, Never>?

    func clear() {
        stop()
        turns = []
        lastStats = nil
        trimNotice = nil
        conversation?.clear()
    }

    func stop() { task?.cancel() }

    private func append(_ text: String, at index: Int) {
        guard turns.indices.contains(index) else { return }
        turns[index].text += text
    }

    func send(_ text: String, using loaded: ModelStore.LoadedModel, host: ModelHost) {
        guard !isGenerating, !text.isEmpty else { return }
        if conversationPackageID != loaded.package.id || conversation == nil {
            conversation = ChatConversation(package: loaded.package)
            conversationPackageID = loaded.package.id
        }
        guard var conversation else { return }
        conversation.systemPrompt = systemPrompt.isEmpty ? loaded.package.manifest.systemPrompt : systemPrompt
        let tokenizer = loaded.tokenizer
        let prompt: [Int]
        do {
            prompt = try conversation.prompt(adding: text, encode: { tokenizer.encode($0, addSpecialTokens: true) },
                                             contextLength: loaded.info.contextLength, replyRoom: min(maxNewTokens, loaded.info.contextLength / 4))
        } catch {
            trimNotice = "\(error)"
            return
        }
        let trimmed = conversation.droppedMessages > 0
            ? "The \(conversation.droppedMessages) oldest messages no longer fit the \(loaded.info.contextLength)-token context; the model does not see them."
            : nil
        let notices = [conversation.templateNotice, trimmed].compactMap { $0 }
        trimNotice = notices.isEmpty ? nil : notices.joined(separator: " ")
        turns.append(Turn(role: "user", text: text))
        turns.append(Turn(role: "assistant", text: ""))
        let index = turns.count - 1
        let config = GenerationConfig(maxNewTokens: maxNewTokens, sampling: sampling,
                                      stopTokenIds: Set(loaded.package.manifest.eosTokenIds),
                                      stopStrings: conversation.template.stopStrings)
        self.conversation = conversation
        isGenerating = true
        finishReason = nil

        task = Task { [weak self] in
            let outcome = await Result(awaiting: {
                try await host.generate(prompt: prompt, config: config, reuseCache: true, tokenizer: tokenizer) { [weak self] event in
                    let delta = event.text, stats = event.stats
                    DispatchQueue.main.async { [weak self] in  // the main queue keeps deltas in order (tasks need not)
                        MainActor.assumeIsolated {
                            self?.append(delta, at: index)
                            self?.lastStats = stats
                        }
                    }
                }
            })
            guard let self else { return }
            switch outcome {
            case let .success(result):
                if turns.indices.contains(index) { turns[index].text = result.text }  // includes held-back text
                lastStats = result.stats
                finishReason = result.finishReason
                self.conversation?.appendReply(result.text)
            case let .failure(error):
                append("\n[error: \(error)]", at: index)
                self.conversation?.appendReply(turns.indices.contains(index) ? turns[index].text : "")
            }
            isGenerating = false
        }
    }
}

extension Result where Failure == Error {
    /// `Result(catching:)` for async work.
    init(awaiting body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
#endif
