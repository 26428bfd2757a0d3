/// The exported model's two entry points (named by `CoreMLContract`, i.e. manifest.json when it renames them).
public enum EngineFunction: String, Sendable {
    /// `prefill_chunk` tokens at contiguous positions.
    case prefill
    /// One token.
    case decode
}

/// One model call and nothing else: what `KVCacheEngine` needs from a runtime.
///
/// Why a protocol this small: everything that can go wrong between a prompt and Core ML (chunking, padding,
/// positions, which function to call, when to start a fresh state, what the cache already holds) lives in the
/// engine, above this line, so it runs unchanged against Core ML on a device and against a recorded trace of
/// the host's MIL interpreter on Linux. The backend owns the KV state both functions share.
public protocol PredictionBackend: AnyObject {
    /// Width of a logits row.
    var vocabularySize: Int { get }

    /// Replaces the KV state with a new, zeroed one.
    func makeFreshState() throws

    /// Runs `function` on the current state with `inputIds` at `inputPositions` (same length) and returns the
    /// logits rows `rows` of the call's output (row `i` belongs to `inputIds[i]`).
    func predict(_ function: EngineFunction, inputIds: [Int32], inputPositions: [Int32], rows: Range<Int>) throws -> [[Float]]
}
