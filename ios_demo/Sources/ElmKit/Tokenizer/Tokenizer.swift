import Foundation

/// A tokenizer read from a Hugging Face `tokenizer.json`, encoding and decoding like the `tokenizers` library.
///
/// Pipeline (as `TokenizerImpl::encode`): split out added tokens → normalize → pre-tokenize → BPE → post-process.
/// It covers byte-level BPE (SmolLM2 / GPT-2 style) and SentencePiece-style BPE with byte fallback
/// (Llama-2 / OpenELM); anything else is rejected at load time with `TokenizerError.unsupported`.
public final class Tokenizer: @unchecked Sendable {
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor?
    let decoder: TokenDecoder?
    let addedTokens: [Int: AddedToken]
    private let addedByContent: [[UInt8]: Int]
    private let rawMatcher: AddedTokenMatcher
    private let normalizedMatcher: AddedTokenMatcher

    /// One more than the largest id of the model vocabulary or the added tokens.
    public let vocabularySize: Int

    public convenience init(contentsOf url: URL) throws {
        try self.init(json: JSONValue.parse(contentsOf: url))
    }

    public init(json: JSONValue) throws {
        guard let modelJSON = json["model"] else { throw TokenizerError.malformed("no model") }
        model = try BPEModel(json: modelJSON)
        func optional<T>(_ key: String, _ make: (JSONValue) throws -> T) throws -> T? {
            guard let value = json[key], !value.isNull else { return nil }
            return try make(value)
        }
        normalizer = try optional("normalizer", Normalizer.init(json:))
        preTokenizer = try optional("pre_tokenizer", PreTokenizer.init(json:))
        postProcessor = try optional("post_processor", PostProcessor.init(json:))
        decoder = try optional("decoder", TokenDecoder.init(json:))

        let added = try (json["added_tokens"]?.arrayValue ?? []).map(AddedToken.init(json:))
        addedTokens = Dictionary(added.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        addedByContent = Dictionary(added.map { ($0.content.utf8Bytes, $0.id) }, uniquingKeysWith: { first, _ in first })
        rawMatcher = AddedTokenMatcher(added.filter { !$0.normalized }.map { ($0.content, $0) })
        let normalizer = self.normalizer
        normalizedMatcher = AddedTokenMatcher(added.filter(\.normalized).map { (normalizer?.normalize($0.content) ?? $0.content, $0) })
        vocabularySize = max(model.idToToken.keys.max() ?? -1, added.map(\.id).max() ?? -1) + 1
    }

    /// Token ids for `text`. With `addSpecialTokens` the post-processor runs (e.g. Llama-2 prepends `<s>`).
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids: [Int] = []
        for segment in rawMatcher.split(Array(text.unicodeScalars)) {
            switch segment {
            case let .token(id): ids.append(id)
            case let .text(raw):
                let normalized = normalizer?.normalize(raw) ?? raw
                for piece in normalizedMatcher.split(normalized) {
                    switch piece {
                    case let .token(id): ids.append(id)
                    case let .text(t):
                        let words = preTokenizer?.split([t]) ?? [t]
                        for word in words { ids += model.tokenize(word) }
                    }
                }
            }
        }
        if addSpecialTokens, let postProcessor { ids = postProcessor.process(ids) }
        return ids
    }

    /// Text for `ids`; unknown ids are skipped, special added tokens too when `skipSpecialTokens`.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if let added = addedTokens[id] {
                if skipSpecialTokens && added.special { continue }
                tokens.append(added.content.string)
            } else if let token = model.idToToken[id] {
                tokens.append(token)
            }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeChain(tokens).joined()
    }

    /// The id of a token string (added tokens first, then the model vocabulary), byte-exact.
    public func tokenId(for token: String) -> Int? {
        let key = Array(token.utf8)
        return addedByContent[key] ?? model.vocab[key]
    }

    /// The stored string of a token id, as in tokenizer.json (byte-level tokens use the stand-in alphabet).
    public func token(for id: Int) -> String? { addedTokens[id]?.content.string ?? model.idToToken[id] }

    public func isSpecialToken(_ id: Int) -> Bool { addedTokens[id]?.special ?? false }
}
