import Foundation
@testable import ElmKit

/// A small JSON Schema checker (the keywords device_report.schema.json uses: type, const, enum, required,
/// properties, additionalProperties: false, items, minItems, minimum, minLength), so the Swift side is held to
/// the same file that Python validates with `jsonschema`. Unknown keywords are ignored.
enum SchemaCheck {
    static func errors(_ value: JSONValue, against schema: JSONValue, at path: String = "$") -> [String] {
        var out: [String] = []
        if let types = schema["type"] {
            let allowed = types.arrayValue?.compactMap(\.stringValue) ?? [types.stringValue ?? ""]
            if !allowed.contains(where: { matches(value, type: $0) }) { out.append("\(path): not \(allowed)") }
        }
        if let c = schema["const"], c != value { out.append("\(path): not the constant") }
        if let options = schema["enum"]?.arrayValue, !options.contains(value) { out.append("\(path): not in enum") }
        if let min = schema["minimum"]?.doubleValue, let v = value.doubleValue, v < min { out.append("\(path): below \(min)") }
        if let min = schema["minLength"]?.intValue, let s = value.stringValue, s.unicodeScalars.count < min { out.append("\(path): too short") }
        if let members = value.objectValue {
            for key in schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where value[key] == nil {
                out.append("\(path): missing \(key)")
            }
            let properties = schema["properties"]
            for (key, child) in members {
                if let sub = properties?[key] {
                    out += errors(child, against: sub, at: "\(path).\(key)")
                } else if schema["additionalProperties"]?.boolValue == false {
                    out.append("\(path): unexpected \(key)")
                }
            }
        }
        if let items = value.arrayValue {
            if let min = schema["minItems"]?.intValue, items.count < min { out.append("\(path): fewer than \(min) items") }
            if let sub = schema["items"] {
                for (i, item) in items.enumerated() { out += errors(item, against: sub, at: "\(path)[\(i)]") }
            }
        }
        return out
    }

    private static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("number", .number), ("string", .string), ("array", .array), ("object", .object):
            return true
        case ("integer", .number(let n)): return n.rounded() == n
        default: return false
        }
    }

    static let deviceReportSchema: JSONValue = {
        let url = Fixtures.root.deletingLastPathComponent().appendingPathComponent("Schemas/device_report.schema.json")
        return try! JSONValue.parse(contentsOf: url)
    }()
}
