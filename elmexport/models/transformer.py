"""Export-first decoder for OpenELM and Llama-family models (one module, per-layer shapes from ModelConfig).

Written to be captured by torch.export, in the spirit of mlx-lm's models/openelm.py and models/llama.py:
- explicit token positions (`input_pos`), no Python control flow that depends on data;
- a static KV cache per layer, registered as buffers (OpenELM's KV head count differs per layer), written at
  `input_pos` and read whole; the causal mask is `cache_pos <= input_pos`, a [T, context] bool built from two
  small vectors, never a 2048x2048 float mask;
- prefill of T tokens and single-token decode run through the same forward.

Both families use one weight layout: fused `qkv_proj` (rows: Q heads, K heads, V heads) and fused `proj_1`
(rows: gate, then up). OpenELM checkpoints store exactly this; Llama's separate q/k/v and gate/up projections are
concatenated at load time (same math, one matmul instead of three, which every back end prefers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class RMSNorm(nn.Module):
    """The reference RMSNorm: `(x.float() * rsqrt(mean(x.float()^2) + eps)).type_as(x) * weight`.

    Kept decomposed on purpose: this is the pattern the `fuse_rmsnorm` pass finds and replaces.
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_tables(head_dim: int, max_positions: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for rotate-half (NeoX) RoPE over the full head_dim, computed in fp32: [max_positions, head_dim]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, T, hd]; cos/sin: [T, hd]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, context: int):
        super().__init__()
        self.n_q = cfg.num_query_heads[layer]
        self.n_kv = cfg.num_kv_heads[layer]
        self.head_dim = cfg.head_dim
        self.context = context
        self.qkv_proj = nn.Linear(cfg.model_dim, cfg.qkv_dim(layer), bias=False)
        self.out_proj = nn.Linear(self.n_q * cfg.head_dim, cfg.model_dim, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.register_buffer("k_cache", torch.zeros(1, self.n_kv, context, cfg.head_dim), persistent=False)
        self.register_buffer("v_cache", torch.zeros(1, self.n_kv, context, cfg.head_dim), persistent=False)

    def forward(self, x, input_pos, cos, sin, mask):
        B, T, _ = x.shape
        qkv = self.qkv_proj(x).view(B, T, self.n_q + 2 * self.n_kv, self.head_dim).transpose(1, 2)
        q, k, v = qkv.split([self.n_q, self.n_kv, self.n_kv], dim=1)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # Rotated keys are cached at their positions (the MLX port's choice; equivalent to the reference, which
        # re-rotates the whole un-rotated key sequence every step).
        self.k_cache[:, :, input_pos] = k
        self.v_cache[:, :, input_pos] = v
        out = F.scaled_dot_product_attention(
            q, self.k_cache, self.v_cache, attn_mask=mask,
            scale=1.0 / math.sqrt(self.head_dim), enable_gqa=self.n_q != self.n_kv,
        )
        return self.out_proj(out.transpose(1, 2).reshape(B, T, self.n_q * self.head_dim))


class FeedForward(nn.Module):
    """GLU FFN with SiLU; `proj_1` rows are [gate; up] as in the OpenELM checkpoint."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.ffn_dim = cfg.ffn_dims[layer]
        self.proj_1 = nn.Linear(cfg.model_dim, 2 * self.ffn_dim, bias=False)
        self.proj_2 = nn.Linear(self.ffn_dim, cfg.model_dim, bias=False)

    def forward(self, x):
        gate, up = self.proj_1(x).split(self.ffn_dim, dim=-1)
        return self.proj_2(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, context: int):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.model_dim, cfg.norm_eps)
        self.attn = Attention(cfg, layer, context)
        self.ffn_norm = RMSNorm(cfg.model_dim, cfg.norm_eps)
        self.ffn = FeedForward(cfg, layer)

    def forward(self, x, input_pos, cos, sin, mask):
        h = x + self.attn(self.attn_norm(x), input_pos, cos, sin, mask)
        return h + self.ffn(self.ffn_norm(h))


class Transformer(nn.Module):
    """`forward(input_ids [1, T] int64, input_pos [T] int64) -> logits [1, T, vocab]`, updating the KV caches."""

    def __init__(self, cfg: ModelConfig, context: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.context = cfg.check_context(context)
        self.token_embeddings = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, self.context) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.model_dim, cfg.norm_eps)
        self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(cfg.model_dim, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.head_dim, self.context, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.register_buffer("cache_positions", torch.arange(self.context), persistent=False)

    def forward(self, input_ids: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        h = self.token_embeddings(input_ids)
        cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]
        mask = self.cache_positions.unsqueeze(0) <= input_pos.unsqueeze(1)  # [T, context], True = attend
        for layer in self.layers:
            h = layer(h, input_pos, cos, sin, mask)
        h = self.norm(h)
        head = self.token_embeddings.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(h, head).float()

    # ---- helpers used by generation, loading and validation (not part of the captured graph) ----

    def reset_cache(self) -> None:
        for layer in self.layers:
            layer.attn.k_cache.zero_()
            layer.attn.v_cache.zero_()

    def cache_buffers(self) -> dict[str, torch.Tensor]:
        """Per-layer KV buffers by their state-dict-style names (the states every target exposes)."""
        return {name: buf for name, buf in self.named_buffers() if name.endswith(("k_cache", "v_cache"))}

    def materialize_buffers(self, dtype: torch.dtype = torch.float32) -> None:
        """Recreate non-persistent buffers on CPU after the module was built on the meta device."""
        cos, sin = rope_tables(self.cfg.head_dim, self.context, self.cfg.rope_theta)
        self.rope_cos, self.rope_sin = cos, sin
        self.cache_positions = torch.arange(self.context)
        for layer in self.layers:
            shape = (1, layer.attn.n_kv, self.context, self.cfg.head_dim)
            layer.attn.k_cache = torch.zeros(shape, dtype=dtype)
            layer.attn.v_cache = torch.zeros(shape, dtype=dtype)


def init_random_weights(model: Transformer, seed: int = 0) -> Transformer:
    """Seeded random weights (std 0.02, norms at 1) for structure, size and latency work without a checkpoint."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return model
