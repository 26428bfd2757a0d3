"""Weight loading: HF OpenELM/Llama directories, shards, bf16, GGUF, and the one-line errors for bad input."""

import numpy as np
import pytest
import torch

from elmexport.errors import WeightsError
from elmexport.models.config import get_preset
from elmexport.weights.gguf_file import permute_qk, unpermute_qk
from elmexport.weights.sources import load_model
from elmexport.weights.spec import ModelSpec

from .checkpoints import TINY_LLAMA_CONFIG, llama_hf_tensors, openelm_config_json, openelm_hf_tensors, write_hf_dir
from .reference_impl import llama_forward


def _quiet(*_a, **_k):
    pass


def _load(path, **kw):
    return load_model(ModelSpec(weights=str(path), tokenizer_mode="skip", **kw), log=_quiet)


@pytest.fixture(scope="module")
def tiny_openelm():
    cfg = get_preset("openelm-tiny")
    return cfg, openelm_hf_tensors(cfg, seed=5)


def _check_same_weights(model, tensors, prefix="transformer."):
    sd = model.state_dict()
    for name, t in tensors.items():
        ours = sd[name.removeprefix(prefix)]
        assert torch.equal(ours, t.float()), name


@pytest.mark.parametrize("shards", [1, 3])
def test_openelm_hf_dir_loads(tmp_path, tiny_openelm, shards):
    cfg, w = tiny_openelm
    path = write_hf_dir(tmp_path / "ckpt", w, openelm_config_json(cfg), shards=shards)
    loaded = _load(path, model="openelm-tiny")
    assert loaded.cfg.num_query_heads == cfg.num_query_heads and loaded.cfg.ffn_dims == cfg.ffn_dims
    _check_same_weights(loaded.model, w)


def test_openelm_config_read_without_preset(tmp_path, tiny_openelm):
    cfg, w = tiny_openelm
    path = write_hf_dir(tmp_path / "ckpt", w, openelm_config_json(cfg))
    loaded = _load(path)  # no --model: the checkpoint's own config.json decides, FFN widths computed
    assert loaded.cfg.ffn_dims == cfg.ffn_dims and loaded.cfg.num_kv_heads == cfg.num_kv_heads


def test_bf16_checkpoint_loads_as_fp32(tmp_path, tiny_openelm):
    cfg, w = tiny_openelm
    path = write_hf_dir(tmp_path / "ckpt", w, openelm_config_json(cfg), dtype=torch.bfloat16)
    loaded = _load(path)
    emb = loaded.model.token_embeddings.weight
    assert emb.dtype == torch.float32
    assert torch.equal(emb, w["transformer.token_embeddings.weight"].to(torch.bfloat16).float())


def test_llama_hf_dir_fuses_projections(tmp_path):
    w = llama_hf_tensors(TINY_LLAMA_CONFIG, seed=6)
    path = write_hf_dir(tmp_path / "llama", w, TINY_LLAMA_CONFIG)
    loaded = _load(path)
    raw = TINY_LLAMA_CONFIG
    assert loaded.cfg.family == "llama" and not loaded.cfg.tie_word_embeddings
    ids = torch.arange(5, 17).unsqueeze(0)
    with torch.no_grad():
        ours = loaded.model(ids, torch.arange(12))
    ref = llama_forward(w, raw["num_hidden_layers"], 4, 2, 32, ids, raw["rms_norm_eps"], raw["rope_theta"])
    assert (ours - ref).abs().max() <= 1e-4


def test_missing_tensor_is_named(tmp_path, tiny_openelm):
    cfg, w = tiny_openelm
    w = dict(w)
    del w["transformer.layers.2.ffn.proj_2.weight"]
    path = write_hf_dir(tmp_path / "ckpt", w, openelm_config_json(cfg))
    with pytest.raises(WeightsError, match=r"missing tensor 'transformer\.layers\.2\.ffn\.proj_2\.weight'") as e:
        _load(path)
    assert "\n" not in str(e.value)


def test_wrong_shape_is_named(tmp_path, tiny_openelm):
    cfg, w = tiny_openelm
    w = dict(w)
    w["transformer.layers.1.attn.out_proj.weight"] = torch.zeros(cfg.model_dim, 7)
    path = write_hf_dir(tmp_path / "ckpt", w, openelm_config_json(cfg))
    with pytest.raises(WeightsError, match=r"'transformer\.layers\.1\.attn\.out_proj\.weight' has shape \[256, 7\]"):
        _load(path)


