/// A `LanguageModel` over any `PredictionBackend`: the control flow of the Core ML engine, platform-free.
///
/// The contract it drives (the one targets/coreml/runner.py drives on the host, call for call):
/// - a run of tokens whose last row is wanted goes through `prefill` in chunks of exactly `prefillChunkLength`;
///   a short chunk is padded at the end with token 0 at the following positions, and `logits_row` names the row
///   of its last real token, the one row prefill returns;
/// - every row of a run (a speculative pair's target) goes through `verify`, `verifyLength` tokens a call, padded
///   the same way; without a verify function, through `decode`, one call per token;
/// - a single token, or a call whose padding would run past the context, goes through `decode` one token at a
///   time (padding there would have to wrap onto cache positions that hold real tokens);
/// - all functions share one state; writing at position `p` makes everything cached from `p` on stale (the model
///   masks by position and later calls overwrite it), which is how rewinding works.
/// Packages exported before prefill took `logits_row` (`prefillReturnsRow` false) return every row from prefill;
/// the engine then reads the rows it needs from it, as the host runner does.
///
/// It remembers which token sits at each cache position (`cachedTokens`), so a caller can keep the state across
/// chat turns and prefill only what the cache lacks (`reusablePrefix(for:)`).
public final class KVCacheEngine: LanguageModel, KVReusingModel {
    /// The token written into padded slots (the host runner uses the same, so traces match exactly).
    public static let paddingToken: Int32 = 0

    public let backend: PredictionBackend
    public let vocabularySize: Int
    public let contextLength: Int
    public let prefillChunkLength: Int
    /// Tokens per `verify` call, or nil when the package has no verify function.
    public let verifyLength: Int?
    /// Whether prefill takes `logits_row` and returns that row only (manifest `prefill_logits: "row"`).
    public let prefillReturnsRow: Bool
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

    public init(backend: PredictionBackend, contextLength: Int, prefillChunkLength: Int, verifyLength: Int? = nil,
                prefillReturnsRow: Bool = true) {
        self.backend = backend
        self.vocabularySize = backend.vocabularySize
        self.contextLength = contextLength
        self.prefillChunkLength = prefillChunkLength
        self.verifyLength = verifyLength.flatMap { $0 >= 2 ? $0 : nil }
        self.prefillReturnsRow = prefillReturnsRow
    }

    /// The engine for an exported package's manifest (context, chunk, verify function, prefill's row input).
    public convenience init(backend: PredictionBackend, manifest: ModelManifest, contextLength: Int, prefillChunkLength: Int) {
        self.init(backend: backend, contextLength: contextLength, prefillChunkLength: prefillChunkLength,
                  verifyLength: manifest.functions.contains("verify") ? manifest.verifyTokens : nil,
                  prefillReturnsRow: manifest.prefillLogits == "row")
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
        if allLogits, verifyLength != nil || prefillReturnsRow {
            return try everyRow(tokens, at: position)
        }
        if tokens.count == 1 || position + prefillChunkLength > contextLength {
            let rows = try decodeEach(tokens, at: position)
            return allLogits ? rows : [rows[rows.count - 1]]
        }
        let n = tokens.count
        if prefillReturnsRow {
            return try call(.prefill, tokens, at: position, width: prefillChunkLength, logitsRow: Int32(n - 1), rows: 0..<1)
        }
        return try call(.prefill, tokens, at: position, width: prefillChunkLength, logitsRow: nil,
                        rows: allLogits ? 0..<n : (n - 1)..<n)
    }

    public func decode(_ token: Int, at position: Int) throws -> [Float] {
        try checkWrite(at: position, count: 1)
        return try call(.decode, [token], at: position, width: 1, logitsRow: nil, rows: 0..<1)[0]
    }

    /// A row per token: `verify` calls of `verifyLength` tokens (a piece of one token, or one whose padding would
    /// run past the context, through decode), or one decode call per token without a verify function.
    private func everyRow(_ tokens: [Int], at position: Int) throws -> [[Float]] {
        guard let width = verifyLength else { return try decodeEach(tokens, at: position) }
        var rows: [[Float]] = []
        var i = 0
        while i < tokens.count {
            let n = min(width, tokens.count - i)
            let piece = Array(tokens[i..<(i + n)])
            if n == 1 || position + i + width > contextLength {
                rows += try decodeEach(piece, at: position + i)
            } else {
                rows += try call(.verify, piece, at: position + i, width: width, logitsRow: nil, rows: 0..<n)
            }
            i += n
        }
        return rows
    }

    private func decodeEach(_ tokens: [Int], at position: Int) throws -> [[Float]] {
        try tokens.enumerated().map { i, token in try decode(token, at: position + i) }
    }

    /// One backend call of `width` tokens (`tokens` padded at the end), recorded in `cachedTokens`.
    private func call(_ function: EngineFunction, _ tokens: [Int], at position: Int, width: Int, logitsRow: Int32?,
                      rows: Range<Int>) throws -> [[Float]] {
        let ids = (0..<width).map { $0 < tokens.count ? Int32(tokens[$0]) : KVCacheEngine.paddingToken }
        let positions = (0..<width).map { Int32(position + $0) }
        let out = try backend.predict(function, inputIds: ids, inputPositions: positions, logitsRow: logitsRow, rows: rows)
        record(tokens, at: position)
        return out
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
