/// The BPE `model` of tokenizer.json: vocabulary, ranked merges, unknown token and byte fallback.
///
/// Merging follows `tokenizers`' `Word::merge_all`: a priority queue ordered by (merge rank, position) merges the
/// best-ranked adjacent pair, leftmost first, until no ranked pair remains. Lookups are keyed by UTF-8 bytes, not
/// `String`, so canonically equivalent but distinct tokens keep distinct ids.
final class BPEModel {
    let vocab: [[UInt8]: Int]
    let idToToken: [Int: String]
    private let scalarIds: [UInt32: Int]
    private let merges: [UInt64: (rank: Int, newId: Int)]
    /// Per byte, the id of its `<0xNN>` token; nil when byte fallback is off.
    private let byteFallbackIds: [Int?]?
    let unkId: Int?
    let fuseUnk: Bool
    let ignoreMerges: Bool
    private let prefix: [Unicode.Scalar]?
    private let suffix: [Unicode.Scalar]?

    init(json: JSONValue) throws {
        guard json["type"]?.stringValue == "BPE" else {
            throw TokenizerError.unsupported("model \(json["type"]?.stringValue ?? "?") (only BPE)")
        }
        if let dropout = json["dropout"]?.doubleValue, dropout > 0 { throw TokenizerError.unsupported("BPE dropout") }
        guard let vocabMembers = json["vocab"]?.objectValue else { throw TokenizerError.malformed("BPE without vocab") }
        var vocab: [[UInt8]: Int] = [:]
        var idToToken: [Int: String] = [:]
        var scalarIds: [UInt32: Int] = [:]
        vocab.reserveCapacity(vocabMembers.count)
        for (token, value) in vocabMembers {
            guard let id = value.intValue else { throw TokenizerError.malformed("vocab id of \(token)") }
            vocab[Array(token.utf8)] = id
            idToToken[id] = token
            let scalars = token.unicodeScalars
            if scalars.count == 1 { scalarIds[scalars.first!.value] = id }
        }
        prefix = json["continuing_subword_prefix"]?.stringValue.map { Array(scalarsOf: $0) }
        suffix = json["end_of_word_suffix"]?.stringValue.map { Array(scalarsOf: $0) }

        var merges: [UInt64: (rank: Int, newId: Int)] = [:]
        let mergeList = json["merges"]?.arrayValue ?? []
        merges.reserveCapacity(mergeList.count)
        let prefixLength = prefix.map { Array($0.string.utf8).count } ?? 0
        for (rank, entry) in mergeList.enumerated() {
            let pair: (String, String)
            if let text = entry.stringValue {  // older format: "a b"
                let parts = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError.malformed("merge '\(text)'") }
                pair = (String(parts[0]), String(parts[1]))
            } else if let items = entry.arrayValue, items.count == 2, let a = items[0].stringValue, let b = items[1].stringValue {
                pair = (a, b)
            } else {
                throw TokenizerError.malformed("merge #\(rank)")
            }
            let a = Array(pair.0.utf8), b = Array(pair.1.utf8)
            guard let idA = vocab[a], let idB = vocab[b] else { throw TokenizerError.malformed("merge #\(rank) uses unknown tokens") }
            // With a continuing-subword prefix the right part's prefix is dropped when the pair is glued.
            let joined = a + (prefixLength > 0 && b.starts(with: Array(prefix!.string.utf8)) ? Array(b.dropFirst(prefixLength)) : b)
            guard let newId = vocab[joined] else { throw TokenizerError.malformed("merge #\(rank) result not in vocab") }
            let key = BPEModel.pairKey(idA, idB)
            if merges[key] == nil { merges[key] = (rank, newId) }
        }

