"""Shared fixtures: a Llama-2-style tokenizer.json trained here (the real one is gated on the hub).

Every test builds its packages afresh: a reused package from the user's cache (artifact_cache.py) would let an
export test pass without exporting anything. tests/test_artifact_cache.py turns the cache on, in a folder of its own.
"""

import os
from pathlib import Path

import pytest

os.environ["ELMEXPORT_NO_CACHE"] = "1"  # inherited by the CLI subprocesses the tests start


def train_sentencepiece_style_tokenizer(path: Path, vocab_size: int = 600) -> Path:
    """SentencePiece-style BPE with byte fallback and the '▁' convention, <unk>=0 <s>=1 </s>=2, like Llama-2's."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials + [f"<0x{b:02X}>" for b in range(256)],
                                  show_progress=False)
    text = Path("/usr/share/common-licenses/GPL-3").read_text().splitlines()
    tok.train_from_iterator(text, trainer)
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def llama2_style_tokenizer(tmp_path_factory) -> Path:
    return train_sentencepiece_style_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")
