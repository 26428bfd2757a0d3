import Testing
@testable import ElmKit

/// Loading rules: unsupported tokenizer.json components fail loudly instead of tokenizing differently.
@Suite struct TokenizerLoadingTests {
    static func tokenizerJSON(model: String = #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#,
                              normalizer: String = "null", preTokenizer: String = "null") -> String {
        #"{"added_tokens": [], "normalizer": \#(normalizer), "pre_tokenizer": \#(preTokenizer), "post_processor": null, "decoder": null, "model": \#(model)}"#
    }

    @Test func minimalBPEWithStringMerges() throws {
        let tokenizer = try Tokenizer(json: JSONValue.parse(Self.tokenizerJSON()))
        #expect(tokenizer.encode("abab") == [2, 2])
        #expect(tokenizer.encode("ba") == [1, 0])
        #expect(tokenizer.decode([2, 1]) == "ab b")  // no decoder: tokens joined by spaces, as in tokenizers
        #expect(tokenizer.vocabularySize == 3)
        #expect(tokenizer.tokenId(for: "ab") == 2)
        #expect(tokenizer.token(for: 1) == "b")
    }

    @Test func unknownCharactersBecomeOneFusedUnk() throws {
        let model = #"{"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "vocab": {"<unk>": 0, "a": 1}, "merges": []}"#
        let tokenizer = try Tokenizer(json: JSONValue.parse(Self.tokenizerJSON(model: model)))
        #expect(tokenizer.encode("xya") == [0, 1])
        let unfused = model.replacingOccurrences(of: #""fuse_unk": true"#, with: #""fuse_unk": false"#)
        #expect(try Tokenizer(json: JSONValue.parse(Self.tokenizerJSON(model: unfused))).encode("xya") == [0, 0, 1])
    }

    @Test(arguments: [
        tokenizerJSON(model: #"{"type": "WordPiece", "vocab": {}}"#),
        tokenizerJSON(normalizer: #"{"type": "NFKC"}"#),
        tokenizerJSON(preTokenizer: #"{"type": "Split", "pattern": {"Regex": "\\s"}, "behavior": "Isolated"}"#),
        tokenizerJSON(normalizer: #"{"type": "Replace", "pattern": {"Regex": " +"}, "content": " "}"#),
    ])
    func unsupportedComponentsAreRejected(json: String) {
        #expect(throws: TokenizerError.self) { try Tokenizer(json: JSONValue.parse(json)) }
    }

    @Test func mergeThatUsesAnUnknownTokenIsMalformed() {
        let model = #"{"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "z"]]}"#
        #expect(throws: TokenizerError.malformed("merge #0 uses unknown tokens")) {
            try Tokenizer(json: JSONValue.parse(Self.tokenizerJSON(model: model)))
        }
    }
}
