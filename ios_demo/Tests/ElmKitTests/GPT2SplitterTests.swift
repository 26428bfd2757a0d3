import Testing
@testable import ElmKit

/// Hand-worked cases of the GPT-2 pattern (incl. the example in `tokenizers`' own ByteLevel tests).
@Suite struct GPT2SplitterTests {
    func split(_ s: String) -> [String] { GPT2Splitter.split(Array(s.unicodeScalars)).map(\.string) }

    @Test func wordsKeepTheirLeadingSpace() {
        #expect(split("Hello my friend, how is your day going?") ==
                ["Hello", " my", " friend", ",", " how", " is", " your", " day", " going", "?"])
    }

    @Test func whitespaceRunLeavesOneSpaceForTheNextWord() {
        #expect(split("a   b") == ["a", "  ", " b"])
        #expect(split("a \n\tb") == ["a", " \n", "\t", "b"])
        #expect(split("end   ") == ["end", "   "])
    }

    @Test func contractionsNumbersAndSymbols() {
        #expect(split("I'm here, it's 2024!") == ["I", "'m", " here", ",", " it", "'s", " 2024", "!"])
        #expect(split("DON'T 'll") == ["DON", "'", "T", " '", "ll"])
        #expect(split("x²+½") == ["x", "²", "+", "½"])
        #expect(split("…!! ok") == ["…!!", " ok"])
    }

    @Test func unicodeLettersAndSpaces() {
        #expect(split("naïve 日本\u{3000}x") == ["naïve", " 日本", "\u{3000}", "x"])
        #expect(split("e\u{301}t") == ["e", "\u{301}", "t"])  // a combining mark is not a letter
    }
}
