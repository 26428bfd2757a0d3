"""Tokenizers: everything is a HF `tokenizer.json` handled by the `tokenizers` library.

Sources: a `tokenizer.json` given by the user, one next to the weights, the tokenizer embedded in a GGUF (rebuilt
as a tokenizer.json by weights/gguf_tokenizer.py), or the hub (OpenELM uses the Llama-2 tokenizer, which Apple does
not ship).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .errors import TokenizerError

LLAMA2_TOKENIZER_REPO = "meta-llama/Llama-2-7b-hf"  # the tokenizer OpenELM was trained with (gated on the hub)


@dataclass
class TextTokenizer:
    """A `tokenizers.Tokenizer` plus the ids generation needs."""

    tokenizer: Tokenizer
    bos_token_id: int | None
    eos_token_ids: list[int]
    add_bos: bool
    chat_template: str | None = None  # the checkpoint's own Jinja chat template (GGUF or HF folder), for packages

    def encode(self, text: str) -> list[int]:
        """BOS first when the model wants it, once: a chat template may already write it (Llama-2's does)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if self.add_bos and self.bos_token_id is not None and ids[:1] != [self.bos_token_id]:
            ids = [self.bos_token_id] + ids
        return ids

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


def make_text_tokenizer(tokenizer: Tokenizer, cfg) -> TextTokenizer:
    """Llama-2 / OpenELM need BOS prepended; byte-level BPE models (SmolLM2) do not use it in prompts.

    OpenELM always does (it reads the Llama-2 tokenizer); other models do when their tokenizer.json says so, as
    Llama-2's and a SentencePiece GGUF's do with a post-processor that puts BOS first. Both facts travel with the
    package (config and tokenizer.json), so export, `load` and validation decide alike.
    """
    return TextTokenizer(tokenizer, cfg.bos_token_id, list(cfg.eos_token_ids),
                         add_bos=cfg.family == "openelm" or _prepends_bos(tokenizer, cfg.bos_token_id))


def _prepends_bos(tokenizer: Tokenizer, bos_token_id: int | None) -> bool:
    """Whether encoding with the tokenizer's own special tokens puts BOS first (asked of the tokenizer itself)."""
    if bos_token_id is None:
        return False
    with_specials = tokenizer.encode("a", add_special_tokens=True).ids
    without = tokenizer.encode("a", add_special_tokens=False).ids
    return with_specials[:1] == [bos_token_id] and without[:1] != [bos_token_id]


def resolve_tokenizer(cfg, explicit: str | Path | None, weights_dir: Path | None) -> Tokenizer:
    """--tokenizer PATH > tokenizer.json beside the weights > HF cache/hub > clear error."""
    if explicit:
        return read_tokenizer_json(explicit)
    if weights_dir is not None and (weights_dir / "tokenizer.json").exists():
        return read_tokenizer_json(weights_dir / "tokenizer.json")
    repo = LLAMA2_TOKENIZER_REPO if cfg.family == "openelm" else cfg.hf_repo
    how = None
    if repo:
        from .weights.hub import hub_file

        path, how = hub_file(repo, "tokenizer.json")
        if path is not None:
            return read_tokenizer_json(path)
    raise TokenizerError(
        f"no tokenizer for {cfg.name}: pass --tokenizer PATH/tokenizer.json"
        + (f" (OpenELM uses the Llama-2 tokenizer from {LLAMA2_TOKENIZER_REPO}: {how})"
           if cfg.family == "openelm" else f" ({how})" if how else "")
    )
