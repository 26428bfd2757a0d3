/// GPT-2's reversible byte ↔ printable-character table.
///
/// Why: byte-level BPE vocabularies store every token as a string of these stand-in characters (a space is
/// "Ġ", a newline "Ċ"), so encoding maps UTF-8 bytes to them and decoding maps them back. The table is the one
/// in OpenAI's encoder.py and in `tokenizers` (printable Latin-1 bytes map to themselves, the other 68 bytes
/// to U+0100 upward in byte order).
public enum ByteLevelAlphabet {
    public static let byteToScalar: [Unicode.Scalar] = {
        let printable: Set<Int> = Set(Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF))
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for b in printable { table[b] = Unicode.Scalar(UInt32(b))! }
        var next: UInt32 = 256
        for b in 0..<256 where !printable.contains(b) {
            table[b] = Unicode.Scalar(next)!
            next += 1
        }
        return table
    }()

    public static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()

    /// The stand-in characters for the UTF-8 bytes of `scalars`.
    public static func encode(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(scalars.count)
        for s in scalars { UTF8.encode(s) { out.append(byteToScalar[Int($0)]) } }
        return out
    }

    /// The bytes behind a token, or nil when some character is not in the table (e.g. an added token).
    public static func bytes(of token: String) -> [UInt8]? {
        var out: [UInt8] = []
        for s in token.unicodeScalars {
            guard let b = scalarToByte[s.value] else { return nil }
            out.append(b)
        }
        return out
    }
}
