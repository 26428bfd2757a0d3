/// Turns a stream of token ids into text deltas, as `tokenizers`' `DecodeStream` does.
///
/// Why not decode one token at a time: byte-level tokens can hold half a UTF-8 character and SentencePiece
/// decoders strip a leading space, so a token's text depends on its neighbours. Each step decodes a short window
/// and emits only what was added since the previous window, holding back while the text ends in U+FFFD.
public struct StreamingDetokenizer {
    private let tokenizer: any TokenTextDecoder
    private let skipSpecialTokens: Bool
    private var ids: [Int] = []
    private var prefix: [UInt8] = []
    private var prefixIndex = 0

    public init(tokenizer: any TokenTextDecoder, skipSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// The text that `id` completes (empty while a character is still incomplete).
    public mutating func step(_ id: Int) -> String {
        ids.append(id)
        let text = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        let bytes = Array(text.utf8)
        guard bytes.count > prefix.count, text.unicodeScalars.last != "\u{FFFD}" else { return "" }
        var common = 0
        while common < prefix.count, prefix[common] == bytes[common] { common += 1 }  // == prefix.count normally
        let delta = String(decoding: bytes[common...], as: UTF8.self)
        let newPrefixIndex = ids.count - prefixIndex
        ids = Array(ids[prefixIndex...])
        prefix = Array(tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens).utf8)
        prefixIndex = newPrefixIndex
        return delta
    }
}
