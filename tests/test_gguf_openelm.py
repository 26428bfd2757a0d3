"""OpenELM GGUFs, laid out as llama.cpp's converter writes them, load as the HF checkpoint they came from.

The converter (its `OpenELMModel`) keeps OpenELM's fused `qkv_proj` as `attn_qkv` without permuting rows (llama.cpp
rotates OpenELM the rotate-half way), splits each layer's `proj_1` into `ffn_gate` (the first ffn_dim rows) and
`ffn_up`, writes the per-layer head counts and FFN widths as arrays, and embeds Llama-2's SentencePiece vocabulary
(Apple ships no tokenizer). The file here is written the same way with the `gguf` package's writer, and the loaded
model is checked against the independent reference forward on the original HF tensors.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from elmexport.api import load
from elmexport.chat import PROBE_CONVERSATIONS, render_chat
from elmexport.cli import main
from elmexport.models.config import ConfigError, get_preset
from elmexport.weights.sources import load_model
from elmexport.weights.spec import ModelSpec

from .checkpoints import openelm_hf_tensors
from .reference_impl import openelm_forward
from .test_gguf_sentencepiece import sentencepiece_vocab_writer, sp, spm_dir  # noqa: F401 (fixtures)

VOCAB = 720  # the trained SentencePiece vocabulary padded with UNUSED tokens, as the converter pads


def write_openelm_gguf(path, cfg, w, write_vocab, name="OpenELM-Tiny-Instruct", ffn_lengths=None):
    import gguf

    writer = gguf.GGUFWriter(str(path), "openelm")
    writer.add_name(name)
    writer.add_block_count(cfg.num_layers)
    writer.add_context_length(cfg.max_context_length)
    writer.add_embedding_length(cfg.model_dim)
    writer.add_feed_forward_length(ffn_lengths or cfg.ffn_dims)
    writer.add_head_count(cfg.num_query_heads)
    writer.add_head_count_kv(cfg.num_kv_heads)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    write_vocab(writer, None)
    layer = {"attn_norm": "attn_norm", "attn.qkv_proj": "attn_qkv", "attn.q_norm": "attn_q_norm",
             "attn.k_norm": "attn_k_norm", "attn.out_proj": "attn_output", "ffn_norm": "ffn_norm",
             "ffn.proj_2": "ffn_down"}
    for hf_name, t in w.items():
        a = t.numpy()
        if hf_name == "transformer.token_embeddings.weight":
            writer.add_tensor("token_embd.weight", a)
            continue
        if hf_name == "transformer.norm.weight":
            writer.add_tensor("output_norm.weight", a)
            continue
        i, rest = hf_name.split(".")[2], ".".join(hf_name.split(".")[3:-1])
        if rest == "ffn.proj_1":
            f = cfg.ffn_dims[int(i)]
            writer.add_tensor(f"blk.{i}.ffn_gate.weight", np.ascontiguousarray(a[:f]))
            writer.add_tensor(f"blk.{i}.ffn_up.weight", np.ascontiguousarray(a[f:]))
        else:
            writer.add_tensor(f"blk.{i}.{layer[rest]}.weight", a)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny(spm_dir):  # noqa: F811
    cfg = dataclasses.replace(get_preset("openelm-tiny"), vocab_size=VOCAB)
    return cfg, openelm_hf_tensors(cfg, seed=11), sentencepiece_vocab_writer(spm_dir, pad_to=VOCAB)[0]


def test_openelm_gguf_loads_as_its_checkpoint(tmp_path, tiny, sp):  # noqa: F811
    cfg, w, vocab = tiny
    path = write_openelm_gguf(tmp_path / "openelm-tiny.gguf", cfg, w, vocab)
    loaded = load_model(ModelSpec(weights=str(path)), log=lambda *a, **k: None)
    got = loaded.cfg
    assert (got.family, got.num_query_heads, got.num_kv_heads, got.ffn_dims, got.head_dim, got.vocab_size) == (
        "openelm", [4, 8, 8, 8], [1, 2, 2, 2], [256, 512, 768, 1024], 32, VOCAB)
    assert got.qk_norm and got.tie_word_embeddings and got.chat_template == "openelm"
    ids = torch.tensor([[1, 5, 99, 300, 7, 42, 650, 12]])
    with torch.no_grad():
        ours = loaded.model(ids, torch.arange(ids.shape[1]))
    ref = openelm_forward(w, cfg.num_layers, cfg.num_query_heads, cfg.num_kv_heads, cfg.head_dim, ids)
    assert (ours - ref).abs().max() <= 1e-4
    text = "The capital of France is Paris."
    assert loaded.tokenizer.tokenizer.encode(text, add_special_tokens=False).ids == sp.encode(text)


@pytest.mark.parametrize("target", ["onnx", "coreml"])
def test_openelm_gguf_exports_from_the_cli(tmp_path, tiny, target):
    """`elmexport onnx|coreml --model model.gguf`: the GGUF's own config, tokenizer and OpenELM-Instruct template."""
    cfg, w, vocab = tiny
    path = write_openelm_gguf(tmp_path / "model.gguf", cfg, w, vocab)
    out = tmp_path / "pkg"
    assert main([target, "--model", str(path), "--context", "32", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["family"] == "openelm" and manifest["model"]["config"]["ffn_dims"] == [256, 512, 768, 1024]
    assert manifest["weights"]["kind"] == "gguf" and manifest["chat_template"] == "openelm"
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert "<|assistant|>" in tokenizer_config["chat_template"]  # OpenELM-Instruct's format
    if target == "coreml":
        assert list(out.glob("*.mlpackage")) and (out / "tokenizer.json").is_file()
    else:
        _genai_chats_with_the_ids_we_generate_from(out)


def _genai_chats_with_the_ids_we_generate_from(package):
    """onnxruntime-genai renders the package's template and encodes the text without adding special tokens; the
    ids it would give the model must be the ones elmexport gives it (BOS first, once)."""
    import onnxruntime_genai as og

    loaded = load(package)
    genai = og.Tokenizer(og.Config(str(package)))
    for messages in PROBE_CONVERSATIONS:
        theirs = genai.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
        ours = render_chat(loaded.chat_template, messages, loaded.system_prompt, add_generation_prompt=True)
        ids = loaded.tokenizer.encode(ours)
        assert ids[0] == 1 and ids[1] != 1
        assert [int(i) for i in genai.encode(theirs)] == ids


def test_openelm_gguf_with_wrong_ffn_list_is_one_line(tmp_path, tiny, capsys):
    cfg, w, vocab = tiny
    path = write_openelm_gguf(tmp_path / "bad.gguf", cfg, w, vocab, ffn_lengths=[256, 512, 768])
    with pytest.raises(ConfigError, match="feed_forward_length.*3 entries for 4 layers"):
        load_model(ModelSpec(weights=str(path)), log=lambda *a, **k: None)
    assert main(["onnx", "--model", str(path), "--context", "32", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "feed_forward_length" in err[0]
