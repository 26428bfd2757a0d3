import Foundation
import Testing
@testable import ElmKit

/// The committed trace of a real Core ML speculative pair (Fixtures/coreml_pair/, make_pair_trace.py): every call
/// `elmexport generate PAIR` made to the target and to the draft, and what it produced.
struct PairTrace {
    let question: String
    let promptText: String
    let promptIds: [Int]
    let maxNewTokens: Int
    let eosTokenIds: [Int]
    let tokens: [Int]
    let proposed: Int
    let accepted: Int
    let targetCalls: Int
    let draftCalls: Int
    let targetPackageCalls: [ReplayBackend.Call]
    let draftPackageCalls: [ReplayBackend.Call]

    static let directory = Fixtures.root.appendingPathComponent("coreml_pair")

    static func load() throws -> PairTrace {
        let json = try Fixtures.json("coreml_pair/trace.json")
        let result = json["result"]
        return PairTrace(
            question: json["question"]?.stringValue ?? "", promptText: json["prompt_text"]?.stringValue ?? "",
            promptIds: Fixtures.ints(json["prompt_ids"]), maxNewTokens: json["max_new_tokens"]?.intValue ?? 0,
            eosTokenIds: Fixtures.ints(json["eos_token_ids"]), tokens: Fixtures.ints(result?["tokens"]),
            proposed: result?["proposed"]?.intValue ?? -1, accepted: result?["accepted"]?.intValue ?? -1,
            targetCalls: result?["target_calls"]?.intValue ?? -1, draftCalls: result?["draft_calls"]?.intValue ?? -1,
            targetPackageCalls: ReplayBackend.calls(json["target_calls"]),
            draftPackageCalls: ReplayBackend.calls(json["draft_calls"]))
    }
}

/// `SpeculativeDecoder` on a real pair folder, replayed: ElmKit opens the copied pair (pair.json, both manifests)
/// as the app does, builds each package's engine from its manifest over a replay of that package's recorded
/// calls, and must make exactly the calls elmexport/speculative.py made and reach exactly its result.
@Suite struct PairReplayTests {
    let trace: PairTrace
    let pair: SpeculativePair

    init() throws {
        trace = try PairTrace.load()
        pair = try SpeculativePair(directory: PairTrace.directory)
    }

    /// The engine a package's manifest asks for (context, prefill chunk, verify function, prefill's row input)
    /// over a replay of its recorded calls.
    func engines(targetCalls: [ReplayBackend.Call]? = nil, k: Int? = nil) throws
        -> (SpeculativeDecoder, target: ReplayBackend, draft: ReplayBackend) {
        var backends: [ReplayBackend] = []
        let decoder = try pair.decoder { package in
            let isTarget = package.directory == pair.target.directory
            let calls = isTarget ? (targetCalls ?? trace.targetPackageCalls) : trace.draftPackageCalls
            let vocabulary = package.manifest.modelConfig?["vocab_size"]?.intValue ?? 0
            let backend = ReplayBackend(calls: calls, vocabularySize: vocabulary, label: isTarget ? "target " : "draft ")
            backends.append(backend)
            return KVCacheEngine(backend: backend, manifest: package.manifest, contextLength: package.manifest.contextLength ?? 0,
                                 prefillChunkLength: package.manifest.prefillChunk ?? 0)
        }
        let decoding = k.map { SpeculativeDecoder(target: decoder.target, draft: decoder.draft, k: $0) } ?? decoder
        return (decoding, backends[0], backends[1])
    }

    @Test func opensThePairFolderTheExporterWrote() {
        #expect(pair.k == 3)
        #expect(pair.target.manifest.functions.contains("verify") && pair.target.manifest.verifyTokens == pair.k + 1)
        #expect(!pair.draft.manifest.functions.contains("verify"))
        #expect(pair.target.manifest.quantization == "none" && pair.draft.manifest.quantization == "int4")
        #expect(pair.stopTokenIds == Set(trace.eosTokenIds))
        // The prompt elmexport rendered: the target's template and system prompt around the question.
        #expect(pair.chatPrompt(trace.question) == trace.promptText)
    }

