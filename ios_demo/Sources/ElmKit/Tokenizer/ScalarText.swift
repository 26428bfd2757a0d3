/// Helpers for text held as `[Unicode.Scalar]`.
///
/// Why scalars: `tokenizers` works on code points and bytes; Swift `String` comparison and `Character` iteration
/// apply canonical equivalence and grapheme clustering, which would merge or split what the reference keeps apart.
extension Array where Element == Unicode.Scalar {
    init(scalarsOf string: String) { self = Array(string.unicodeScalars) }

    var string: String {
        var s = String.UnicodeScalarView()
        s.append(contentsOf: self)
        return String(s)
    }

    var utf8Bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        for s in self { UTF8.encode(s) { out.append($0) } }
        return out
    }

    /// Non-overlapping left-to-right replacement of `pattern` (empty pattern: unchanged).
    func replacing(_ pattern: [Unicode.Scalar], with content: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard !pattern.isEmpty, count >= pattern.count else { return self }
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(count)
        var i = 0
        while i < count {
            if i + pattern.count <= count, self[i] == pattern[0], Array(self[i..<i + pattern.count]) == pattern {
                out.append(contentsOf: content)
                i += pattern.count
            } else {
                out.append(self[i])
                i += 1
            }
        }
        return out
    }
}

/// UTF-8 bytes to a String only when they are valid (Rust's `String::from_utf8`), unlike `String(decoding:)`.
func strictUTF8String(_ bytes: [UInt8]) -> String? {
    let s = String(decoding: bytes, as: UTF8.self)
    return Array(s.utf8) == bytes ? s : nil
}
