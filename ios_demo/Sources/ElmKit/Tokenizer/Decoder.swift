/// The `decoder` section of tokenizer.json: turns token strings back into text.
///
/// Implemented as in `tokenizers`' `decode_chain`: ByteLevel, Replace, ByteFallback, Fuse, Strip and Sequence,
/// covering SmolLM2 (ByteLevel) and Llama-2 / OpenELM (`Replace("▁"," "), ByteFallback, Fuse, Strip(" ",1,0)`).
/// Without a decoder the reference joins tokens with spaces.
indirect enum TokenDecoder {
    case byteLevel
    case replace(pattern: [Unicode.Scalar], content: [Unicode.Scalar])
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case sequence([TokenDecoder])

    init(json: JSONValue) throws {
        guard let type = json["type"]?.stringValue else { throw TokenizerError.malformed("decoder without type") }
        switch type {
        case "ByteLevel": self = .byteLevel
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Replace":
            guard case let .replace(p, c) = try Normalizer.replacement(json) else { fatalError("unreachable") }
            self = .replace(pattern: p, content: c)
        case "Strip":
            guard let content = json["content"]?.stringValue?.unicodeScalars.first,
                  let start = json["start"]?.intValue, let stop = json["stop"]?.intValue
            else { throw TokenizerError.malformed("Strip needs content, start and stop") }
            self = .strip(content: content, start: start, stop: stop)
        case "Sequence":
            guard let items = json["decoders"]?.arrayValue else { throw TokenizerError.malformed("Sequence without decoders") }
            self = .sequence(try items.map(TokenDecoder.init(json:)))
        default:
            throw TokenizerError.unsupported("decoder \(type)")
        }
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case let .sequence(items):
            return items.reduce(tokens) { $1.decodeChain($0) }
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens { bytes += ByteLevelAlphabet.bytes(of: t) ?? Array(t.utf8) }
            return [String(decoding: bytes, as: UTF8.self)]  // lossy, like from_utf8_lossy
        case let .replace(pattern, content):
            return tokens.map { Array(scalarsOf: $0).replacing(pattern, with: content).string }
        case .fuse:
            return [tokens.joined()]
        case let .strip(content, start, stop):
            return tokens.map { token in
                let s = Array(token.unicodeScalars)
                var lo = 0
                while lo < min(start, s.count), s[lo] == content { lo += 1 }
                var hi = s.count
                while s.count - hi < stop, hi > lo, s[hi - 1] == content { hi -= 1 }
                return Array(s[lo..<hi]).string
            }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = strictUTF8String(pending) { out.append(s) } else {
                    out.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for t in tokens {
                if let b = TokenDecoder.fallbackByte(t) { pending.append(b) } else { flush(); out.append(t) }
            }
            flush()
            return out
        }
    }

    /// `<0xNN>` (six bytes, two hex digits) to its byte value.
    static func fallbackByte(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
              u[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16)
    }
}
