/// Finds stop strings in streamed text without ever showing part of one.
///
/// Why hold text back: "</s>" can arrive as "<", "/s", ">" over three tokens; text that might still become a stop
/// string is kept until it either completes one (and is dropped, with everything after it) or cannot.
public struct StopStringMatcher {
    private let stops: [[Unicode.Scalar]]
    private var pending: [Unicode.Scalar] = []
    public private(set) var stopped = false

    public init(_ stopStrings: [String]) {
        stops = stopStrings.map { Array($0.unicodeScalars) }.filter { !$0.isEmpty }
    }

    /// Adds streamed text; returns the part that is safe to show now.
    public mutating func feed(_ text: String) -> String {
        guard !stopped else { return "" }
        pending += text.unicodeScalars
        var earliest: Int?
        for stop in stops {
            if let at = Self.firstIndex(of: stop, in: pending), at < (earliest ?? Int.max) { earliest = at }
        }
        if let earliest {
            stopped = true
            let out = Array(pending[..<earliest]).string
            pending.removeAll()
            return out
        }
        var hold = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, pending.count), to: hold, by: -1)
            where Array(pending[(pending.count - length)...]) == Array(stop[..<length]) {
                hold = length
                break
            }
        }
        let out = Array(pending[..<(pending.count - hold)]).string
        pending.removeFirst(pending.count - hold)
        return out
    }

    /// Whatever is still held back, for when generation ends for another reason.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return stopped ? "" : pending.string
    }

    private static func firstIndex(of needle: [Unicode.Scalar], in haystack: [Unicode.Scalar]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] && Array(haystack[i..<(i + needle.count)]) == needle {
            return i
        }
        return nil
    }
}
