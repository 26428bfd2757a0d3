/// A `LanguageModel` over any `PredictionBackend`: the control flow of the Core ML engine, platform-free.
///
/// The contract it drives (the one validation/coreml_runner.py drives on the host, call for call):
/// - a run of tokens goes through `prefill` in chunks of exactly `prefillChunkLength`; a short chunk is padded at
///   the end with token 0 at the following positions, and only the rows of real tokens are read;
/// - a single token, or a chunk whose padding would run past the context, goes through `decode` one token at a
///   time (padding there would have to wrap onto cache positions that hold real tokens);
/// - both functions share one state; writing at position `p` makes everything cached from `p` on stale (the model
///   masks by position and later calls overwrite it), which is how rewinding works.
///
/// It remembers which token sits at each cache position (`cachedTokens`), so a caller can keep the state across
/// chat turns and prefill only what the cache lacks (`reusablePrefix(for:)`).
public final class KVCacheEngine: LanguageModel, KVReusingModel {
    /// The token written into padded prefill slots (the host runner uses the same, so traces match exactly).
    public static let paddingToken: Int32 = 0

    public let backend: PredictionBackend
    public let vocabularySize: Int
    public let contextLength: Int
    public let prefillChunkLength: Int
    public private(set) var cachedTokens: [Int] = []

    public enum EngineError: Error, Equatable, CustomStringConvertible {
        case gapInCache(position: Int, cached: Int)
        case beyondContext(end: Int, contextLength: Int)
        case badChunk(count: Int, prefillChunk: Int)

        public var description: String {
            switch self {
            case let .gapInCache(p, c): return "a call at position \(p) would leave a gap: the cache holds \(c) tokens"
            case let .beyondContext(e, n): return "tokens up to position \(e - 1) do not fit the context of \(n)"
            case let .badChunk(c, n): return "prefill takes 1...\(n) tokens, got \(c)"
            }
        }
    }

    public init(backend: PredictionBackend, contextLength: Int, prefillChunkLength: Int) {
        self.backend = backend
        self.vocabularySize = backend.vocabularySize
        self.contextLength = contextLength
        self.prefillChunkLength = prefillChunkLength
    }

    public func reset() throws {
        try backend.makeFreshState()
        cachedTokens = []
    }

    public func prefill(_ tokens: [Int], at position: Int, allLogits: Bool) throws -> [[Float]] {
        guard (1...prefillChunkLength).contains(tokens.count) else {
            throw EngineError.badChunk(count: tokens.count, prefillChunk: prefillChunkLength)
        }
        try checkWrite(at: position, count: tokens.count)
        if tokens.count == 1 || position + prefillChunkLength > contextLength {
            var rows: [[Float]] = []
            for (i, token) in tokens.enumerated() { rows.append(try decode(token, at: position + i)) }
            return allLogits ? rows : [rows[rows.count - 1]]
        }
        let c = prefillChunkLength
        let ids = (0..<c).map { $0 < tokens.count ? Int32(tokens[$0]) : KVCacheEngine.paddingToken }
        let positions = (0..<c).map { Int32(position + $0) }
        let wanted = allLogits ? 0..<tokens.count : (tokens.count - 1)..<tokens.count
        let rows = try backend.predict(.prefill, inputIds: ids, inputPositions: positions, rows: wanted)
        record(tokens, at: position)
        return rows
    }

    public func decode(_ token: Int, at position: Int) throws -> [Float] {
        try checkWrite(at: position, count: 1)
        let rows = try backend.predict(.decode, inputIds: [Int32(token)], inputPositions: [Int32(position)], rows: 0..<1)
        record([token], at: position)
        return rows[0]
    }

    private func checkWrite(at position: Int, count: Int) throws {
        guard position <= cachedTokens.count else { throw EngineError.gapInCache(position: position, cached: cachedTokens.count) }
        guard position + count <= contextLength else { throw EngineError.beyondContext(end: position + count, contextLength: contextLength) }
    }

    private func record(_ tokens: [Int], at position: Int) {
        cachedTokens.removeSubrange(position...)
        cachedTokens += tokens
    }
}
