/// A conversation's messages and the prompt they make, kept within the model's context.
///
/// Why trimming lives here: every turn's prompt is the whole conversation rendered with the package's template
/// and system prompt, so it grows until it no longer fits. When it would leave fewer than `replyRoom` positions
/// for the answer, the oldest user/assistant exchanges are dropped (the system prompt and the newest user message
/// always stay) and `droppedMessages` says how many, so the app can show that the model no longer sees them.
/// The prompt after a trim no longer extends the cached one, so the engine's cache reuse starts over by itself.
public struct ChatConversation: Sendable {
    public let template: ChatTemplate
    /// The manifest's `system_prompt` unless the user set one.
    public var systemPrompt: String?
    public private(set) var messages: [ChatMessage] = []
    /// Messages at the start of `messages` that no longer fit and are left out of the prompt.
    public private(set) var droppedMessages = 0
    /// Set when the package's template is one ElmKit does not render (see `ChatTemplate.unsupportedNotice`).
    public let templateNotice: String?

    public init(template: ChatTemplate, systemPrompt: String?, templateNotice: String? = nil) {
        self.template = template
        self.systemPrompt = systemPrompt
        self.templateNotice = templateNotice
    }

    public init(package: ModelPackage) {
        self.init(template: package.chatTemplate, systemPrompt: package.manifest.systemPrompt,
                  templateNotice: ChatTemplate.unsupportedNotice(manifestValue: package.manifest.chatTemplate))
    }

    public enum ConversationError: Error, Equatable, CustomStringConvertible {
        case messageTooLong(tokens: Int, contextLength: Int)
        public var description: String {
            switch self {
            case let .messageTooLong(t, n):
                return "the message needs \(t) tokens with the system prompt, more than the context of \(n) allows"
            }
        }
    }

    /// The messages the model sees.
    public var visibleMessages: ArraySlice<ChatMessage> { messages[droppedMessages...] }

    public mutating func clear() {
        messages = []
        droppedMessages = 0
    }

    /// Adds the assistant's reply (its text as shown, which is what the next prompt renders).
    public mutating func appendReply(_ text: String) { messages.append(.assistant(text)) }

    /// Adds `userText` and returns the prompt ids for the reply, dropping the oldest exchanges while fewer than
    /// `replyRoom` positions would be left. Throws when even the newest message alone does not fit (it is then
    /// not added).
    public mutating func prompt(adding userText: String, encode: (String) -> [Int], contextLength: Int, replyRoom: Int) throws -> [Int] {
        messages.append(.user(userText))
        let limit = contextLength - max(1, replyRoom)
        while true {
            let ids = encode(render(Array(messages[droppedMessages...])))
            if ids.count <= limit { return ids }
            guard droppedMessages < messages.count - 1 else {
                messages.removeLast()
                throw ConversationError.messageTooLong(tokens: ids.count, contextLength: contextLength)
            }
            // Drop one exchange: the oldest message, and the reply that answered it.
            droppedMessages += 1
            if droppedMessages < messages.count - 1, messages[droppedMessages].role == "assistant" { droppedMessages += 1 }
        }
    }

    private func render(_ turns: [ChatMessage]) -> String {
        template.render(turns, defaultSystemPrompt: systemPrompt)
    }
}
