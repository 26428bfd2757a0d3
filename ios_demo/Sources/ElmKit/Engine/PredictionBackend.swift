/// The exported model's entry points (named by `CoreMLContract`, i.e. manifest.json when it renames them).
public enum EngineFunction: String, Sendable {
    /// `prefill_chunk` tokens at contiguous positions, plus `logits_row`: returns that one row.
    case prefill
    /// One token.
    case decode
    /// `verify_tokens` tokens (packages exported with `--verify-tokens N`): returns every row. A speculative
    /// pair's target scores its last token plus the draft's proposals in one call.
    case verify
}

/// One model call and nothing else: what `KVCacheEngine` needs from a runtime.
///
/// Why a protocol this small: everything that can go wrong between a prompt and Core ML (chunking, padding,
/// positions, which function to call, which row to ask for, when to start a fresh state, what the cache already
/// holds) lives in the engine, above this line, so it runs unchanged against Core ML on a device and against a
/// recorded trace of the host's MIL interpreter on Linux. The backend owns the KV state the functions share.
public protocol PredictionBackend: AnyObject {
    /// Width of a logits row.
    var vocabularySize: Int { get }

    /// Replaces the KV state with a new, zeroed one.
    func makeFreshState() throws

    /// Runs `function` on the current state with `inputIds` at `inputPositions` (same length) and returns the
    /// logits rows `rows` of the call's output. `logitsRow` is prefill's `logits_row` input (the chunk row the
    /// function returns, as its only output row); nil for decode and verify, whose row `i` belongs to
    /// `inputIds[i]`, and for packages whose prefill returns every row.
    func predict(_ function: EngineFunction, inputIds: [Int32], inputPositions: [Int32], logitsRow: Int32?,
                 rows: Range<Int>) throws -> [[Float]]
}
