import Testing
@testable import ElmKit

/// Streaming detokenization and stop strings: what the chat view shows token by token.
@Suite struct StreamingTextTests {
    @Test(arguments: ["bytelevel_bpe", "sentencepiece_bpe"])
    func streamedDeltasAddUpToTheReferenceDecoding(layout: String) throws {
        // Reference: the text `tokenizers` decodes from all ids at once (fixture), incl. split UTF-8 characters.
        let tokenizer = try Fixtures.tokenizer(layout)
        let cases = try #require(try Fixtures.json("\(layout)/expected.json")["cases"]?.arrayValue)
        var failures: [String] = []
        for c in cases {
            var stream = StreamingDetokenizer(tokenizer: tokenizer)
            let streamed = Fixtures.ints(c["ids"]).map { stream.step($0) }.joined()
            let expected = c["decoded"]?.stringValue ?? ""
            if Array(streamed.utf8) != Array(expected.utf8) { failures.append(expected) }
        }
        #expect(failures.count == 0, "first: \(failures.prefix(3).map(\.debugDescription))")
    }

    @Test func incompleteCharactersAreHeldBack() throws {
        let tokenizer = try Fixtures.tokenizer("bytelevel_bpe")
        let ids = tokenizer.encode("😀", addSpecialTokens: false)
        #expect(ids.count == 4)  // one byte-level token per UTF-8 byte in this small vocabulary
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        #expect(ids.map { stream.step($0) } == ["", "", "", "😀"])
    }

    @Test func stopStringSplitAcrossChunksIsCaught() {
        var m = StopStringMatcher(["</s>"])
        #expect(m.feed("ab") == "ab")
        #expect(m.feed("c</") == "c")
        #expect(m.feed("s>tail") == "")
        #expect(m.stopped)
        #expect(m.feed("more") == "")
        #expect(m.flush() == "")
    }

    @Test func heldTextIsReleasedWhenItCannotBeAStop() {
        var m = StopStringMatcher(["\nUser:", "###"])
        #expect(m.feed("x\nUs") == "x")
        #expect(m.feed("ually") == "\nUsually")
        #expect(m.feed("#") == "")
        #expect(m.flush() == "#")
        #expect(!m.stopped)
    }

    @Test func earliestStopWins() {
        var m = StopStringMatcher(["BB", "A"])
        #expect(m.feed("xxBBA") == "xx")
        #expect(m.stopped)
    }

    @Test func noStopStringsPassEverythingThrough() {
        var m = StopStringMatcher([])
        #expect(m.feed("<") == "<")
        #expect(m.flush() == "")
    }
}
