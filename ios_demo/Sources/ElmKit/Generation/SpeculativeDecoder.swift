/// Outcome of a speculative run.
public struct SpeculativeResult: Sendable {
    /// Generated ids, without a final end-of-sequence id.
    public let tokens: [Int]
    public let finishReason: FinishReason
    /// Draft tokens offered to the target, and how many of them it accepted.
    public let proposedDraftTokens: Int
    public let acceptedDraftTokens: Int
    /// Target forward passes (prompt chunks excluded): one verification per round.
    public let verificationPasses: Int

    public var acceptanceRate: Double { proposedDraftTokens > 0 ? Double(acceptedDraftTokens) / Double(proposedDraftTokens) : 0 }
}

/// Greedy speculative decoding: a small draft model proposes `draftLength` tokens, the target checks them all in
/// one prefill-shaped pass, and the longest agreeing prefix plus the target's own next token is kept.
///
/// Why the output equals plain greedy decoding of the target: every kept token is the target's arg-max given the
/// kept tokens before it (a draft token is kept only if it is that arg-max). Rejected positions need no rollback:
/// the next call writes at their positions (see `LanguageModel`).
public final class SpeculativeDecoder {
    public let target: LanguageModel
    public let draft: LanguageModel
    public let draftLength: Int

    public init(target: LanguageModel, draft: LanguageModel, draftLength: Int = 4) {
        precondition(draftLength >= 1, "draftLength must be at least 1")
        self.target = target
        self.draft = draft
        self.draftLength = draftLength
    }

    /// `onToken` sees each kept token in order; returning false cancels.
    public func generate(prompt: [Int], maxNewTokens: Int, stopTokenIds: Set<Int> = [],
                         onToken: (Int) -> Bool = { _ in true }) throws -> SpeculativeResult {
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        let context = min(target.contextLength, draft.contextLength)
        guard prompt.count <= context else { throw GenerationError.promptTooLong(tokens: prompt.count, contextLength: context) }
        try target.reset()
        try draft.reset()

        var sequence = prompt
        var generated: [Int] = []
        var proposed = 0, accepted = 0, passes = 0
        var draftValid = 0  // the draft's cache agrees with sequence[0..<draftValid]

        /// Appends kept tokens; returns a finish reason when one of them ends the run.
        func keep(_ tokens: [Int]) -> FinishReason? {
            for token in tokens {
                if stopTokenIds.contains(token) { return .endOfSequence }
                sequence.append(token)
                generated.append(token)
                if !onToken(token) { return .cancelled }
                if generated.count >= maxNewTokens { return .maxTokens }
            }
            return nil
        }

        // The target's cache always holds every kept token but the last.
        if maxNewTokens <= 0 { return result([], .maxTokens, 0, 0, 0) }
        let first = argmax(try target.prefillChunked(prompt, from: 0)[0])
        if let reason = keep([first]) { return result(generated, reason, 0, 0, 0) }

        while true {
            let n = sequence.count
            let k = min(draftLength, maxNewTokens - generated.count, context - n)
            if k <= 0 {
                // No room for a draft: one plain target step, if a position is left.
                guard n <= context else { return result(generated, .contextFull, proposed, accepted, passes) }
                let next = argmax(try target.decode(sequence[n - 1], at: n - 1))
                passes += 1
                if let reason = keep([next]) { return result(generated, reason, proposed, accepted, passes) }
                continue
            }

            // Draft: catch up on kept tokens it has not seen, then propose k tokens greedily.
            var proposal = [argmax(try draft.prefillChunked(Array(sequence[draftValid..<n]), from: draftValid)[0])]
            while proposal.count < k {
                proposal.append(argmax(try draft.decode(proposal[proposal.count - 1], at: n + proposal.count - 1)))
            }

            // Target: rows[i] predicts the token after sequence[n-1], proposal[0..<i].
            let rows = try target.prefillChunked([sequence[n - 1]] + proposal, from: n - 1, allLogits: true)
            passes += 1
            var m = 0
            while m < k, argmax(rows[m]) == proposal[m] { m += 1 }
            proposed += k
            accepted += m
            draftValid = n + min(m, k - 1)  // it was fed proposal[0..<k-1]
            if let reason = keep(Array(proposal[..<m]) + [argmax(rows[m])]) {
                return result(generated, reason, proposed, accepted, passes)
            }
        }
    }

    private func result(_ tokens: [Int], _ reason: FinishReason, _ proposed: Int, _ accepted: Int, _ passes: Int) -> SpeculativeResult {
        SpeculativeResult(tokens: tokens, finishReason: reason, proposedDraftTokens: proposed,
                          acceptedDraftTokens: accepted, verificationPasses: passes)
    }

    private func argmax(_ row: [Float]) -> Int {
        var best = 0
        for i in row.indices where row[i] > row[best] { best = i }
        return best
    }
}
