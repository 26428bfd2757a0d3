import Foundation
@testable import ElmKit

/// A clock that only moves when a fake model says its work took time.
final class FakeClock: GenerationClock {
    var time = 0.0
    func now() -> Double { time }
}

enum FakeModelError: Error { case writeBeyondCache(position: Int, cached: Int), outOfContext(Int), chunkTooLong(Int) }

/// A deterministic stand-in for an exported model.
///
/// Its "KV cache" is the list of tokens written at each position; a call at position `p` keeps positions `< p`
/// and overwrites the rest, like a real position-indexed cache. Logits depend only on the tokens at positions
/// `0...p`, so a caller that passes wrong positions gets different logits, and the tests notice.
class HistoryModel: LanguageModel {
    let vocabularySize: Int
    let contextLength: Int
    let prefillChunkLength: Int
    var history: [Int] = []
    private(set) var calls: [(kind: String, position: Int, count: Int)] = []
    var clock: FakeClock?
    var prefillCost = 0.0
    var decodeCost = 0.0

    init(vocabularySize: Int, contextLength: Int = 512, prefillChunkLength: Int = 8) {
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
        self.prefillChunkLength = prefillChunkLength
    }

    /// The logits after the last token of `context`.
    func logits(after context: ArraySlice<Int>) -> [Float] { fatalError("override") }

    func reset() throws { history = [] }

    private func write(_ tokens: [Int], at position: Int) throws -> [[Float]] {
        guard position <= history.count else { throw FakeModelError.writeBeyondCache(position: position, cached: history.count) }
        guard position + tokens.count <= contextLength else { throw FakeModelError.outOfContext(position + tokens.count) }
        history = Array(history[..<position]) + tokens
        return tokens.indices.map { logits(after: history[...(position + $0)]) }
    }

    func prefill(_ tokens: [Int], at position: Int, allLogits: Bool) throws -> [[Float]] {
        guard (1...prefillChunkLength).contains(tokens.count) else { throw FakeModelError.chunkTooLong(tokens.count) }
        calls.append(("prefill", position, tokens.count))
        clock?.time += prefillCost
        let rows = try write(tokens, at: position)
        return allLogits ? rows : [rows[rows.count - 1]]
    }

    func decode(_ token: Int, at position: Int) throws -> [Float] {
        calls.append(("decode", position, 1))
        clock?.time += decodeCost
        return try write([token], at: position)[0]
    }
}

/// Pseudo-random logits seeded by the whole context (through a running hash), different per `seed`.
final class HashModel: HistoryModel {
    let seed: UInt64

    init(seed: UInt64, vocabularySize: Int = 64, contextLength: Int = 512, prefillChunkLength: Int = 8) {
        self.seed = seed
        super.init(vocabularySize: vocabularySize, contextLength: contextLength, prefillChunkLength: prefillChunkLength)
    }

    static func contextHash(_ context: ArraySlice<Int>, seed: UInt64) -> UInt64 {
        var h = seed
        for t in context { h = (h ^ UInt64(t)) &* 0x100_0000_01B3 &+ 0x9E37 }
        return h
    }

    override func logits(after context: ArraySlice<Int>) -> [Float] {
        var rng = SplitMix64(seed: HashModel.contextHash(context, seed: seed))
        return (0..<vocabularySize).map { _ in Float(rng.nextDouble() * 10) }
    }
}

/// A draft that agrees with `target` on roughly `agreementPercent`% of contexts and otherwise never picks the
/// target's arg-max (so acceptance can be steered from 0 to 1).
final class DraftModel: HistoryModel {
    let target: HashModel
    let agreementPercent: UInt64

    init(target: HashModel, agreementPercent: UInt64, contextLength: Int? = nil) {
        self.target = target
        self.agreementPercent = agreementPercent
        super.init(vocabularySize: target.vocabularySize, contextLength: contextLength ?? target.contextLength, prefillChunkLength: 5)
    }

    override func logits(after context: ArraySlice<Int>) -> [Float] {
        var row = target.logits(after: context)
        if HashModel.contextHash(context, seed: 77) % 100 >= agreementPercent {
            let best = row.indices.max { row[$0] < row[$1] }!
            row[best] = -1  // below every other logit: the draft picks something else
        }
        return row
    }
}

/// Follows a script: after `prompt + script[0..<k]` it strongly prefers `script[k]`, elsewhere `fallback`.
final class ScriptedModel: HistoryModel {
    let prompt: [Int]
    let script: [Int]
    let fallback: Int

    init(prompt: [Int], script: [Int], vocabularySize: Int, fallback: Int = 5, contextLength: Int = 512, prefillChunkLength: Int = 8) {
        self.prompt = prompt
        self.script = script
        self.fallback = fallback
        super.init(vocabularySize: vocabularySize, contextLength: contextLength, prefillChunkLength: prefillChunkLength)
    }

    override func logits(after context: ArraySlice<Int>) -> [Float] {
        var row = [Float](repeating: 0, count: vocabularySize)
        let k = context.count - prompt.count
        if k >= 0, k < script.count, Array(context) == prompt + script[..<k] { row[script[k]] = 10 } else { row[fallback] = 10 }
        return row
    }
}
