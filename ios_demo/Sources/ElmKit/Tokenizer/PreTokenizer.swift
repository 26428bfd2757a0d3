/// The `pre_tokenizer` section of tokenizer.json: cuts normalized text into the words that BPE sees.
///
/// Implemented: ByteLevel (GPT-2 split + byte-to-character mapping), Digits, and Sequence -- SmolLM2's
/// `Sequence[Digits(individual_digits), ByteLevel(add_prefix_space: false)]`. A null pre-tokenizer (Llama-2)
/// leaves each normalized segment as one word.
indirect enum PreTokenizer {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case digits(individual: Bool)
    case sequence([PreTokenizer])

    init(json: JSONValue) throws {
        guard let type = json["type"]?.stringValue else { throw TokenizerError.malformed("pre_tokenizer without type") }
        switch type {
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: json["add_prefix_space"]?.boolValue ?? true,
                              useRegex: json["use_regex"]?.boolValue ?? true)
        case "Digits":
            self = .digits(individual: json["individual_digits"]?.boolValue ?? false)
        case "Sequence":
            guard let items = json["pretokenizers"]?.arrayValue else { throw TokenizerError.malformed("Sequence without pretokenizers") }
            self = .sequence(try items.map(PreTokenizer.init(json:)))
        default:
            throw TokenizerError.unsupported("pre_tokenizer \(type)")
        }
    }

    /// Applies this step to every piece; empty pieces are dropped (BPE gives them no tokens anyway).
    func split(_ pieces: [[Unicode.Scalar]]) -> [[Unicode.Scalar]] {
        switch self {
        case let .sequence(items):
            return items.reduce(pieces) { $1.split($0) }
        case let .digits(individual):
            return pieces.flatMap { PreTokenizer.splitDigits($0, individual: individual) }
        case let .byteLevel(addPrefixSpace, useRegex):
            return pieces.flatMap { piece -> [[Unicode.Scalar]] in
                var piece = piece
                if addPrefixSpace, piece.first != " " { piece.insert(" ", at: 0) }
                let words = useRegex ? GPT2Splitter.split(piece) : [piece]
                return words.filter { !$0.isEmpty }.map(ByteLevelAlphabet.encode)
            }
        }
    }

    /// Digits isolates each numeric character (individual) or each run of them (contiguous).
    static func splitDigits(_ piece: [Unicode.Scalar], individual: Bool) -> [[Unicode.Scalar]] {
        var out: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        var currentIsNumber = false
        for s in piece {
            let isNumber = UnicodeClasses.isNumber(s)
            if current.isEmpty || isNumber != currentIsNumber || (isNumber && individual) {
                if !current.isEmpty { out.append(current) }
                current = [s]
                currentIsNumber = isNumber
            } else {
                current.append(s)
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }
}