        self.vocab = vocab
        self.idToToken = idToToken
        self.scalarIds = scalarIds
        self.merges = merges
        if json["byte_fallback"]?.boolValue ?? false {
            byteFallbackIds = (0..<256).map { vocab[Array(BPEModel.byteToken(UInt8($0)).utf8)] }
        } else {
            byteFallbackIds = nil
        }
        unkId = json["unk_token"]?.stringValue.flatMap { vocab[Array($0.utf8)] }
        fuseUnk = json["fuse_unk"]?.boolValue ?? false
        ignoreMerges = json["ignore_merges"]?.boolValue ?? false
    }

    /// The byte-fallback token name for a byte, as `tokenizers` spells it: `<0x0A>`.
    static func byteToken(_ b: UInt8) -> String {
        let hex = String(b, radix: 16, uppercase: true)
        return "<0x" + (hex.count == 1 ? "0" + hex : hex) + ">"
    }

    private static func pairKey(_ a: Int, _ b: Int) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

    private func id(ofPiece piece: [Unicode.Scalar], first: Bool, last: Bool) -> Int? {
        if prefix == nil && suffix == nil, piece.count == 1 { return scalarIds[piece[0].value] }
        var s = piece
        if !first, let prefix { s = prefix + s }
        if last, let suffix { s = s + suffix }
        return vocab[s.utf8Bytes]
    }

    /// Token ids for one pre-tokenized word.
    func tokenize(_ word: [Unicode.Scalar]) -> [Int] {
        if word.isEmpty { return [] }
        if ignoreMerges, let id = vocab[word.utf8Bytes] { return [id] }

        // Initial symbols: one per character, byte tokens for unknown characters, else (fused) unk.
        var ids: [Int] = []
        ids.reserveCapacity(word.count)
        var pendingUnk = false
        for (index, scalar) in word.enumerated() {
            if let id = id(ofPiece: [scalar], first: index == 0, last: index == word.count - 1) {
                if pendingUnk, let unkId { ids.append(unkId) }
                pendingUnk = false
                ids.append(id)
                continue
            }
            if let fallback = byteFallbackIds {
                var bytes: [Int] = []
                UTF8.encode(scalar) { bytes.append(fallback[Int($0)] ?? -1) }
                if !bytes.contains(-1) {
                    // As in tokenizers, a pending unk is not flushed here; it lands after these bytes.
                    ids += bytes
                    continue
                }
            }
            guard let unkId else { continue }  // no unk token: the character is dropped, as in tokenizers
            if pendingUnk && !fuseUnk { ids.append(unkId) }
            pendingUnk = true
        }
        if pendingUnk, let unkId { ids.append(unkId) }
        return merge(ids)
    }

    private struct Candidate { let rank: Int; let pos: Int; let newId: Int }

    /// `merge_all` without dropout: a min-heap on (rank, position) over a linked list of symbols.
    private func merge(_ initial: [Int]) -> [Int] {
        let n = initial.count
        if n < 2 { return initial }
        var symbol = initial
        var prev = Array(-1..<(n - 1))
        var next = Array(1...n).map { $0 == n ? -1 : $0 }
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap<Candidate> { ($0.rank, $0.pos) < ($1.rank, $1.pos) }
        for i in 0..<(n - 1) {
            if let m = merges[BPEModel.pairKey(symbol[i], symbol[i + 1])] { heap.push(Candidate(rank: m.rank, pos: i, newId: m.newId)) }
        }
        while let top = heap.pop() {
            let pos = top.pos
            guard alive[pos], next[pos] != -1 else { continue }
            let right = next[pos]
            guard let m = merges[BPEModel.pairKey(symbol[pos], symbol[right])], m.newId == top.newId else { continue }
            symbol[pos] = top.newId
            alive[right] = false
            next[pos] = next[right]
            if next[right] != -1 { prev[next[right]] = pos }
            if prev[pos] != -1, let m = merges[BPEModel.pairKey(symbol[prev[pos]], symbol[pos])] {
                heap.push(Candidate(rank: m.rank, pos: prev[pos], newId: m.newId))
            }
            if next[pos] != -1, let m = merges[BPEModel.pairKey(symbol[pos], symbol[next[pos]])] {
                heap.push(Candidate(rank: m.rank, pos: pos, newId: m.newId))
            }
        }
        var out: [Int] = []
        var i = 0
        while i != -1 { out.append(symbol[i]); i = next[i] }
        return out
    }
}

/// A small binary min-heap (the standard library has none).
struct MinHeap<Element> {
    private var items: [Element] = []
    private let less: (Element, Element) -> Bool

    init(less: @escaping (Element, Element) -> Bool) { self.less = less }

    var isEmpty: Bool { items.isEmpty }

    mutating func push(_ e: Element) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var best = i
            if l < items.count, less(items[l], items[best]) { best = l }
            if r < items.count, less(items[r], items[best]) { best = r }
            if best == i { break }
            items.swapAt(i, best)
            i = best
        }
        return top
    }
}
