/// The character classes that the reference regexes use, decided per Unicode scalar.
///
/// Why hand-written: `tokenizers` runs Oniguruma / Rust-regex patterns over code points; Swift's `Regex` works on
/// grapheme clusters by default and is slow, so the splitters scan scalars and ask these predicates instead.
enum UnicodeClasses {
    /// `\p{L}`: general categories Lu, Ll, Lt, Lm, Lo.
    static func isLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// `\p{N}` and Rust's `char::is_numeric`: general categories Nd, Nl, No.
    static func isNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// `\s` in Unicode mode: the White_Space property (tab..CR, space, NEL, NBSP, U+1680, U+2000-200A, ...).
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace }

    /// Rust-regex `\w`: Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
    static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}
