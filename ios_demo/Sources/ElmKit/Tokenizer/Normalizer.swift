/// The `normalizer` section of tokenizer.json: rewrites text before pre-tokenization.
///
/// Implemented: Prepend, Replace (string pattern) and Sequence -- what Llama-2 / OpenELM use
/// (`Sequence[Prepend("▁"), Replace(" ", "▁")]`); byte-level models such as SmolLM2 have none.
indirect enum Normalizer {
    case prepend([Unicode.Scalar])
    case replace(pattern: [Unicode.Scalar], content: [Unicode.Scalar])
    case sequence([Normalizer])

    init(json: JSONValue) throws {
        guard let type = json["type"]?.stringValue else { throw TokenizerError.malformed("normalizer without type") }
        switch type {
        case "Prepend":
            guard let p = json["prepend"]?.stringValue else { throw TokenizerError.malformed("Prepend without prepend") }
            self = .prepend(Array(scalarsOf: p))
        case "Replace":
            self = try Normalizer.replacement(json)
        case "Sequence":
            guard let items = json["normalizers"]?.arrayValue else { throw TokenizerError.malformed("Sequence without normalizers") }
            self = .sequence(try items.map(Normalizer.init(json:)))
        default:
            throw TokenizerError.unsupported("normalizer \(type)")
        }
    }

    /// Reads `{"pattern": {"String": "..."}, "content": "..."}`; regex patterns are not supported.
    static func replacement(_ json: JSONValue) throws -> Normalizer {
        guard let content = json["content"]?.stringValue else { throw TokenizerError.malformed("Replace without content") }
        guard let pattern = json["pattern"]?["String"]?.stringValue else {
            throw TokenizerError.unsupported("Replace with a regex pattern")
        }
        return .replace(pattern: Array(scalarsOf: pattern), content: Array(scalarsOf: content))
    }

    func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        switch self {
        case let .prepend(p): return text.isEmpty ? text : p + text  // tokenizers skips empty strings
        case let .replace(pattern, content): return text.replacing(pattern, with: content)
        case let .sequence(items): return items.reduce(text) { $1.normalize($0) }
        }
    }
}
