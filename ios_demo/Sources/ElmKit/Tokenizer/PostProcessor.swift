/// The `post_processor` section of tokenizer.json: adds special tokens around an encoded single sequence.
///
/// Implemented: TemplateProcessing (Llama-2 / OpenELM prepend `<s>`), ByteLevel (changes offsets only, so
/// nothing for ids) and Sequence. Pairs of sequences are not needed for generation and are not supported.
indirect enum PostProcessor {
    /// Each element is either special-token ids to insert, or nil for the sequence itself.
    case template([[Int]?])
    case identity
    case sequence([PostProcessor])

    init(json: JSONValue) throws {
        guard let type = json["type"]?.stringValue else { throw TokenizerError.malformed("post_processor without type") }
        switch type {
        case "ByteLevel": self = .identity
        case "TemplateProcessing":
            guard let single = json["single"]?.arrayValue else { throw TokenizerError.malformed("TemplateProcessing without single") }
            var parts: [[Int]?] = []
            for piece in single {
                if let special = piece["SpecialToken"] {
                    guard let name = special["id"]?.stringValue,
                          let ids = json["special_tokens"]?[name]?["ids"]?.arrayValue?.compactMap(\.intValue)
                    else { throw TokenizerError.malformed("TemplateProcessing special token without ids") }
                    parts.append(ids)
                } else if let seq = piece["Sequence"] {
                    guard seq["id"]?.stringValue == "A" else { throw TokenizerError.malformed("single template uses $B") }
                    parts.append(nil)
                } else {
                    throw TokenizerError.malformed("TemplateProcessing piece")
                }
            }
            self = .template(parts)
        case "Sequence":
            guard let items = json["processors"]?.arrayValue else { throw TokenizerError.malformed("Sequence without processors") }
            self = .sequence(try items.map(PostProcessor.init(json:)))
        default:
            throw TokenizerError.unsupported("post_processor \(type)")
        }
    }

    func process(_ ids: [Int]) -> [Int] {
        switch self {
        case .identity: return ids
        case let .sequence(items): return items.reduce(ids) { $1.process($0) }
        case let .template(parts): return parts.flatMap { $0 ?? ids }
        }
    }
}
