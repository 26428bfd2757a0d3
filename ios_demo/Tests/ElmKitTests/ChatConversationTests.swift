import Foundation
import Testing
@testable import ElmKit

/// Multi-turn chat: prompts from the package's template and system prompt, trimming at the context limit, and
/// cache reuse across turns driven through the generator (fake model that checks positions).
@Suite struct ChatConversationTests {
    let tokenizer: Tokenizer
    init() throws { tokenizer = try Fixtures.tokenizer("bytelevel_bpe") }

    func encode(_ text: String) -> [Int] { tokenizer.encode(text, addSpecialTokens: true) }

    @Test func usesTheManifestsTemplateAndSystemPrompt() throws {
        let manifest = try ModelManifest(contentsOf: Fixtures.root.appendingPathComponent("coreml_engine/manifest.json"))
        let package = ModelPackage(directory: URL(fileURLWithPath: "/nonexistent"), manifest: manifest)
        var chat = ChatConversation(package: package)
        #expect(chat.systemPrompt == "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        var rendered = ""
        _ = try chat.prompt(adding: "Hi", encode: { rendered = $0; return [1] }, contextLength: 512, replyRoom: 8)
        #expect(rendered == "<|im_start|>system\n\(manifest.systemPrompt!)<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test func aTemplateTheAppCannotRenderIsSaidAndSentAsPlainText() throws {
        // The exporter keeps a checkpoint's own Jinja template (manifest chat_template holds its text) when it
        // renders unlike both named formats.
        let jinja = #"{% for message in messages %}{{ '### ' + message['role'] + ': ' + message['content'] }}{% endfor %}"#
        let manifest = ModelManifest(json: .object([("chat_template", .string(jinja)), ("system_prompt", .string("Be brief."))]))
        var chat = ChatConversation(package: ModelPackage(directory: URL(fileURLWithPath: "/nonexistent"), manifest: manifest))
        #expect(chat.template == .plain)
        #expect(chat.templateNotice?.contains("plain text") == true)
        var rendered = ""
        _ = try chat.prompt(adding: "Hi", encode: { rendered = $0; return [1] }, contextLength: 512, replyRoom: 8)
        #expect(rendered == "Hi")
        for known in ["chatml", "openelm", nil] as [String?] {
            #expect(ChatTemplate.unsupportedNotice(manifestValue: known) == nil)
        }
        let real = try ModelManifest(contentsOf: Fixtures.root.appendingPathComponent("coreml_engine/manifest.json"))
        #expect(ChatConversation(package: ModelPackage(directory: URL(fileURLWithPath: "/nonexistent"), manifest: real)).templateNotice == nil)
    }

    @Test func dropsTheOldestExchangesAtTheContextLimit() throws {
        var chat = ChatConversation(template: .chatml, systemPrompt: "Be brief.")
        let context = 160, room = 32
        var dropped: [Int] = []
        for turn in 1...12 {
            let ids = try chat.prompt(adding: "Question number \(turn): what does the licence say about copies?",
                                      encode: encode, contextLength: context, replyRoom: room)
            #expect(ids.count <= context - room)
            #expect(chat.visibleMessages.last == .user("Question number \(turn): what does the licence say about copies?"))
            #expect(chat.visibleMessages.first?.role == "user")  // exchanges go whole: no orphaned reply first
            chat.appendReply("It says you may copy it, turn \(turn).")
            dropped.append(chat.droppedMessages)
        }
        #expect(dropped.first == 0)
        #expect(dropped.last! > 0)
        #expect(dropped == dropped.sorted())
        // The system prompt is never dropped.
        let ids = try chat.prompt(adding: "Last one?", encode: encode, contextLength: context, replyRoom: room)
        #expect(tokenizer.decode(ids, skipSpecialTokens: false).hasPrefix("<|im_start|>system\nBe brief."))
    }

    @Test func aMessageThatCannotFitIsRefusedAndNotKept() throws {
        var chat = ChatConversation(template: .chatml, systemPrompt: nil)
        let long = String(repeating: "copies of the licence ", count: 40)
        #expect(throws: ChatConversation.ConversationError.self) {
            try chat.prompt(adding: long, encode: encode, contextLength: 64, replyRoom: 8)
        }
        #expect(chat.messages.isEmpty)
    }

    @Test func laterTurnsPrefillOnlyTheirNewTokens() throws {
        let model = CachedHashModel(vocabularySize: tokenizer.vocabularySize)
        let generator = Generator(model: model, tokenizer: tokenizer)
        var chat = ChatConversation(template: .chatml, systemPrompt: "Be brief.")
        var reusedCounts: [Int] = []
        for turn in 1...4 {
            let ids = try chat.prompt(adding: "Turn \(turn)?", encode: encode, contextLength: 512, replyRoom: 16)
            let before = model.calls.count
            let result = try generator.generate(prompt: ids, config: GenerationConfig(maxNewTokens: 5), reuseCache: true)
            let promptCalls = model.calls[before...].filter { $0.position < ids.count }
            #expect(promptCalls.map(\.count).reduce(0, +) == ids.count - result.stats.reusedPromptTokens)
            #expect(promptCalls.first?.position == result.stats.reusedPromptTokens)
            // Reuse never changes the tokens: a fresh model given the whole prompt agrees.
            let fresh = CachedHashModel(vocabularySize: tokenizer.vocabularySize)
            let reference = try Generator(model: fresh, tokenizer: tokenizer).generate(prompt: ids, config: GenerationConfig(maxNewTokens: 5))
            #expect(result.tokens == reference.tokens)
            reusedCounts.append(result.stats.reusedPromptTokens)
            chat.appendReply(result.text)
        }
        #expect(reusedCounts[0] == 0)
        #expect(reusedCounts.dropFirst().allSatisfy { $0 > 10 })
        #expect(reusedCounts == reusedCounts.sorted())
    }
}

/// `HashModel`'s logits over a cache the generator can see (`KVReusingModel`), for cache-reuse tests.
final class CachedHashModel: HistoryModel, KVReusingModel {
    private let hash: HashModel
    var cachedTokens: [Int] { history }

    init(vocabularySize: Int) {
        hash = HashModel(seed: 3, vocabularySize: vocabularySize)
        super.init(vocabularySize: vocabularySize, contextLength: 512, prefillChunkLength: 8)
    }

    override func logits(after context: ArraySlice<Int>) -> [Float] { hash.logits(after: context) }
}