def test_config_size_mismatch(tmp_path, tiny_openelm):
    cfg, w = tiny_openelm
    path = write_hf_dir(tmp_path / "ckpt", w, openelm_config_json(cfg))
    with pytest.raises(WeightsError, match=r"checkpoint config has num_layers=4 but openelm-270m expects 16"):
        _load(path, size="270M")


def test_truncated_safetensors(tmp_path, tiny_openelm):
    cfg, w = tiny_openelm
    path = write_hf_dir(tmp_path / "ckpt", w, openelm_config_json(cfg))
    f = path / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"truncated|not a readable safetensors") as e:
        _load(path)
    assert "model.safetensors" in str(e.value) and "\n" not in str(e.value)


def test_missing_path_and_random_conflict(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        _load(tmp_path / "nope")
    with pytest.raises(Exception, match="exclude each other"):
        load_model(ModelSpec(weights=str(tmp_path), random_weights=True), log=_quiet)


def test_offline_without_weights_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsError, match=r"--weights PATH.*--random-weights"):
        load_model(ModelSpec(size="270M", tokenizer_mode="skip"), log=_quiet)


def test_qk_permutation_roundtrip():
    w = np.arange(4 * 8 * 3, dtype=np.float32).reshape(32, 3)
    p = permute_qk(w, 4)
    assert not np.array_equal(p, w)
    assert np.array_equal(unpermute_qk(p, 4), w)
    # within a head, llama.cpp interleaves the two rotate-half halves: rows (0, 4, 1, 5, ...)
    assert np.array_equal(p[:8, 0], w[[0, 4, 1, 5, 2, 6, 3, 7], 0])


def _write_byte_level_vocab(writer, raw):
    """A GPT-2-style vocabulary: ChatML control tokens at ids 0-2, then printable characters, no merges."""
    writer.add_tokenizer_model("gpt2")
    byte_tokens = [chr(c) for c in range(33, 127)]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + byte_tokens
    tokens += [f"<extra_{i}>" for i in range(raw["vocab_size"] - len(tokens))]
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    writer.add_token_merges([])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)


def _write_llama_gguf(path, raw, w, write_vocab=_write_byte_level_vocab):
    """A GGUF laid out as llama.cpp's converter writes one: metadata, the vocabulary (`write_vocab(writer, raw)`),
    then the tensors under GGUF names with Q and K rows permuted."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(raw["num_hidden_layers"])
    writer.add_context_length(raw["max_position_embeddings"])
    writer.add_embedding_length(raw["hidden_size"])
    writer.add_feed_forward_length(raw["intermediate_size"])
    writer.add_head_count(raw["num_attention_heads"])
    writer.add_head_count_kv(raw["num_key_value_heads"])
    writer.add_rope_freq_base(raw["rope_theta"])
    writer.add_layer_norm_rms_eps(raw["rms_norm_eps"])
    writer.add_vocab_size(raw["vocab_size"])
    write_vocab(writer, raw)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, t in w.items():
        a = t.numpy()
        if name in names:
            gname = names[name]
        else:
            i, rest = name.split(".")[2], ".".join(name.split(".")[3:-1])
            gname = f"blk.{i}.{layer[rest]}.weight"
            if rest == "self_attn.q_proj":
                a = permute_qk(a, raw["num_attention_heads"])
            elif rest == "self_attn.k_proj":
                a = permute_qk(a, raw["num_key_value_heads"])
        writer.add_tensor(gname, np.ascontiguousarray(a))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_import_unpermutes_qk(tmp_path):
    raw = TINY_LLAMA_CONFIG
    w = llama_hf_tensors(raw, seed=7)
    path = tmp_path / "tiny.gguf"
    _write_llama_gguf(path, raw, w)
    loaded = load_model(ModelSpec(weights=str(path)), log=_quiet)
    cfg = loaded.cfg
    assert (cfg.num_layers, cfg.model_dim, cfg.num_kv_heads[0], cfg.rope_theta) == (3, 128, 2, 50000.0)
    ids = torch.arange(3, 15).unsqueeze(0)
    with torch.no_grad():
        ours = loaded.model(ids, torch.arange(12))
    ref = llama_forward(w, 3, 4, 2, 32, ids, raw["rms_norm_eps"], raw["rope_theta"])
    assert (ours - ref).abs().max() <= 1e-4
    assert loaded.tokenizer is not None and loaded.tokenizer.tokenizer.token_to_id("<|im_end|>") == 2


def test_corrupt_gguf(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 40)
    with pytest.raises(WeightsError, match="not a readable GGUF"):
        _load(path)
