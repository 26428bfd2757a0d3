import Foundation
import Testing
@testable import ElmKit

/// Golden comparison with the `tokenizers` library: ids and decoded text that make_fixtures.py recorded for a few
/// hundred lines of licence text plus hand-written hard cases, for both tokenizer layouts.
@Suite struct TokenizerGoldenTests {
    static let layouts = ["bytelevel_bpe", "sentencepiece_bpe"]

    @Test(arguments: layouts)
    func encodesEveryLineLikeTheReference(layout: String) throws {
        let tokenizer = try Fixtures.tokenizer(layout)
        let cases = try #require(try Fixtures.json("\(layout)/expected.json")["cases"]?.arrayValue)
        #expect(cases.count >= 200)
        var mismatches: [String] = []
        for c in cases {
            let text = try #require(c["text"]?.stringValue)
            let ids = tokenizer.encode(text, addSpecialTokens: false)
            if ids != Fixtures.ints(c["ids"]) { mismatches.append(text) }
        }
        #expect(mismatches.count == 0, "lines differ, first: \(mismatches.prefix(3).map { "\($0.debugDescription)" })")
    }

    @Test(arguments: layouts)
    func decodesEveryLineLikeTheReference(layout: String) throws {
        let tokenizer = try Fixtures.tokenizer(layout)
        let cases = try #require(try Fixtures.json("\(layout)/expected.json")["cases"]?.arrayValue)
        var mismatches: [String] = []
        for c in cases {
            let decoded = tokenizer.decode(Fixtures.ints(c["ids"]), skipSpecialTokens: true)
            if Array(decoded.utf8) != Array((c["decoded"]?.stringValue ?? "").utf8) { mismatches.append(decoded) }
        }
        #expect(mismatches.count == 0, "decodings differ, first: \(mismatches.prefix(3).map { "\($0.debugDescription)" })")
    }

    @Test(arguments: layouts)
    func appliesThePostProcessorAndKeepsSpecialsWhenAsked(layout: String) throws {
        let tokenizer = try Fixtures.tokenizer(layout)
        let cases = try #require(try Fixtures.json("\(layout)/expected.json")["with_special_tokens"]?.arrayValue)
        #expect(!cases.isEmpty)
        for c in cases {
            let text = try #require(c["text"]?.stringValue)
            let ids = tokenizer.encode(text, addSpecialTokens: true)
            #expect(ids == Fixtures.ints(c["ids"]), "\(text.debugDescription)")
            let decoded = tokenizer.decode(ids, skipSpecialTokens: false)
            #expect(Array(decoded.utf8) == Array((c["decoded"]?.stringValue ?? "").utf8), "\(text.debugDescription)")
        }
    }
}
