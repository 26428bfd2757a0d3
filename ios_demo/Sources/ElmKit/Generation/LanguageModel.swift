/// What the generation loop needs from an inference engine (Core ML on device, fakes in tests).
///
/// The engine owns its KV cache. Every call names the position of its first token; writing at position `p`
/// makes anything cached at `p` and beyond stale (the engine masks by position and later calls overwrite it).
/// That is what lets speculative decoding discard rejected draft tokens without a rollback API.
public protocol LanguageModel: AnyObject {
    /// Width of each logits row.
    var vocabularySize: Int { get }
    /// Positions available in the KV cache; positions run from 0 to `contextLength - 1`.
    var contextLength: Int { get }
    /// Most tokens one `prefill` call accepts (the exported prefill function's C).
    var prefillChunkLength: Int { get }

    /// Forgets the conversation (new, zeroed KV cache).
    func reset() throws

    /// Runs `tokens` (1...prefillChunkLength of them) at positions `position ..< position + tokens.count`.
    /// Returns one logits row per token when `allLogits`, else only the row of the last token.
    func prefill(_ tokens: [Int], at position: Int, allLogits: Bool) throws -> [[Float]]

    /// Runs one token at `position` and returns its logits row.
    func decode(_ token: Int, at position: Int) throws -> [Float]
}

public enum GenerationError: Error, Equatable {
    case emptyPrompt
    case promptTooLong(tokens: Int, contextLength: Int)
    case badLogits(expected: Int, got: Int)
}

extension LanguageModel {
    /// Feeds any number of tokens through `prefill` in chunks of `prefillChunkLength`.
    /// Returns all rows (`allLogits`) or just the last token's row.
    ///
    /// Checks for task cancellation before each chunk (a long prompt is the slowest thing a user can stop) and
    /// throws `CancellationError`; the chunks already run stay in the cache, where a model that tracks its cache
    /// (`KVReusingModel`) can reuse them.
    public func prefillChunked(_ tokens: [Int], from position: Int, allLogits: Bool = false) throws -> [[Float]] {
        guard !tokens.isEmpty else { throw GenerationError.emptyPrompt }
        guard position + tokens.count <= contextLength else {
            throw GenerationError.promptTooLong(tokens: position + tokens.count, contextLength: contextLength)
        }
        let chunk = max(1, prefillChunkLength)
        var rows: [[Float]] = []
        var start = 0
        while start < tokens.count {
            try Task.checkCancellation()
            let end = min(start + chunk, tokens.count)
            let isLast = end == tokens.count
            let out = try prefill(Array(tokens[start..<end]), at: position + start, allLogits: allLogits)
            if allLogits { rows += out } else if isLast { rows = [out[out.count - 1]] }
            start = end
        }
        for row in rows where row.count != vocabularySize {
            throw GenerationError.badLogits(expected: vocabularySize, got: row.count)
        }
        return rows
    }
}
