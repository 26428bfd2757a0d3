"""A GGUF's embedded tokenizer rebuilt as a Hugging Face tokenizer (the `tokenizers` library).

llama.cpp's converter stores one of two kinds, named by `tokenizer.ggml.model`:

- "gpt2": byte-level BPE (SmolLM2, GPT-2 style): the token strings and the merge list, as in a tokenizer.json.
- "llama": SentencePiece BPE (Llama-2, TinyLlama, AMD-Llama, OpenELM): token strings, one score per token and
  token types, no merges. SentencePiece merges the adjacent pair whose joined piece has the highest score, so
  the merge list a BPE model needs is derived from the scores. The result is built the way Hugging Face ships
  Llama-2's tokenizer.json: a "▁" prepended and spaces turned into "▁" by the normalizer, BPE with byte fallback
  (`<0x41>` tokens for characters outside the vocabulary), the unknown token, and a decoder that undoes all of it.

Control tokens (type 3) become special added tokens so text like "<|im_end|>" or "</s>" is never split;
user-defined tokens (type 4) are added tokens that are matched whole but stay in decoded text.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ..errors import TokenizerError
from ..raw_fields import shown

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # gguf.TokenType
SPACE = "▁"  # SentencePiece's visible space (U+2581)


def tokenizer_from_gguf(gguf_file) -> Tokenizer:
    kind = gguf_file.field("tokenizer.ggml.model")
    tokens = gguf_file.field("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise TokenizerError(f"{gguf_file.path}: GGUF has no token list (tokenizer.ggml.tokens); pass --tokenizer "
                             f"PATH to the model's tokenizer.json")
    types = gguf_file.field("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise TokenizerError(f"{gguf_file.path}: {len(types)} token types for {len(tokens)} tokens; re-convert the "
                             f"GGUF or pass --tokenizer PATH")
    if kind == "gpt2":
        tok = _byte_level_bpe(gguf_file, tokens)
    elif kind == "llama":
        tok = _sentencepiece_bpe(gguf_file, tokens, types)
    else:
        raise TokenizerError(f"{gguf_file.path}: GGUF tokenizer {shown(kind)} is not supported (byte-level BPE "
                             f"'gpt2' and SentencePiece 'llama' are); pass --tokenizer PATH to a tokenizer.json")
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types)
                    if ty == USER_DEFINED])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types)
                            if ty == CONTROL])
    return tok


def _vocab(tokens: list[str]) -> dict[str, int]:
    """Token string -> id; a string listed twice keeps its first id (some converters pad with repeats)."""
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    return vocab


def _byte_level_bpe(gguf_file, tokens: list[str]) -> Tokenizer:
    """SmolLM2's own tokenizer.json splits digits one by one before the GPT-2 byte-level regex; the GGUF records
    that as pre-tokenizer "smollm"."""
    merges = [tuple(m.split(" ", 1)) for m in gguf_file.field("tokenizer.ggml.merges") or []]
    tok = Tokenizer(models.BPE(vocab=_vocab(tokens), merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if gguf_file.field("tokenizer.ggml.pre") in ("smollm", "refact", "starcoder"):
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    return tok


def sentencepiece_merges(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """BPE merges equivalent to SentencePiece's score order.

    Every ordinary piece that splits into two ordinary pieces is a merge of those two; a merge ranks by the score
    of the piece it makes (higher first), ties broken by the ids of the two halves so the order is reproducible.
    """
    mergeable = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (NORMAL, USER_DEFINED)}
    ranked = []
    for piece, piece_id in mergeable.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in mergeable and right in mergeable:
                ranked.append((-scores[piece_id], mergeable[left], mergeable[right], left, right))
    ranked.sort()
    return [(left, right) for _, _, _, left, right in ranked]


def _sentencepiece_bpe(gguf_file, tokens: list[str], types: list[int]) -> Tokenizer:
    scores = gguf_file.field("tokenizer.ggml.scores")
    if not isinstance(scores, list) or len(scores) != len(tokens):
        raise TokenizerError(f"{gguf_file.path}: a SentencePiece GGUF needs one score per token "
                             f"(tokenizer.ggml.scores); re-convert the GGUF or pass --tokenizer PATH")
    unk_id = gguf_file.field("tokenizer.ggml.unknown_token_id")
    if unk_id is None:
        unk_id = next((i for i, ty in enumerate(types) if ty == UNKNOWN), None)
    unk = tokens[unk_id] if isinstance(unk_id, int) and 0 <= unk_id < len(tokens) else None
    byte_fallback = any(ty == BYTE for ty in types)
    tok = Tokenizer(models.BPE(vocab=_vocab(tokens), merges=sentencepiece_merges(tokens, scores, types),
                               unk_token=unk, fuse_unk=True, byte_fallback=byte_fallback))
    space_prefix = gguf_file.field("tokenizer.ggml.add_space_prefix", True) is not False
    steps = [normalizers.Prepend(SPACE)] if space_prefix else []
    tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", SPACE)])
    undo = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    tok.decoder = decoders.Sequence(undo + ([decoders.Strip(" ", 1, 0)] if space_prefix else []))
    tok.post_processor = _bos_eos_template(gguf_file, tokens)
    return tok


def _bos_eos_template(gguf_file, tokens: list[str]):
    """BOS (and EOS if the GGUF asks) around encoded text, as Llama-2's tokenizer.json adds them for HF tools
    (elmexport encodes without it and prepends BOS itself, see tokenizer.make_text_tokenizer)."""
    def token(key):
        i = gguf_file.field(key)
        return (tokens[i], i) if isinstance(i, int) and 0 <= i < len(tokens) else None

    bos, eos = token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")
    add_bos = bos is not None and gguf_file.field("tokenizer.ggml.add_bos_token", True) is not False
    add_eos = eos is not None and gguf_file.field("tokenizer.ggml.add_eos_token", False) is True
    if not (add_bos or add_eos):
        return None

    def sequence(piece: str, type_id: int) -> list[str]:
        return ([f"{bos[0]}:{type_id}"] if add_bos else []) + [f"{piece}:{type_id}"] + \
            ([f"{eos[0]}:{type_id}"] if add_eos else [])

    specials = dict(([bos] if add_bos else []) + ([eos] if add_eos else []))
    return processors.TemplateProcessing(single=sequence("$A", 0), pair=sequence("$A", 0) + sequence("$B", 1),
                                         special_tokens=list(specials.items()))
