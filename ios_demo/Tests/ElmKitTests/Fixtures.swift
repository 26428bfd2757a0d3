import Foundation
@testable import ElmKit

/// Locates ios_demo/Fixtures (written by make_fixtures.py) from this source file, so tests need no bundle resources.
enum Fixtures {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // ElmKitTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // ios_demo
        .appendingPathComponent("Fixtures")

    static func json(_ relativePath: String) throws -> JSONValue {
        try JSONValue.parse(contentsOf: root.appendingPathComponent(relativePath))
    }

    static func tokenizer(_ name: String) throws -> Tokenizer {
        try Tokenizer(contentsOf: root.appendingPathComponent(name).appendingPathComponent("tokenizer.json"))
    }

    /// The integer list at `key` of a fixture case.
    static func ints(_ value: JSONValue?) -> [Int] { value?.arrayValue?.compactMap(\.intValue) ?? [] }
}
