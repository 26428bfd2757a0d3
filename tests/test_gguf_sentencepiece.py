"""SentencePiece GGUFs (Llama-2 / TinyLlama / AMD-Llama style): the embedded vocabulary rebuilt as a HF tokenizer.

The reference is SentencePiece itself: a BPE model is trained here with Llama-2's settings (byte fallback, split
digits, no normalization, a dummy prefix), written into a GGUF with the `gguf` package's copy of llama.cpp's
converter vocabulary (`gguf.vocab.SentencePieceVocab`: tokens, scores, token types) and its GGUFWriter, read back
through elmexport's GGUF reader, and every encoding and decoding compared with the SentencePiece model's.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

from elmexport.errors import TokenizerError
from elmexport.weights.gguf_file import GGUFFile
from elmexport.weights.gguf_tokenizer import tokenizer_from_gguf

from .checkpoints import TINY_LLAMA_CONFIG, llama_hf_tensors
from .test_loading import _write_llama_gguf

GPL = Path("/usr/share/common-licenses/GPL-3").read_text()
CONTROL_TOKEN, USER_TOKEN = "<|im_end|>", "<|im_start|>"
# ids 0-2 as in Llama-2; one extra control token and one user-defined token, as chat fine-tunes add them
SPM_SETTINGS = dict(model_type="bpe", vocab_size=700, byte_fallback=True, split_digits=True,
                    normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
                    allow_whitespace_only_pieces=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2,
                    pad_id=-1, control_symbols=[CONTROL_TOKEN], user_defined_symbols=[USER_TOKEN], minloglevel=2)
TRAINING_EXTRA = ["naïve café déjà vu, “quoted” – dashes", "Straße Ünïcödé façade", "日本語のテキストです", "x = 1234567890"]
TEXTS = [
    "Hello world", "hello world.", " leading space", "trailing space ", "two  spaces   three    four", "   ",
    "", " ", "a", "digits 1234567890 and 3.14159, 2024-12-04", "007 x 42", "naïve café déjà vu", "Straße",
    "日本語のテキスト", "한국어 텍스트", "emoji 😀👍🏽 ok", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math", "tabs\tand\nnew lines\n\n", "\r\n",
    "Ω≈ç√∫˜µ≤≥÷", "e\u0301 combining", "ﬁ ligature", "▁ a visible space", "<unk> is plain text here", "<0x41>",
    "GNU General Public License", "THE PROGRAM IS PROVIDED \"AS IS\"", "(a) [b] {c} <d> 'e' \"f\" `g` ~h",
]


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory) -> Path:
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("spm")
    model = io.BytesIO()
    lines = [line for line in GPL.splitlines() if line.strip()] + TRAINING_EXTRA
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, **SPM_SETTINGS)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    return folder


@pytest.fixture(scope="module")
def sp(spm_dir):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(spm_dir / "tokenizer.model"))


def sentencepiece_vocab_writer(spm_dir: Path, pad_to: int | None = None, add_space_prefix: bool = True):
    """`write_vocab` for _write_llama_gguf: the converter's tokens, scores and types; ids as the model has them.

    llama.cpp's converter marks the model's user-defined pieces as USER_DEFINED (gguf-py's class leaves them
    NORMAL) and pads a vocabulary smaller than the embedding with UNUSED `[PAD{i}]` tokens; both are done here.
    """
    import gguf
    import gguf.vocab

    vocab = gguf.vocab.SentencePieceVocab(spm_dir)
    entries = list(vocab.all_tokens())
    tokens = [text.decode("utf-8") for text, _, _ in entries]
    scores = [float(score) for _, score, _ in entries]
    types = [int(gguf.TokenType.USER_DEFINED) if t == USER_TOKEN else int(kind) for t, (_, _, kind)
             in zip(tokens, entries)]
    for i in range(len(tokens), pad_to or len(tokens)):
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(int(gguf.TokenType.UNUSED))

    def write(writer, raw):
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        writer.add_add_space_prefix(add_space_prefix)

    return write, len(tokens)


def write_spm_gguf(path: Path, spm_dir: Path, pad_to: int | None = None) -> Path:
    """A tiny random Llama whose GGUF carries the SentencePiece vocabulary."""
    write, vocab_size = sentencepiece_vocab_writer(spm_dir, pad_to)
    raw = dict(TINY_LLAMA_CONFIG, vocab_size=vocab_size)
    _write_llama_gguf(path, raw, llama_hf_tensors(raw, seed=3), write_vocab=write)
    return path


@pytest.fixture(scope="module")
def spm_gguf(spm_dir, tmp_path_factory) -> Path:
    return write_spm_gguf(tmp_path_factory.mktemp("gguf") / "tiny-spm.gguf", spm_dir, pad_to=720)


@pytest.fixture(scope="module")
def rebuilt(spm_gguf):
    return tokenizer_from_gguf(GGUFFile(spm_gguf))


def many_texts() -> list[str]:
    """The hand-picked cases plus GPL lines and random spans of it, cut anywhere (mid-word, mid-space)."""
    rng = random.Random(0)
    lines = GPL.splitlines()
    spans = []
    for _ in range(150):
        start = rng.randrange(len(GPL) - 200)
        spans.append(GPL[start:start + rng.randrange(1, 200)])
    return TEXTS + TRAINING_EXTRA + rng.sample(lines, 150) + spans


def test_encodings_match_sentencepiece(sp, rebuilt):
    mismatches = []
    for text in many_texts():
        ours = rebuilt.encode(text, add_special_tokens=False).ids
        if ours != sp.encode(text):
            mismatches.append((text, [rebuilt.id_to_token(i) for i in ours], sp.encode(text, out_type=str)))
    assert not mismatches, f"{len(mismatches)} texts differ, first: {mismatches[0]}"


def test_decodings_match_sentencepiece(sp, rebuilt):
    for text in many_texts():
        ids = sp.encode(text)
        assert rebuilt.decode(ids) == sp.decode(ids), text


def test_byte_fallback_characters_become_byte_tokens(sp, rebuilt):
    """Characters the model never saw are spelled as their UTF-8 bytes, one <0xNN> token each."""
    text = "𝔘"
    tokens = rebuilt.encode(text, add_special_tokens=False).tokens
    assert tokens[-4:] == [f"<0x{b:02X}>" for b in text.encode("utf-8")]
    assert sp.encode(text, out_type=str) == tokens


def test_merges_follow_the_scores():
    """'abc' can merge as a+bc or ab+c: SentencePiece joins the pair whose piece scores higher, whatever its
    position; the BPE merge order derived from the scores must do the same."""
    from elmexport.weights.gguf_tokenizer import sentencepiece_merges

    from tokenizers import Tokenizer, models

    tokens = ["<unk>", "a", "b", "c", "ab", "bc"]
    for ab, bc, expected in ((-1.0, -5.0, ["ab", "c"]), (-5.0, -1.0, ["a", "bc"])):
        scores, types = [0.0, -10, -10, -10, ab, bc], [2, 1, 1, 1, 1, 1]
        merges = sentencepiece_merges(tokens, scores, types)
        tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, unk_token="<unk>"))
        assert tok.encode("abc").tokens == expected


def test_special_tokens_and_llama2_conventions(rebuilt, sp):
    """Control tokens (</s>, <|im_end|>) are one id each and vanish from decoded text; a user-defined token is one
    id and stays; `<s>` is put first by the post-processor, as Llama-2's tokenizer.json does for HF tools."""
    for token in ("<s>", "</s>", CONTROL_TOKEN, USER_TOKEN):
        ids = rebuilt.encode(f"x{token}y", add_special_tokens=False).ids
        assert sp.piece_to_id(token) in ids and len([i for i in ids if i == sp.piece_to_id(token)]) == 1
    # text after a special token gets its own '▁' prefix, as with Llama-2's tokenizer.json and in llama.cpp
    ids = rebuilt.encode(f"Hi{CONTROL_TOKEN}there{USER_TOKEN}", add_special_tokens=False).ids
    assert rebuilt.decode(ids) == f"Hi there{USER_TOKEN}"
    assert rebuilt.encode("Hello", add_special_tokens=True).ids == [1] + sp.encode("Hello")
    spec = json.loads(rebuilt.to_str())
    assert spec["model"]["type"] == "BPE" and spec["model"]["byte_fallback"] and spec["model"]["unk_token"] == "<unk>"
    assert spec["normalizer"]["normalizers"][0] == {"type": "Prepend", "prepend": "▁"}
    specials = {t["content"] for t in spec["added_tokens"] if t["special"]}
    assert {"<s>", "</s>", CONTROL_TOKEN} <= specials and USER_TOKEN not in specials