    @Test func makesThePythonCallsAndGivesItsTokens() throws {
        let (decoder, target, draft) = try engines()
        let result = try decoder.generate(prompt: trace.promptIds, maxNewTokens: trace.maxNewTokens, stopTokenIds: pair.stopTokenIds)
        #expect(result.tokens == trace.tokens)
        #expect(result.proposedDraftTokens == trace.proposed && result.acceptedDraftTokens == trace.accepted)
        #expect(result.targetCalls == trace.targetCalls && result.draftCalls == trace.draftCalls)
        #expect(target.isFinished && draft.isFinished)
        // The run ends at the context, where the target's last rounds go through decode (a padded verify call
        // would run past it), and some proposals were kept while others were not.
        #expect(result.finishReason == .contextFull)
        #expect(trace.promptIds.count + result.tokens.count == pair.target.manifest.contextLength)
        #expect(trace.targetPackageCalls.contains { $0.function == .verify } && trace.targetPackageCalls.last?.function == .decode)
        #expect(0 < result.acceptedDraftTokens && result.acceptedDraftTokens < result.proposedDraftTokens)
    }

    @Test func theReplayRejectsADecoderThatDiffersFromPython() throws {
        // Another k: the target's verify calls no longer match the recorded ones.
        let (otherK, _, _) = try engines(k: 2)
        #expect(throws: ReplayBackend.Mismatch.self) {
            try otherK.generate(prompt: trace.promptIds, maxNewTokens: trace.maxNewTokens, stopTokenIds: pair.stopTokenIds)
        }
        // A target engine without verify (one decode call per token) is caught at its first round.
        let (decoder, _, _) = try engines()
        let noVerify = KVCacheEngine(backend: ReplayBackend(calls: trace.targetPackageCalls, vocabularySize: decoder.target.vocabularySize),
                                     contextLength: decoder.target.contextLength, prefillChunkLength: decoder.target.prefillChunkLength)
        #expect(throws: ReplayBackend.Mismatch.self) {
            try SpeculativeDecoder(target: noVerify, draft: decoder.draft, k: pair.k)
                .generate(prompt: trace.promptIds, maxNewTokens: trace.maxNewTokens, stopTokenIds: pair.stopTokenIds)
        }
    }
}

/// What opening a folder that is not a usable pair says.
@Suite final class SpeculativePairOpeningTests {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("elmkit-pair-\(UUID().uuidString)")

    deinit { try? FileManager.default.removeItem(at: scratch) }

    /// A copy of the committed pair folder with pair.json and the target's manifest edited.
    func copy(pair edit: (String) -> String = { $0 }, targetManifest editManifest: (String) -> String = { $0 }) throws -> URL {
        try FileManager.default.copyItem(at: PairTrace.directory, to: scratch)
        let pairFile = scratch.appendingPathComponent("pair.json")
        let pairText = try String(contentsOf: pairFile, encoding: .utf8)
        try Data(edit(pairText).utf8).write(to: pairFile)
        let target = try SpeculativePair(directory: PairTrace.directory).target.directory.lastPathComponent
        let manifestFile = scratch.appendingPathComponent(target).appendingPathComponent("manifest.json")
        try Data(editManifest(try String(contentsOf: manifestFile, encoding: .utf8)).utf8).write(to: manifestFile)
        return scratch
    }

    func openingError(_ directory: URL) -> SpeculativePair.PairError? {
        do { _ = try SpeculativePair(directory: directory); return nil } catch { return error as? SpeculativePair.PairError }
    }

    @Test func aPackageFolderIsNotAPair() {
        let package = Fixtures.root.appendingPathComponent("coreml_engine")
        #expect(!SpeculativePair.isPair(package) && SpeculativePair.isPair(PairTrace.directory))
        guard case .notAPair = openingError(package) else { Issue.record("expected notAPair"); return }
    }

    @Test func aPackageNameLeavingTheFolderIsRefused() throws {
        let dir = try copy(pair: { $0.replacingOccurrences(of: "\"draft-smollm2", with: "\"../draft-smollm2") })
        guard case .notAPair = openingError(dir) else { Issue.record("expected notAPair"); return }
    }

    @Test func anOnnxPairIsRefused() throws {
        let dir = try copy(pair: { $0.replacingOccurrences(of: "\"runtime\": \"coreml\"", with: "\"runtime\": \"onnx\"") })
        #expect(openingError(dir) == .wrongRuntime("onnx"))
    }

    @Test func aTargetWithoutVerifyIsRefused() throws {
        let dir = try copy(targetManifest: { $0.replacingOccurrences(of: "\"verify_tokens\": 4", with: "\"verify_tokens\": 3") })
        guard case .targetCannotVerify = openingError(dir) else { Issue.record("expected targetCannotVerify"); return }
    }
}
