"""An independent, deliberately plain implementation of the reference semantics (shared/reference/openelm.md).

It shares no code with elmexport's model: it reads HF-named tensors directly, recomputes the whole sequence
every call (no cache), builds the full float causal mask, repeats KV heads with repeat_interleave, and applies
RoPE to un-rotated keys of the whole sequence, the way the reference HF code does.
"""

from __future__ import annotations

import math

import torch


def rms_norm(x, weight, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


def rope(x, theta):
    """x: [B, H, S, hd]; rotate-half RoPE at positions 0..S-1, frequencies in fp32."""
    hd = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.arange(x.shape[2], dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()


def attention(q, k, v, head_dim):
    S = q.shape[2]
    mask = torch.full((S, S), float("-inf")).triu(1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim) + mask
    return torch.softmax(scores.float(), dim=-1) @ v


def openelm_forward(w: dict, n_layers: int, n_q: list, n_kv: list, head_dim: int, ids, eps=1e-6, theta=10000.0):
    p = "transformer."
    x = w[p + "token_embeddings.weight"][ids]
    B, S, _ = x.shape
    for i in range(n_layers):
        L = f"{p}layers.{i}."
        h = rms_norm(x, w[L + "attn_norm.weight"], eps)
        qkv = (h @ w[L + "attn.qkv_proj.weight"].T).reshape(B, S, n_q[i] + 2 * n_kv[i], head_dim).transpose(1, 2)
        q, k, v = qkv[:, : n_q[i]], qkv[:, n_q[i]: n_q[i] + n_kv[i]], qkv[:, n_q[i] + n_kv[i]:]
        q = rms_norm(q, w[L + "attn.q_norm.weight"], eps)
        k = rms_norm(k, w[L + "attn.k_norm.weight"], eps)
        q, k = rope(q, theta), rope(k, theta)
        groups = n_q[i] // n_kv[i]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        a = attention(q, k, v, head_dim).transpose(1, 2).reshape(B, S, n_q[i] * head_dim)
        x = x + a @ w[L + "attn.out_proj.weight"].T
        h = rms_norm(x, w[L + "ffn_norm.weight"], eps)
        y = h @ w[L + "ffn.proj_1.weight"].T
        ffn = y.shape[-1] // 2
        x = x + (torch.nn.functional.silu(y[..., :ffn]) * y[..., ffn:]) @ w[L + "ffn.proj_2.weight"].T
    x = rms_norm(x, w[p + "norm.weight"], eps)
    return x @ w[p + "token_embeddings.weight"].T


def llama_forward(w: dict, n_layers: int, n_q: int, n_kv: int, head_dim: int, ids, eps, theta):
    x = w["model.embed_tokens.weight"][ids]
    B, S, _ = x.shape
    for i in range(n_layers):
        L = f"model.layers.{i}."
        h = rms_norm(x, w[L + "input_layernorm.weight"], eps)
        q = (h @ w[L + "self_attn.q_proj.weight"].T).reshape(B, S, n_q, head_dim).transpose(1, 2)
        k = (h @ w[L + "self_attn.k_proj.weight"].T).reshape(B, S, n_kv, head_dim).transpose(1, 2)
        v = (h @ w[L + "self_attn.v_proj.weight"].T).reshape(B, S, n_kv, head_dim).transpose(1, 2)
        q, k = rope(q, theta), rope(k, theta)
        k, v = k.repeat_interleave(n_q // n_kv, dim=1), v.repeat_interleave(n_q // n_kv, dim=1)
        a = attention(q, k, v, head_dim).transpose(1, 2).reshape(B, S, n_q * head_dim)
        x = x + a @ w[L + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[L + "post_attention_layernorm.weight"], eps)
        gate, up = h @ w[L + "mlp.gate_proj.weight"].T, h @ w[L + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[L + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T
