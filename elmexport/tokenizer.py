"""Tokenizers: everything is a HF `tokenizer.json` handled by the `tokenizers` library.

Sources: a `tokenizer.json` given by the user, one next to the weights, the byte-level BPE embedded in a GGUF
(rebuilt here as a tokenizer.json), or the hub (OpenELM uses the Llama-2 tokenizer, which Apple does not ship).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from .errors import TokenizerError

LLAMA2_TOKENIZER_REPO = "meta-llama/Llama-2-7b-hf"  # the tokenizer OpenELM was trained with (gated on the hub)


@dataclass
class TextTokenizer:
    """A `tokenizers.Tokenizer` plus the ids generation needs."""

    tokenizer: Tokenizer
    bos_token_id: int | None
    eos_token_ids: list[int]
    add_bos: bool
    chat_template: str | None = None  # the checkpoint's own Jinja chat template (a GGUF's), kept for packages

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ([self.bos_token_id] if self.add_bos and self.bos_token_id is not None else []) + ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))


def read_tokenizer_json(path: str | Path) -> Tokenizer:
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.exists():
        raise TokenizerError(f"{path}: no tokenizer.json there; pass --tokenizer PATH to a tokenizer.json file")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise TokenizerError(f"{path}: not a valid tokenizer.json ({str(e).splitlines()[0][:160]})") from None


def tokenizer_from_gguf(gguf_file) -> Tokenizer:
    """Rebuild a GGUF's byte-level BPE (`tokenizer.ggml.model == "gpt2"`) as a HF tokenizer.

    SmolLM2's own tokenizer.json splits digits one by one before the GPT-2 byte-level regex; the GGUF records that
    as pre-tokenizer "smollm". Control tokens (type 3) become special added tokens so they never split.
    """
    kind = gguf_file.field("tokenizer.ggml.model")
    if kind != "gpt2":
        raise TokenizerError(f"{gguf_file.path}: GGUF tokenizer {kind!r} is not supported (only byte-level BPE 'gpt2')")
    tokens = gguf_file.field("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in gguf_file.field("tokenizer.ggml.merges") or []]
    types = gguf_file.field("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if gguf_file.field("tokenizer.ggml.pre") in ("smollm", "refact", "starcoder"):
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def make_text_tokenizer(tokenizer: Tokenizer, cfg) -> TextTokenizer:
    """Llama-2 / OpenELM need BOS prepended; byte-level BPE models (SmolLM2) do not use it in prompts."""
    return TextTokenizer(tokenizer, cfg.bos_token_id, list(cfg.eos_token_ids), add_bos=cfg.family == "openelm")


def resolve_tokenizer(cfg, explicit: str | Path | None, weights_dir: Path | None) -> Tokenizer:
    """--tokenizer PATH > tokenizer.json beside the weights > HF cache/hub > clear error."""
    if explicit:
        return read_tokenizer_json(explicit)
    if weights_dir is not None and (weights_dir / "tokenizer.json").exists():
        return read_tokenizer_json(weights_dir / "tokenizer.json")
    repo = LLAMA2_TOKENIZER_REPO if cfg.family == "openelm" else cfg.hf_repo
    if repo:
        from .weights.hub import hub_file

        path = hub_file(repo, "tokenizer.json")
        if path is not None:
            return read_tokenizer_json(path)
    raise TokenizerError(
        f"no tokenizer for {cfg.name}: pass --tokenizer PATH/tokenizer.json"
        + (f" (OpenELM uses the Llama-2 tokenizer from {LLAMA2_TOKENIZER_REPO}, which could not be reached)"
           if cfg.family == "openelm" else "")
    )
