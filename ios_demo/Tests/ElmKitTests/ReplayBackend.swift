import Foundation
@testable import ElmKit

/// A `PredictionBackend` that answers from a trace recorded on the host (Fixtures/trace_recording.py): the calls a
/// real exported Core ML package received from targets/coreml/runner.py over the MIL interpreter, and the logits
/// it returned.
///
/// Why strict: the replay is only evidence if the engine makes exactly the recorded calls, in order: same
/// function, same ids (padding included), same positions, same `logits_row`, and a fresh state exactly where the
/// host started one. Any difference throws, naming the call. Only the rows the host read are stored (as top-k
/// values; every other logit is -inf), so asking for any other rows throws too.
final class ReplayBackend: PredictionBackend {
    struct Row {
        let row: Int
        let topIds: [Int]
        let topValues: [Float]
        let argmax: Int
    }

    struct Call {
        let freshState: Bool
        let function: EngineFunction
        let inputIds: [Int32]
        let inputPositions: [Int32]
        let logitsRow: Int32?
        let rows: [Row]
    }

    struct Mismatch: Error, CustomStringConvertible {
        let description: String
    }

    let vocabularySize: Int
    private let calls: [Call]
    private let label: String
    private(set) var next = 0
    private var stateIsFresh = false

    init(calls: [Call], vocabularySize: Int, label: String = "") {
        self.calls = calls
        self.vocabularySize = vocabularySize
        self.label = label
    }

    /// Every recorded call was made.
    var isFinished: Bool { next == calls.count }

    func makeFreshState() throws { stateIsFresh = true }

    func predict(_ function: EngineFunction, inputIds: [Int32], inputPositions: [Int32], logitsRow: Int32?,
                 rows: Range<Int>) throws -> [[Float]] {
        let label = "\(self.label)call \(next)"
        guard next < calls.count else { throw Mismatch(description: "\(label) (\(function) at \(inputPositions.first ?? -1)) is beyond the trace") }
        let expected = calls[next]
        guard function == expected.function else { throw Mismatch(description: "\(label): \(function), the host called \(expected.function)") }
        guard inputPositions == expected.inputPositions else {
            throw Mismatch(description: "\(label): positions \(inputPositions.first ?? -1)..., the host used \(expected.inputPositions.first ?? -1)...")
        }
        guard inputIds == expected.inputIds else { throw Mismatch(description: "\(label): input_ids differ from the host's") }
        guard logitsRow == expected.logitsRow else {
            throw Mismatch(description: "\(label): logits_row \(logitsRow.map(String.init) ?? "none"), the host's \(expected.logitsRow.map(String.init) ?? "none")")
        }
        guard stateIsFresh == expected.freshState else {
            throw Mismatch(description: "\(label): state fresh=\(stateIsFresh), the host's fresh=\(expected.freshState)")
        }
        guard Array(rows) == expected.rows.map(\.row) else {
            throw Mismatch(description: "\(label): rows \(rows) requested, the host read \(expected.rows.map(\.row))")
        }
        next += 1
        stateIsFresh = false
        return expected.rows.map { recorded in
            var row = [Float](repeating: -.infinity, count: vocabularySize)
            for (id, value) in zip(recorded.topIds, recorded.topValues) { row[id] = value }
            return row
        }
    }

    /// The calls of a trace's JSON list (trace_recording.py's format).
    static func calls(_ list: JSONValue?) -> [Call] {
        (list?.arrayValue ?? []).map { c in
            Call(freshState: c["fresh_state"]?.boolValue ?? false,
                 function: EngineFunction(rawValue: c["function"]?.stringValue ?? "") ?? .decode,
                 inputIds: Fixtures.ints(c["input_ids"]).map(Int32.init),
                 inputPositions: Fixtures.ints(c["input_pos"]).map(Int32.init),
                 logitsRow: c["logits_row"]?.intValue.map(Int32.init),
                 rows: (c["rows"]?.arrayValue ?? []).map { r in
                     Row(row: r["row"]?.intValue ?? -1, topIds: Fixtures.ints(r["top_ids"]),
                         topValues: (r["top_values"]?.arrayValue ?? []).compactMap { $0.doubleValue.map(Float.init) },
                         argmax: r["argmax"]?.intValue ?? -1)
                 })
        }
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
        func turn(_ t: JSONValue) -> Turn {
            Turn(promptText: t["prompt_text"]?.stringValue ?? "", promptIds: Fixtures.ints(t["prompt_ids"]),
                 reusedPrefix: t["reused_prefix"]?.intValue ?? 0, expectedTokens: Fixtures.ints(t["expected_tokens"]),
                 calls: ReplayBackend.calls(t["calls"]))
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

    /// The engine the app builds for the traced package (from its real manifest), over a replay of `calls`.
    func engine(replaying calls: [ReplayBackend.Call], manifest: ModelManifest) -> (KVCacheEngine, ReplayBackend) {
        let backend = ReplayBackend(calls: calls, vocabularySize: vocabularySize)
        return (KVCacheEngine(backend: backend, manifest: manifest, contextLength: contextLength, prefillChunkLength: prefillChunk), backend)
    }
}
