/// Why a tokenizer.json could not be used; the message names the component so an unsupported model is obvious.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    case unsupported(String)
    case malformed(String)

    public var description: String {
        switch self {
        case let .unsupported(what): return "tokenizer.json uses something ElmKit does not implement: \(what)"
        case let .malformed(what): return "tokenizer.json is malformed: \(what)"
        }
    }
}
