import Foundation
@testable import ElmKit

/// A `PredictionBackend` that answers from a trace recorded on the host (Fixtures/make_engine_trace.py): the
/// calls a real exported Core ML package received from validation/coreml_runner.py over the MIL interpreter,
/// and the logits it returned.
///
/// Why strict: the replay is only evidence if the engine makes exactly the recorded calls, in order: same
/// function, same ids (padding included), same positions, and a fresh state exactly where the host started one.
/// Any difference throws, naming the call. Only the row the host read is stored (as top-k values; every other
/// logit is -inf), so asking for any other row throws too.
final class ReplayBackend: PredictionBackend {
    struct Call {
        let freshState: Bool
        let function: EngineFunction
        let inputIds: [Int32]
        let inputPositions: [Int32]
        let row: Int
        let topIds: [Int]
        let topValues: [Float]
        let argmax: Int
    }

    struct Mismatch: Error, CustomStringConvertible {
        let description: String
    }

    let vocabularySize: Int
    private let calls: [Call]
    private(set) var next = 0
    private var stateIsFresh = false

    init(calls: [Call], vocabularySize: Int) {
        self.calls = calls
        self.vocabularySize = vocabularySize
    }

    /// Every recorded call was made.
    var isFinished: Bool { next == calls.count }

    func makeFreshState() throws { stateIsFresh = true }

    func predict(_ function: EngineFunction, inputIds: [Int32], inputPositions: [Int32], rows: Range<Int>) throws -> [[Float]] {
        guard next < calls.count else { throw Mismatch(description: "call \(next) (\(function) at \(inputPositions.first ?? -1)) is beyond the trace") }
        let expected = calls[next]
        let label = "call \(next)"
        guard function == expected.function else { throw Mismatch(description: "\(label): \(function), the host called \(expected.function)") }
        guard inputPositions == expected.inputPositions else {
            throw Mismatch(description: "\(label): positions \(inputPositions.first ?? -1)..., the host used \(expected.inputPositions.first ?? -1)...")
        }
        guard inputIds == expected.inputIds else { throw Mismatch(description: "\(label): input_ids differ from the host's") }
        guard stateIsFresh == expected.freshState else {
            throw Mismatch(description: "\(label): state fresh=\(stateIsFresh), the host's fresh=\(expected.freshState)")
        }
        guard rows == expected.row..<(expected.row + 1) else {
            throw Mismatch(description: "\(label): rows \(rows) requested, only row \(expected.row) was recorded")
        }
        next += 1
        stateIsFresh = false
        var row = [Float](repeating: -.infinity, count: vocabularySize)
        for (id, value) in zip(expected.topIds, expected.topValues) { row[id] = value }
        return [row]
    }
}

/// The committed trace of a real SmolLM2-135M-Instruct int4 Core ML package (Fixtures/coreml_engine/).
struct EngineTrace {
    struct Turn {
        let promptText: String
        let promptIds: [Int]
        let reusedPrefix: Int
        let expectedTokens: [Int]
        let calls: [ReplayBackend.Call]
    }

    let contextLength: Int
    let prefillChunk: Int
    let vocabularySize: Int
    let generate: Turn
    let chatTurns: [Turn]
    let chatUserMessages: [String]
    let maxNewTokens: Int

    static func load() throws -> EngineTrace {
        let json = try Fixtures.json("coreml_engine/trace.json")
        func call(_ c: JSONValue) -> ReplayBackend.Call {
            ReplayBackend.Call(
                freshState: c["fresh_state"]?.boolValue ?? false,
                function: EngineFunction(rawValue: c["function"]?.stringValue ?? "") ?? .decode,
                inputIds: Fixtures.ints(c["input_ids"]).map(Int32.init),
                inputPositions: Fixtures.ints(c["input_pos"]).map(Int32.init),
                row: c["row"]?.intValue ?? -1,
                topIds: Fixtures.ints(c["top_ids"]),
                topValues: (c["top_values"]?.arrayValue ?? []).compactMap { $0.doubleValue.map(Float.init) },
                argmax: c["argmax"]?.intValue ?? -1)
        }
        func turn(_ t: JSONValue) -> Turn {
            Turn(promptText: t["prompt_text"]?.stringValue ?? "", promptIds: Fixtures.ints(t["prompt_ids"]),
                 reusedPrefix: t["reused_prefix"]?.intValue ?? 0, expectedTokens: Fixtures.ints(t["expected_tokens"]),
                 calls: (t["calls"]?.arrayValue ?? []).map(call))
        }
        let turns = json["chat"]?["turns"]?.arrayValue ?? []
        return EngineTrace(
            contextLength: json["package"]?["context_length"]?.intValue ?? 0,
            prefillChunk: json["package"]?["prefill_chunk"]?.intValue ?? 0,
            vocabularySize: json["package"]?["vocab_size"]?.intValue ?? 0,
            generate: turn(json["generate"] ?? .null),
            chatTurns: turns.map(turn),
            chatUserMessages: turns.compactMap { $0["user"]?.stringValue },
            maxNewTokens: json["generate"]?["max_new_tokens"]?.intValue ?? 0)
    }

    func engine(replaying calls: [ReplayBackend.Call]) -> (KVCacheEngine, ReplayBackend) {
        let backend = ReplayBackend(calls: calls, vocabularySize: vocabularySize)
        return (KVCacheEngine(backend: backend, contextLength: contextLength, prefillChunkLength: prefillChunk), backend)
    }
}
