/// Outcome of a speculative run (the fields of elmexport.speculative.SpeculativeResult).
public struct SpeculativeResult: Sendable {
    /// Generated ids, without a final end-of-sequence id.
    public let tokens: [Int]
    public let finishReason: FinishReason
    /// Draft tokens offered to the target, and how many of them it accepted.
    public let proposedDraftTokens: Int
    public let acceptedDraftTokens: Int
    /// Target calls, the prompt's included (the target alone takes one per new token).
    public let targetCalls: Int
    /// Draft calls: its prompt, then per round a catch-up call and one call per further proposal.
    public let draftCalls: Int

    /// Target calls after the prompt's: one verification per round.
    public var verificationPasses: Int { max(0, targetCalls - 1) }
    public var acceptanceRate: Double { proposedDraftTokens > 0 ? Double(acceptedDraftTokens) / Double(proposedDraftTokens) : 0 }
    /// New tokens per target call (1 for the target alone, up to k + 1).
    public var tokensPerTargetCall: Double { targetCalls > 0 ? Double(tokens.count) / Double(targetCalls) : 0 }
}

/// Greedy speculative decoding, the algorithm of elmexport/speculative.py call for call: a small draft proposes
/// up to `k` tokens, the target scores its last kept token plus the proposals in one call that returns a row per
/// token (`prefill` with `allLogits`: a Core ML target's `verify` function), and the proposals are kept up to the
/// first one that differs from the target's arg-max, followed by that arg-max.
///
/// Why the output equals plain greedy decoding of the target: every kept token is the target's arg-max given the
/// kept tokens before it. Rejected positions need no rollback: positions are explicit, so the next call writes
/// over their slots (see `LanguageModel`).
///
/// Invariants of the loop, with `sequence` = prompt + kept tokens and n = its length: the target's cache holds
/// positions 0..<n-1 (sequence[n-1] is the first token of the next verification); the draft's cache holds
/// 0..<draftFed, draftFed <= n - 1, and it catches up on sequence[draftFed...] first. The golden tests replay a
/// pair's calls recorded from the Python implementation (Fixtures/make_pair_trace.py) and must match them exactly.
public final class SpeculativeDecoder {
    public let target: LanguageModel
    public let draft: LanguageModel
    /// Proposals per round (a pair's `k`, pair.json).
    public let k: Int

    public init(target: LanguageModel, draft: LanguageModel, k: Int = 4) {
        precondition(k >= 1, "k must be at least 1")
        self.target = target
        self.draft = draft
        self.k = k
    }

    /// `onToken` sees each kept token in order; returning false cancels. At most `maxNewTokens`, and at most what
    /// is left of the smaller context after the prompt (as `elmexport generate PAIR`).
    public func generate(prompt: [Int], maxNewTokens: Int, stopTokenIds: Set<Int> = [],
                         onToken: (Int) -> Bool = { _ in true }) throws -> SpeculativeResult {
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        let context = min(target.contextLength, draft.contextLength)
        guard prompt.count < context else { throw GenerationError.promptTooLong(tokens: prompt.count, contextLength: context) }
        let budget = min(maxNewTokens, context - prompt.count)
        try target.reset()
        try draft.reset()

        var sequence = prompt
        var generated: [Int] = []
        var proposed = 0, accepted = 0, targetCalls = 0, draftCalls = 0
        var finish: FinishReason = budget < maxNewTokens ? .contextFull : .maxTokens

        /// Keeps one target token; false when generation must stop.
        func emit(_ token: Int) -> Bool {
            if stopTokenIds.contains(token) { finish = .endOfSequence; return false }
            generated.append(token)
            sequence.append(token)
            if !onToken(token) || Task.isCancelled { finish = .cancelled; return false }
            return generated.count < budget
        }
        func result() -> SpeculativeResult {
            SpeculativeResult(tokens: generated, finishReason: finish, proposedDraftTokens: proposed,
                              acceptedDraftTokens: accepted, targetCalls: targetCalls, draftCalls: draftCalls)
        }

        let first = argmax(try target.prefillChunked(prompt, from: 0)[0])
        targetCalls += 1
        _ = try draft.prefillChunked(prompt, from: 0)  // only its cache is needed
        draftCalls += 1
        var draftFed = prompt.count
        var going = budget > 0 && emit(first)
        while going {
            let n = sequence.count
            let kk = max(0, min(k, context - n, budget - generated.count - 1))
            var proposals: [Int] = []
            if kk > 0 {
                var logits = try draft.prefillChunked(Array(sequence[draftFed...]), from: draftFed)[0]  // catch up
                draftCalls += 1
                proposals.append(argmax(logits))
                for i in 1..<kk {
                    logits = try draft.prefillChunked([proposals[proposals.count - 1]], from: n - 1 + i)[0]
                    draftCalls += 1
                    proposals.append(argmax(logits))
                }
            }
            let rows = try target.prefillChunked([sequence[n - 1]] + proposals, from: n - 1, allLogits: true)
            targetCalls += 1
            var m = 0
            while m < proposals.count, argmax(rows[m]) == proposals[m] { m += 1 }
            proposed += kk
            accepted += m
            if kk > 0 { draftFed = min(n - 1 + kk, n + m) }  // its slots past that hold rejected proposals
            for token in proposals[..<m] + [argmax(rows[m])] {
                going = emit(token)
                if !going { break }
            }
        }
        return result()
    }

    /// The first index of the largest value (numpy's argmax).
    private func argmax(_ row: [Float]) -> Int {
        var best = 0
        for i in row.indices where row[i] > row[best] { best = i }
        return best
    }
}