def test_padding_tokens_are_never_produced(rebuilt):
    vocab = rebuilt.get_vocab()
    pads = {vocab[f"[PAD{i}]"] for i in range(700, 720)}
    assert len(pads) == 20 and rebuilt.get_vocab_size() == 720
    assert not pads & set(rebuilt.encode(GPL[:3000], add_special_tokens=False).ids)


def test_without_space_prefix(spm_dir, tmp_path):
    """`tokenizer.ggml.add_space_prefix = false`: no '▁' is prepended, and decoding keeps a leading space."""
    write, vocab_size = sentencepiece_vocab_writer(spm_dir, add_space_prefix=False)
    raw = dict(TINY_LLAMA_CONFIG, vocab_size=vocab_size)
    path = tmp_path / "no-prefix.gguf"
    _write_llama_gguf(path, raw, llama_hf_tensors(raw), write_vocab=write)
    tok = tokenizer_from_gguf(GGUFFile(path))
    first = [tok.encode(text, add_special_tokens=False).tokens[0] for text in ("Hello", " Hello")]
    assert first[0] != first[1]
    for text in (" Hello", "Hello world", "  two"):
        assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text


def test_unknown_tokenizer_kind_is_one_line(spm_dir, tmp_path):
    def write_bert(writer, raw):  # a WordPiece vocabulary, as BERT-style GGUFs name theirs
        writer.add_tokenizer_model("bert")
        writer.add_token_list(["[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(raw["vocab_size"] - 3)])

    raw = TINY_LLAMA_CONFIG
    path = tmp_path / "bert.gguf"
    _write_llama_gguf(path, raw, llama_hf_tensors(raw), write_vocab=write_bert)
    with pytest.raises(TokenizerError, match=r"'bert' is not supported.*--tokenizer") as e:
        tokenizer_from_gguf(GGUFFile(path))
    assert "\n" not in str(e.value)


def test_model_flag_exports_a_sentencepiece_gguf(spm_gguf, sp, tmp_path):
    """`elmexport onnx --model tiny.gguf`: the package's tokenizer encodes as SentencePiece does, BOS first, and
    its tokenizer_config.json names the Llama conventions."""
    from elmexport.cli import main
    from elmexport.tokenizer import make_text_tokenizer, read_tokenizer_json
    from elmexport.weights.gguf_file import GGUFFile as Reader

    out = tmp_path / "pkg"
    assert main(["onnx", "--model", str(spm_gguf), "--context", "64", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"]["kind"] == "gguf" and manifest["bos_token_id"] == 1
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert (config["tokenizer_class"], config["add_bos_token"], config["bos_token"], config["eos_token"],
            config["unk_token"]) == ("LlamaTokenizer", True, "<s>", "</s>", "<unk>")
    package_tokenizer = make_text_tokenizer(read_tokenizer_json(out), Reader(spm_gguf).config)
    for text in TEXTS[:12] + GPL.splitlines()[:40]:
        assert package_tokenizer.encode(text) == [1] + sp.encode(text), text
