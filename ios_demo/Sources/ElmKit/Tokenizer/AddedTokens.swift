/// Added / special tokens (`added_tokens` in tokenizer.json) and the splitting that isolates them.
///
/// Why before BPE: a special token such as `<|im_start|>` or `</s>` must become its own id even though its
/// characters would otherwise be merged with neighbours. As in `tokenizers`, tokens with `normalized: false` are
/// matched on the raw text first, then tokens with `normalized: true` on each normalized remainder; matching is
/// leftmost-longest, and `lstrip` / `rstrip` / `single_word` are honoured.
struct AddedToken {
    let id: Int
    let content: [Unicode.Scalar]
    let special: Bool
    let normalized: Bool
    let lstrip: Bool
    let rstrip: Bool
    let singleWord: Bool

    init(json: JSONValue) throws {
        guard let id = json["id"]?.intValue, let content = json["content"]?.stringValue else {
            throw TokenizerError.malformed("added token without id or content")
        }
        self.id = id
        self.content = Array(scalarsOf: content)
        special = json["special"]?.boolValue ?? false
        normalized = json["normalized"]?.boolValue ?? !special
        lstrip = json["lstrip"]?.boolValue ?? false
        rstrip = json["rstrip"]?.boolValue ?? false
        singleWord = json["single_word"]?.boolValue ?? false
    }
}

/// One piece of split text: either plain text still to tokenize, or an added token's id.
enum TextSegment: Equatable {
    case text([Unicode.Scalar])
    case token(Int)
}

/// Finds a fixed set of added tokens in text.
struct AddedTokenMatcher {
    private let byFirstScalar: [Unicode.Scalar: [(pattern: [Unicode.Scalar], token: AddedToken)]]

    /// `patterns` pairs each token with the text to look for (its content, or its normalized content).
    init(_ patterns: [(pattern: [Unicode.Scalar], token: AddedToken)]) {
        var map: [Unicode.Scalar: [(pattern: [Unicode.Scalar], token: AddedToken)]] = [:]
        for p in patterns where !p.pattern.isEmpty { map[p.pattern[0], default: []].append(p) }
        for key in map.keys { map[key]!.sort { $0.pattern.count > $1.pattern.count } }
        byFirstScalar = map
    }

    var isEmpty: Bool { byFirstScalar.isEmpty }

    /// Leftmost-longest match starting at or after `from`.
    private func nextMatch(in text: [Unicode.Scalar], from: Int) -> (start: Int, end: Int, token: AddedToken)? {
        var i = from
        while i < text.count {
            if let candidates = byFirstScalar[text[i]] {
                for c in candidates where i + c.pattern.count <= text.count && Array(text[i..<i + c.pattern.count]) == c.pattern {
                    return (i, i + c.pattern.count, c.token)
                }
            }
            i += 1
        }
        return nil
    }

    func split(_ text: [Unicode.Scalar]) -> [TextSegment] {
        guard !isEmpty else { return [.text(text)] }
        var segments: [TextSegment] = []
        var startOffset = 0  // end of the last accepted match
        var cursor = 0       // where the search resumes (also past rejected matches)
        while let m = nextMatch(in: text, from: cursor) {
            cursor = m.end
            var start = m.start
            var stop = m.end
            if m.token.singleWord {
                let before = start == 0 || !UnicodeClasses.isWordCharacter(text[start - 1])
                let after = stop == text.count || !UnicodeClasses.isWordCharacter(text[stop])
                if !before || !after { continue }
            }
            if m.token.lstrip {
                var s = start
                while s > 0, UnicodeClasses.isWhitespace(text[s - 1]) { s -= 1 }
                start = max(s, startOffset)
            }
            if m.token.rstrip {
                while stop < text.count, UnicodeClasses.isWhitespace(text[stop]) { stop += 1 }
                cursor = max(cursor, stop)
            }
            if startOffset < start { segments.append(.text(Array(text[startOffset..<start]))) }
            segments.append(.token(m.token.id))
            startOffset = stop
        }
        if startOffset < text.count { segments.append(.text(Array(text[startOffset...]))) }
        return segments
    }
}
