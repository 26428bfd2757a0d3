/// One turn of a conversation.
public struct ChatMessage: Equatable, Sendable, Codable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: "system", content: text) }
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: "user", content: text) }
    public static func assistant(_ text: String) -> ChatMessage { ChatMessage(role: "assistant", content: text) }
}

/// Prompt formats of the supported instruct models, named as in the package manifest's `chat_template`.
///
/// Why hard-coded rather than Jinja: the two families need only these strings, and a Jinja interpreter would be
/// far larger than the rest of ElmKit. BOS is not written here: for OpenELM the tokenizer's post-processor adds
/// `<s>` (encode with `addSpecialTokens: true`); ChatML models have no BOS.
public enum ChatTemplate: String, Sendable, CaseIterable {
    /// SmolLM2-Instruct and other ChatML models: `<|im_start|>{role}\n{content}<|im_end|>\n`.
    case chatml
    /// OpenELM-Instruct: `<|{role}|>\n{content}</s>`, generation prompt `<|assistant|>\n`.
    case openelm
    /// Base models (manifest `chat_template: null`): message contents concatenated, no markup.
    case plain

    /// The manifest value (`"chatml"`, `"openelm"`, or null / unknown → `.plain`).
    public init(manifestValue: String?) {
        self = manifestValue.flatMap(ChatTemplate.init(rawValue:)) ?? .plain
    }

    /// What to tell the user when a manifest's `chat_template` is one ElmKit does not render: the exporter keeps a
    /// checkpoint's own Jinja template when it renders differently from ChatML and OpenELM's format, and such a
    /// package's prompts then go out as plain text (`.plain`), which the model was not trained on. Nil for the
    /// named formats and for base models (null).
    public static func unsupportedNotice(manifestValue: String?) -> String? {
        guard let value = manifestValue, ChatTemplate(rawValue: value) == nil else { return nil }
        return "This package's chat template is its checkpoint's own, which the app does not render (it renders "
            + "ChatML and OpenELM's format): messages are sent as plain text, so replies may be poor."
    }

    /// The strings that end an assistant turn; generation stops when one appears.
    public var stopStrings: [String] {
        switch self {
        case .chatml: return ["<|im_end|>"]
        case .openelm: return ["</s>"]
        case .plain: return []
        }
    }

    /// The prompt text for `messages`, exactly as `elmexport.chat.render_chat` renders it (the fixtures hold
    /// Swift to that). `defaultSystemPrompt` is put first unless the first message is already a system message
    /// (ignored by `.plain`); `addGenerationPrompt` opens the assistant turn.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, defaultSystemPrompt: String? = nil) -> String {
        var turns = messages
        if let defaultSystemPrompt, !defaultSystemPrompt.isEmpty, turns.first?.role != "system" {
            turns.insert(.system(defaultSystemPrompt), at: 0)
        }
        switch self {
        case .chatml:
            var text = turns.map { "<|im_start|>\($0.role)\n\($0.content)<|im_end|>\n" }.joined()
            if addGenerationPrompt { text += "<|im_start|>assistant\n" }
            return text
        case .openelm:
            var text = turns.map { "<|\($0.role)|>\n\($0.content)</s>" }.joined()
            if addGenerationPrompt { text += "<|assistant|>\n" }
            return text
        case .plain:
            return messages.map(\.content).joined()
        }
    }
}
