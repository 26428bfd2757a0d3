import Foundation
import Testing
@testable import ElmKit

/// Chat prompts: literal expectations taken from the model cards' formats, and the fixture prompts rendered by
/// make_fixtures.py's independent Python renderer, tokenized by the reference library.
@Suite struct ChatTemplateTests {
    @Test func chatmlMatchesTheLiteralFormat() {
        let text = ChatTemplate.chatml.render([.system("Be brief."), .user("Hi")])
        #expect(text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test func openelmMatchesTheLiteralFormat() {
        let text = ChatTemplate.openelm.render([.system("Be brief."), .user("Hi"), .assistant("Hello"), .user("Bye")])
        #expect(text == "<|system|>\nBe brief.</s><|user|>\nHi</s><|assistant|>\nHello</s><|user|>\nBye</s><|assistant|>\n")
    }

    @Test func generationPromptCanBeLeftOut() {
        #expect(ChatTemplate.chatml.render([.user("Q")], addGenerationPrompt: false) == "<|im_start|>user\nQ<|im_end|>\n")
        #expect(ChatTemplate.openelm.render([.user("Q")], addGenerationPrompt: false) == "<|user|>\nQ</s>")
    }

    @Test func defaultSystemPromptOnlyWhenTheFirstMessageIsNotSystem() {
        let withDefault = ChatTemplate.chatml.render([.user("Q")], defaultSystemPrompt: "You are SmolLM.")
        #expect(withDefault.hasPrefix("<|im_start|>system\nYou are SmolLM.<|im_end|>\n<|im_start|>user\nQ"))
        let explicit = ChatTemplate.chatml.render([.system("Mine"), .user("Q")], defaultSystemPrompt: "You are SmolLM.")
        #expect(!explicit.contains("SmolLM"))
        #expect(ChatTemplate.plain.render([.user("Q")], defaultSystemPrompt: "S") == "Q")
    }

    @Test func manifestValuesSelectTheTemplate() {
        #expect(ChatTemplate(manifestValue: "chatml") == .chatml)
        #expect(ChatTemplate(manifestValue: "openelm") == .openelm)
        #expect(ChatTemplate(manifestValue: nil) == .plain)
        #expect(ChatTemplate(manifestValue: "jinja-something") == .plain)
        #expect(ChatTemplate.plain.render([.user("a"), .user(" b")]) == "a b")
    }

    /// Fixture prompts come from `elmexport.chat.render_chat`; ids from the `tokenizers` library.
    @Test(arguments: [("bytelevel_bpe", ChatTemplate.chatml), ("sentencepiece_bpe", ChatTemplate.openelm)])
    func fixturePromptsRenderAndTokenizeLikeTheReference(layout: String, template: ChatTemplate) throws {
        let tokenizer = try Fixtures.tokenizer(layout)
        let chats = try #require(try Fixtures.json("\(layout)/expected.json")["chat"]?.arrayValue)
        #expect(chats.count >= 5)
        var used: Set<ChatTemplate> = []
        for chat in chats {
            let chosen = ChatTemplate(manifestValue: chat["template"]?.stringValue)
            used.insert(chosen)
            let messages = (chat["messages"]?.arrayValue ?? []).map {
                ChatMessage(role: $0["role"]?.stringValue ?? "", content: $0["content"]?.stringValue ?? "")
            }
            let prompt = chosen.render(messages, defaultSystemPrompt: chat["system_prompt"]?.stringValue)
            #expect(Array(prompt.utf8) == Array((chat["prompt"]?.stringValue ?? "").utf8))
            #expect(tokenizer.encode(prompt, addSpecialTokens: true) == Fixtures.ints(chat["ids"]))
        }
        #expect(used == [template, .plain])
    }

    @Test func openelmPromptStartsWithBOSAndSeparatesEOS() throws {
        // <s> = 1 and </s> = 2 in the Llama-2 layout: the BOS comes from the tokenizer, each </s> stays one id.
        let tokenizer = try Fixtures.tokenizer("sentencepiece_bpe")
        let ids = tokenizer.encode(ChatTemplate.openelm.render([.user("Hi"), .assistant("Yo"), .user("Go")]), addSpecialTokens: true)
        #expect(ids.first == 1)
        #expect(ids.filter { $0 == 2 }.count == 3)
        #expect(ids.filter { $0 == 1 }.count == 1)
    }
}
