/// Ids to text: all the generation loop needs from a tokenizer.
///
/// Why a protocol: the loop's token choices do not depend on text, so tests can drive it with a model whose
/// vocabulary is not on disk (the recorded Core ML trace) without inventing a tokenizer for it.
public protocol TokenTextDecoder {
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String
}

extension Tokenizer: TokenTextDecoder {}
