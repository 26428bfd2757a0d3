/// A model that knows which token sits at each position of its KV cache, so a new prompt that extends what the
/// cache holds (the next chat turn) needs only its new tokens prefilled.
public protocol KVReusingModel: LanguageModel {
    /// Tokens at cache positions `0..<cachedTokens.count`, in order.
    var cachedTokens: [Int] { get }
}

extension KVReusingModel {
    /// How many leading tokens of `prompt` are already in the cache and can be kept.
    ///
    /// At most `prompt.count - 1`: the last prompt token is always run again, because its logits row (the one the
    /// first new token is sampled from) is not stored anywhere. 0 means start over with a fresh state.
    public func reusablePrefix(for prompt: [Int]) -> Int {
        var n = 0
        let limit = min(cachedTokens.count, prompt.count)
        while n < limit, cachedTokens[n] == prompt[n] { n += 1 }
        return max(0, min(n, prompt.count - 1))
    }
}
