"""The benchmark prompt: n token ids of a plain English text that is on every Debian box (the GPL-3).

One helper for every driver, so the side-by-side table, the onnxruntime-genai driver and the ExecuTorch driver
feed the same ids. The ids must round-trip through the tokenizer (decode, then encode gives them back):
ExecuTorch's TextLLMRunner takes text, not ids, and would otherwise see a different prompt.
"""

from __future__ import annotations

from pathlib import Path

PROMPT_TEXT = Path("/usr/share/common-licenses/GPL-3")


def benchmark_prompt_ids(tokenizer_path: Path, n: int = 128, text_path: Path = PROMPT_TEXT) -> list[int]:
    """The first n-token window of text_path that decodes and re-encodes to itself under tokenizer_path."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    ids = tok.encode(Path(text_path).read_text(), add_special_tokens=False).ids
    for start in range(len(ids) - n):
        cut = ids[start:start + n]
        if tok.encode(tok.decode(cut), add_special_tokens=False).ids == cut:
            return cut
    raise ValueError(f"{text_path}: no {n}-token window round-trips through {tokenizer_path}")
