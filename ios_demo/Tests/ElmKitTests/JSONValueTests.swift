import Foundation
import Testing
@testable import ElmKit

/// The byte-exact JSON reader that tokenizer.json and the fixtures go through.
@Suite struct JSONValueTests {
    @Test func parsesScalarsArraysAndObjectsInOrder() throws {
        let v = try JSONValue.parse(#"{"b": [1, -2.5e3, true, null], "a": {"x": "y"}, "c": false}"#)
        #expect(v.objectValue?.map(\.key) == ["b", "a", "c"])
        #expect(v["b"]?[0]?.intValue == 1)
        #expect(v["b"]?[1]?.doubleValue == -2500)
        #expect(v["b"]?[2]?.boolValue == true)
        #expect(v["b"]?[3]?.isNull == true)
        #expect(v["a"]?["x"]?.stringValue == "y")
        #expect(v["missing"] == nil)
    }

    @Test func decodesEscapesAndSurrogatePairs() throws {
        let v = try JSONValue.parse(#"["\u0120\n\t\"\\\/", "\ud83d\ude00", "\u00e9"]"#)
        #expect(v[0]?.stringValue == "Ġ\n\t\"\\/")
        #expect(v[1]?.stringValue == "😀")
        #expect(v[2]?.stringValue.map { Array($0.unicodeScalars) } == ["\u{E9}"])
    }

    @Test func canonicallyEquivalentKeysStayDistinct() throws {
        // "é" precomposed and "e" + combining acute are equal as Swift Strings but are different tokens.
        let v = try JSONValue.parse("{\"\u{E9}\": 1, \"e\u{301}\": 2}")
        #expect(v.objectValue?.count == 2)
        #expect(v["e\u{301}"]?.intValue == 2)
        #expect(v["\u{E9}"]?.intValue == 1)
    }

    @Test func floatsRoundTripExactly() throws {
        // Python repr of the float32 value 0.1 widened to float64.
        let v = try JSONValue.parse("[0.10000000149011612, 5e-324, 1.7976931348623157e308]")
        #expect(v[0]?.doubleValue == Double(Float(0.1)))
        #expect(v[1]?.doubleValue == Double.leastNonzeroMagnitude)
        #expect(v[2]?.doubleValue == Double.greatestFiniteMagnitude)
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\" 1}", "tru", "[1] x", "\"\\q\"", "\"a\nb\"", "1e999"])
    func rejectsMalformedInput(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }
}
