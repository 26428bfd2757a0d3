"""Checkpoints the tests build themselves: HF OpenELM / Llama directories and GGUF files with random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file


def openelm_hf_tensors(cfg, seed: int = 0) -> dict[str, torch.Tensor]:
    """HF-named OpenELM tensors with the shapes of the reference checkpoint layout."""
    g = torch.Generator().manual_seed(seed)
    d, hd = cfg.model_dim, cfg.head_dim

    def rnd(*shape, scale=0.02):
        return scale * torch.randn(*shape, generator=g)

    def norm(n):
        return 1.0 + 0.1 * torch.randn(n, generator=g)

    w = {"transformer.token_embeddings.weight": rnd(cfg.vocab_size, d), "transformer.norm.weight": norm(d)}
    for i in range(cfg.num_layers):
        q, kv, f = cfg.num_query_heads[i], cfg.num_kv_heads[i], cfg.ffn_dims[i]
        p = f"transformer.layers.{i}."
        w[p + "attn_norm.weight"] = norm(d)
        w[p + "attn.qkv_proj.weight"] = rnd((q + 2 * kv) * hd, d)
        w[p + "attn.q_norm.weight"] = norm(hd)
        w[p + "attn.k_norm.weight"] = norm(hd)
        w[p + "attn.out_proj.weight"] = rnd(d, q * hd)
        w[p + "ffn_norm.weight"] = norm(d)
        w[p + "ffn.proj_1.weight"] = rnd(2 * f, d)
        w[p + "ffn.proj_2.weight"] = rnd(d, f)
    return w


def openelm_config_json(cfg) -> dict:
    L = cfg.num_layers
    return {
        "architectures": ["OpenELMForCausalLM"], "model_type": "openelm", "model_dim": cfg.model_dim,
        "head_dim": cfg.head_dim, "num_transformer_layers": L, "num_query_heads": cfg.num_query_heads,
        "num_kv_heads": cfg.num_kv_heads, "num_gqa_groups": 4,
        "ffn_multipliers": [round(float(v), 2) for v in np.linspace(0.5, 4.0, L)], "ffn_dim_divisor": 256,
        "qkv_multipliers": [0.5, 1.0], "vocab_size": cfg.vocab_size, "rope_freq_constant": 10000,
        "rope_max_length": 4096, "max_context_length": 2048, "share_input_output_layers": True,
        "normalize_qk_projections": True, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }


TINY_LLAMA_CONFIG = {  # a small Llama-family config.json (untied head, its own theta and eps)
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 128, "intermediate_size": 320,
    "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 3, "vocab_size": 512,
    "rope_theta": 50000.0, "rms_norm_eps": 1e-5, "max_position_embeddings": 256, "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": 2,
}


def llama_hf_tensors(raw: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d, f, V = raw["hidden_size"], raw["intermediate_size"], raw["vocab_size"]
    hd = d // raw["num_attention_heads"]
    q, kv = raw["num_attention_heads"] * hd, raw["num_key_value_heads"] * hd

    def rnd(*shape):
        return 0.05 * torch.randn(*shape, generator=g)

    w = {"model.embed_tokens.weight": rnd(V, d), "model.norm.weight": 1 + rnd(d)}
    if not raw.get("tie_word_embeddings", False):
        w["lm_head.weight"] = rnd(V, d)
    for i in range(raw["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + rnd(d)
        w[p + "self_attn.q_proj.weight"] = rnd(q, d)
        w[p + "self_attn.k_proj.weight"] = rnd(kv, d)
        w[p + "self_attn.v_proj.weight"] = rnd(kv, d)
        w[p + "self_attn.o_proj.weight"] = rnd(d, q)
        w[p + "post_attention_layernorm.weight"] = 1 + rnd(d)
        w[p + "mlp.gate_proj.weight"] = rnd(f, d)
        w[p + "mlp.up_proj.weight"] = rnd(f, d)
        w[p + "mlp.down_proj.weight"] = rnd(d, f)
    return w


def write_hf_dir(path: Path, tensors: dict, config: dict, shards: int = 1, dtype=None) -> Path:
    """Write config.json and model.safetensors, or `shards` files plus model.safetensors.index.json."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    tensors = {k: (v.to(dtype) if dtype else v).contiguous() for k, v in tensors.items()}
    if shards == 1:
        save_file(tensors, str(path / "model.safetensors"))
        return path
    names = sorted(tensors)
    weight_map = {}
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s::shards]}
        save_file(part, str(path / fname))
        weight_map.update({n: fname for n in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path
