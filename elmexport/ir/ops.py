"""The `elm::` op library: ops a target must see as one unit, each with a reference PyTorch kernel and a fake kernel.

Because every op has a reference kernel, the IR after passes still runs in PyTorch: that is the "optimised IR"
stage of validation, and the reference kernels *define* the numbers every target must reproduce (the exact
dequantized weights of a quantized linear, the fp16-safe RMSNorm formulation).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.transformer import apply_rope


# ---------------------------------------------------------------------------------------------------- RMSNorm
@torch.library.custom_op("elm::rms_norm", mutates_args=())
def rms_norm(x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    """`x * rsqrt(mean(x^2) + eps) * weight` over the last dim, evaluated in x's dtype without overflow.

    Before squaring, x is divided by m = max|x| (per row), so every square is <= 1 and the sum of squares of a
    4096-wide row is <= 4096: no fp16 overflow for any finite input. The eps term is rescaled to keep the
    reference semantics exactly: x * rsqrt(mean(x^2) + eps) == y * rsqrt(mean(y^2) + eps / m^2) with y = x / m,
    and eps / m^2 is computed as (sqrt(eps) / m)^2 so it cannot overflow before it matters.
    """
    return rms_norm_kernel(x, weight, eps)


def rms_norm_kernel(x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    tiny = torch.finfo(x.dtype).tiny
    m = x.abs().amax(dim=-1, keepdim=True).clamp_min(tiny)
    y = x / m
    eps_scaled = ((eps ** 0.5) / m) ** 2
    out = y * torch.rsqrt((y * y).mean(dim=-1, keepdim=True) + eps_scaled)
    return out if weight is None else out * weight.to(x.dtype)


@rms_norm.register_fake
def _(x, weight, eps):
    return torch.empty_like(x)


# ------------------------------------------------------------------------------------ block-quantized linear
def dequantize_blockwise(qweight: Tensor, scales: Tensor, block_size: int) -> Tensor:
    """W[o, i] = q[o, i] * scales[o, i // block_size] (symmetric: no zero point). Per-channel = one block per row."""
    out_f, in_f = qweight.shape
    blocks = scales.shape[1]
    w = qweight.float().reshape(out_f, blocks, in_f // blocks) * scales.float().unsqueeze(-1)
    return w.reshape(out_f, in_f)


@torch.library.custom_op("elm::quantized_linear", mutates_args=())
def quantized_linear(x: Tensor, qweight: Tensor, scales: Tensor, block_size: int, bits: int) -> Tensor:
    """y = x @ dequantize(qweight, scales).T; qweight int8 holding `bits`-bit signed values in [-2^(b-1), 2^(b-1)-1]."""
    return quantized_linear_kernel(x, qweight, scales, block_size, bits)


def quantized_linear_kernel(x: Tensor, qweight: Tensor, scales: Tensor, block_size: int, bits: int) -> Tensor:
    return torch.nn.functional.linear(x, dequantize_blockwise(qweight, scales, block_size).to(x.dtype))


@quantized_linear.register_fake
def _(x, qweight, scales, block_size, bits):
    return x.new_empty((*x.shape[:-1], qweight.shape[0]))


@torch.library.custom_op("elm::quantized_embedding", mutates_args=())
def quantized_embedding(qweight: Tensor, scales: Tensor, ids: Tensor, block_size: int, bits: int) -> Tensor:
    """Rows of the dequantized table; shares qweight/scales with a tied LM head's quantized_linear."""
    return quantized_embedding_kernel(qweight, scales, ids, block_size, bits)


def quantized_embedding_kernel(qweight: Tensor, scales: Tensor, ids: Tensor, block_size: int, bits: int) -> Tensor:
    flat = ids.reshape(-1)
    return dequantize_blockwise(qweight[flat], scales[flat], block_size).reshape(*ids.shape, qweight.shape[1])


@quantized_embedding.register_fake
def _(qweight, scales, ids, block_size, bits):
    return scales.new_empty((*ids.shape, qweight.shape[1]), dtype=torch.float32)


# ----------------------------------------------------------------------------------------- palettized linear
def dequantize_palettized(lut: Tensor, indices: Tensor, group_size: int) -> Tensor:
    """W[o, i] = lut[o // group_size, indices[o, i]]: one LUT per group of `group_size` output channels."""
    out_f = indices.shape[0]
    group_of_row = torch.arange(out_f, device=indices.device) // group_size
    return lut.float()[group_of_row.unsqueeze(1), indices.long()]


@torch.library.custom_op("elm::palettized_linear", mutates_args=())
def palettized_linear(x: Tensor, lut: Tensor, indices: Tensor, group_size: int, nbits: int) -> Tensor:
    """y = x @ W.T with W looked up from per-group LUTs (k-means centroids); indices uint8 < 2^nbits."""
    return palettized_linear_kernel(x, lut, indices, group_size, nbits)


def palettized_linear_kernel(x: Tensor, lut: Tensor, indices: Tensor, group_size: int, nbits: int) -> Tensor:
    return torch.nn.functional.linear(x, dequantize_palettized(lut, indices, group_size).to(x.dtype))


@palettized_linear.register_fake
def _(x, lut, indices, group_size, nbits):
    return x.new_empty((*x.shape[:-1], indices.shape[0]))


@torch.library.custom_op("elm::palettized_embedding", mutates_args=())
def palettized_embedding(lut: Tensor, indices: Tensor, ids: Tensor, group_size: int, nbits: int) -> Tensor:
    """Rows of the palettized table; shares lut/indices with a tied LM head's palettized_linear."""
    return palettized_embedding_kernel(lut, indices, ids, group_size, nbits)


def palettized_embedding_kernel(lut: Tensor, indices: Tensor, ids: Tensor, group_size: int, nbits: int) -> Tensor:
    flat = ids.reshape(-1)
    rows = lut.float()[(flat // group_size).unsqueeze(1), indices[flat].long()]
    return rows.reshape(*ids.shape, indices.shape[1])


@palettized_embedding.register_fake
def _(lut, indices, ids, group_size, nbits):
    return lut.new_empty((*ids.shape, indices.shape[1]), dtype=torch.float32)


# ------------------------------------------------------------------------------------- attention over a cache
def split_heads(qkv: Tensor, n_q: int, n_kv: int, head_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """The fused projection [B, T, (n_q + 2 n_kv) hd] (rows: q heads, k heads, v heads) -> q, k, v [B, H, T, hd]."""
    B, T, _ = qkv.shape
    heads = qkv.view(B, T, n_q + 2 * n_kv, head_dim).transpose(1, 2)
    q, k, v = heads.split([n_q, n_kv, n_kv], dim=1)
    return q, k, v


def normed_rotated_qkv(qkv, cos, sin, q_norm_weight, k_norm_weight, n_q, n_kv, norm_eps, head_dim):
    """q, k after the optional per-head RMSNorm and RoPE, and v: everything attention does before the cache.
    RoPE is the model's own apply_rope (rotate-half, cos/sin [T, hd]), so the kernel cannot drift from it."""
    q, k, v = split_heads(qkv, n_q, n_kv, head_dim)
    if q_norm_weight is not None:
        q, k = rms_norm_kernel(q, q_norm_weight, norm_eps), rms_norm_kernel(k, k_norm_weight, norm_eps)
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


def causal_cache_mask(input_pos: Tensor, context: int) -> Tensor:
    """[T, context] bool, True = attend: a token at position p sees cache slots 0..p (the model's mask)."""
    return torch.arange(context, device=input_pos.device).unsqueeze(0) <= input_pos.unsqueeze(1)


@torch.library.custom_op("elm::attention", mutates_args=("k_cache", "v_cache"))
def attention(qkv: Tensor, k_cache: Tensor, v_cache: Tensor, input_pos: Tensor, cos: Tensor, sin: Tensor,
              q_norm_weight: Tensor | None, k_norm_weight: Tensor | None, n_q: int, n_kv: int, norm_eps: float,
              scale: float) -> Tensor:
    """One layer's attention from its fused qkv projection to the input of its output projection.

    qkv [1, T, (n_q + 2 n_kv) hd] -> per-head q/k RMSNorm when the weights are given (OpenELM) -> rotate-half RoPE
    with cos/sin [T, hd] (the tables at input_pos) -> k, v written into the caches [1, n_kv, context, hd] at
    input_pos (in place: the caches are the op's mutated arguments) -> attention of q over the whole cache with
    the causal cache mask (slot s is seen from position p iff s <= p), n_q / n_kv query heads per KV head ->
    [1, T, n_q hd]. Positions are contiguous (start .. start + T - 1), which every lowering relies on.
    """
    return attention_kernel(qkv, k_cache, v_cache, input_pos, cos, sin, q_norm_weight, k_norm_weight, n_q, n_kv,
                            norm_eps, scale)


def attention_kernel(qkv, k_cache, v_cache, input_pos, cos, sin, q_norm_weight, k_norm_weight, n_q: int, n_kv: int,
                     norm_eps: float, scale: float):
    head_dim = k_cache.shape[-1]
    q, k, v = normed_rotated_qkv(qkv, cos, sin, q_norm_weight, k_norm_weight, n_q, n_kv, norm_eps, head_dim)
    k_cache[:, :, input_pos] = k
    v_cache[:, :, input_pos] = v
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k_cache, v_cache, attn_mask=causal_cache_mask(input_pos, k_cache.shape[2]), scale=scale,
        enable_gqa=n_q != n_kv)
    B, _, T, _ = q.shape
    return out.transpose(1, 2).reshape(B, T, n_q * head_dim)


@attention.register_fake
def _(qkv, k_cache, v_cache, input_pos, cos, sin, q_norm_weight, k_norm_weight, n_q, n_kv, norm_eps, scale):
    return qkv.new_empty((*qkv.shape[:-1], n_q * k_cache.shape[-1]))


# Each op's body is its kernel, defined once above: the custom op runs it in the IR, and back ends without a native
# form trace the same function into ATen (decompose.py), so the two can never disagree.
ELM_OPS = {
    "rms_norm": torch.ops.elm.rms_norm.default,
    "quantized_linear": torch.ops.elm.quantized_linear.default,
    "quantized_embedding": torch.ops.elm.quantized_embedding.default,
    "palettized_linear": torch.ops.elm.palettized_linear.default,
    "palettized_embedding": torch.ops.elm.palettized_embedding.default,
    "attention": torch.ops.elm.attention.default,
}

REFERENCE_KERNELS = {
    ELM_OPS["rms_norm"]: rms_norm_kernel,
    ELM_OPS["quantized_linear"]: quantized_linear_kernel,
    ELM_OPS["quantized_embedding"]: quantized_embedding_kernel,
    ELM_OPS["palettized_linear"]: palettized_linear_kernel,
    ELM_OPS["palettized_embedding"]: palettized_embedding_kernel,
    ELM_OPS["attention"]: attention_kernel,
}
