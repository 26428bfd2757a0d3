/// Splits text exactly as the GPT-2 pattern that byte-level BPE uses:
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
///
/// Why a scanner instead of a regex: it must agree with Oniguruma's leftmost-first alternation and backtracking
/// on every input, and the cases are few enough to state directly. At each position the alternatives are tried
/// in order; `\s+(?!\S)` takes a whitespace run but leaves its last character for the next word unless the run
/// ends the text (a single whitespace before a word falls through to plain `\s+`).
public enum GPT2Splitter {
    public static func split(_ text: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var pieces: [[Unicode.Scalar]] = []
        var i = 0
        let n = text.count
        while i < n {
            let end = matchEnd(text, at: i)
            pieces.append(Array(text[i..<end]))
            i = end
        }
        return pieces
    }

    private static func isOther(_ s: Unicode.Scalar) -> Bool {
        !UnicodeClasses.isWhitespace(s) && !UnicodeClasses.isLetter(s) && !UnicodeClasses.isNumber(s)
    }

    /// End index of the regex match that starts at `i` (there always is one of length >= 1).
    static func matchEnd(_ t: [Unicode.Scalar], at i: Int) -> Int {
        let n = t.count
        let c = t[i]
        if c == "'", i + 1 < n {
            let c1 = t[i + 1]
            if c1 == "s" || c1 == "t" || c1 == "m" || c1 == "d" { return i + 2 }
            if i + 2 < n {
                let c2 = t[i + 2]
                if (c1 == "r" && c2 == "e") || (c1 == "v" && c2 == "e") || (c1 == "l" && c2 == "l") { return i + 3 }
            }
        }
        for cls in [UnicodeClasses.isLetter, UnicodeClasses.isNumber, isOther] {
            var j = i
            if t[j] == " ", j + 1 < n, cls(t[j + 1]) { j += 1 }
            if cls(t[j]) {
                while j < n, cls(t[j]) { j += 1 }
                return j
            }
        }
        // Whitespace: `\s+(?!\S)` then `\s+`.
        var j = i
        while j < n, UnicodeClasses.isWhitespace(t[j]) { j += 1 }
        let run = j - i
        if j == n { return j }
        return run >= 2 ? j - 1 : i + 1
    }
}
