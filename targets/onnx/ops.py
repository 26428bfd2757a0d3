"""`elm_onnx::` ops: the IR ops in the exact form onnxruntime runs them, each with a reference PyTorch kernel.

Why a second small op library: the ONNX target rewrites the IR (targets/onnx/form.py, targets/onnx/quant.py)
into a graph whose ops map one-to-one onto onnxruntime kernels, and keeps it runnable in PyTorch. The rewritten
graph is therefore checked against the IR *before* ONNX export; what remains between it and onnxruntime is only
the kernels' arithmetic.

- matmul_nbits  -> com.microsoft MatMulNBits: codes packed as unsigned (code + 2^(bits-1), zero point implied),
                   two 4-bit codes per byte with the even element in the low nibble; fp32 scales [N * K/block].
- gather_nbits  -> com.microsoft GatherBlockQuantized over the same packed bytes (a tied embedding shares them).
- gqa_lengths + group_query_attention -> com.microsoft GroupQueryAttention with RoPE inside (do_rotary) over a KV
                   buffer that past and present share: the new rows are written at the past length, nothing is
                   concatenated or copied per step; bottom-right causal (query t sees keys <= past_len + t).
- skip_rms_norm  -> com.microsoft SkipSimplifiedLayerNormalization (residual add + RMSNorm in one kernel).
"""

from __future__ import annotations

import torch
from torch import Tensor


# ------------------------------------------------------------------------------------------------ packing
def pack_codes(codes: Tensor, bits: int, block_size: int) -> Tensor:
    """Signed codes int8 [N, K] -> MatMulNBits B: uint8 [N, K/block, block*bits/8] (offset by 2^(bits-1))."""
    n, k = codes.shape
    u = (codes.to(torch.int16) + (1 << (bits - 1))).to(torch.uint8)
    if bits == 4:
        u = u[:, 0::2] | (u[:, 1::2] << 4)
    elif bits != 8:
        raise ValueError(f"MatMulNBits lowering supports 4 and 8 bits, not {bits}")
    return u.reshape(n, k // block_size, block_size * bits // 8).contiguous()


def unpack_codes(packed: Tensor, bits: int) -> Tensor:
    """Inverse of pack_codes: uint8 [N, blocks, blob] -> signed int8 codes [N, K]."""
    n = packed.shape[0]
    flat = packed.reshape(n, -1)
    if bits == 4:
        flat = torch.stack([flat & 0x0F, flat >> 4], dim=-1).reshape(n, -1)
    return (flat.to(torch.int16) - (1 << (bits - 1))).to(torch.int8)


def dequantize_packed(packed: Tensor, scales: Tensor, bits: int, block_size: int) -> Tensor:
    codes = unpack_codes(packed, bits)
    n, k = codes.shape
    w = codes.float().reshape(n, k // block_size, block_size) * scales.float().reshape(n, -1, 1)
    return w.reshape(n, k)


# ------------------------------------------------------------------------------------------------ ops
@torch.library.custom_op("elm_onnx::matmul_nbits", mutates_args=())
def matmul_nbits(x: Tensor, packed: Tensor, scales: Tensor, bits: int, block_size: int, accuracy_level: int) -> Tensor:
    """y = x @ W.T with W = (unpack(packed) - zero) * scales; accuracy_level only matters to onnxruntime."""
    return torch.nn.functional.linear(x, dequantize_packed(packed, scales, bits, block_size).to(x.dtype))


@matmul_nbits.register_fake
def _(x, packed, scales, bits, block_size, accuracy_level):
    return x.new_empty((*x.shape[:-1], packed.shape[0]))


@torch.library.custom_op("elm_onnx::gather_nbits", mutates_args=())
def gather_nbits(packed: Tensor, scales: Tensor, ids: Tensor, bits: int, block_size: int) -> Tensor:
    """Rows `ids` of the dequantized table (same packed bytes and scales as the tied head's matmul_nbits)."""
    flat = ids.reshape(-1)
    rows = dequantize_packed(packed[flat], scales.reshape(packed.shape[0], -1)[flat], bits, block_size)
    return rows.reshape(*ids.shape, rows.shape[-1])


@gather_nbits.register_fake
def _(packed, scales, ids, bits, block_size):
    k = packed.shape[1] * packed.shape[2] * 8 // bits
    return scales.new_empty((*ids.shape, k))


def rotate_half_tables(cos_cache: Tensor, sin_cache: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """GroupQueryAttention's half tables [max_pos, hd/2] -> the full rotate-half cos/sin rows [T, hd] at positions."""
    cos, sin = cos_cache[positions], sin_cache[positions]
    return torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1)


def _rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


@torch.library.custom_op("elm_onnx::gqa_lengths", mutates_args=())
def gqa_lengths(attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """attention_mask int64 [1, total] -> (seqlens_k int32 [1] = attended tokens - 1, total_sequence_length int32 [])."""
    seqlens_k = (attention_mask.sum(dim=1) - 1).to(torch.int32)
    return seqlens_k, torch.tensor(attention_mask.shape[1], dtype=torch.int32)


@gqa_lengths.register_fake
def _(attention_mask):
    return attention_mask.new_empty((attention_mask.shape[0],), dtype=torch.int32), \
        attention_mask.new_empty((), dtype=torch.int32)


@torch.library.custom_op("elm_onnx::group_query_attention", mutates_args=())
def group_query_attention(query: Tensor, key: Tensor | None, value: Tensor | None, past_key: Tensor,
                          past_value: Tensor, seqlens_k: Tensor, total_sequence_length: Tensor, cos_cache: Tensor,
                          sin_cache: Tensor, num_heads: int, kv_num_heads: int,
                          scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """com.microsoft GroupQueryAttention (do_rotary=1, rotate-half) over a shared KV buffer, batch 1.

    query [1, T, Hq*hd] (or packed q|k|v when key/value are None), key/value [1, T, Hkv*hd] before RoPE;
    past_key/value [1, Hkv, L, hd] hold positions 0..past-1 with past = seqlens_k + 1 - T and L >= past + T.
    -> (y [1, T, Hq*hd], present_key, present_value): the buffers with the T new rows written at past.., so that
    onnxruntime can hand the same memory in as past and out as present (past_present_share_buffer).
    """
    hd = past_key.shape[3]
    if key is None or value is None:
        query, key, value = query.split([num_heads * hd, kv_num_heads * hd, kv_num_heads * hd], dim=-1)
    b, t, _ = query.shape
    total = int(seqlens_k[0]) + 1
    past = total - t
    if past < 0 or past_key.shape[2] < total:
        raise ValueError(f"group_query_attention: {t} new tokens after {past} cached do not fit a KV buffer of "
                         f"{past_key.shape[2]} positions")
    positions = torch.arange(past, total)
    cos, sin = rotate_half_tables(cos_cache, sin_cache, positions)
    q = _rope(query.reshape(b, t, num_heads, hd).transpose(1, 2), cos, sin)
    k = _rope(key.reshape(b, t, kv_num_heads, hd).transpose(1, 2), cos, sin)
    v = value.reshape(b, t, kv_num_heads, hd).transpose(1, 2)
    present_key, present_value = past_key.clone(), past_value.clone()
    present_key[:, :, past:total], present_value[:, :, past:total] = k, v
    mask = torch.arange(total).unsqueeze(0) <= positions.unsqueeze(1)  # bottom-right causal
    y = torch.nn.functional.scaled_dot_product_attention(
        q, present_key[:, :, :total], present_value[:, :, :total], attn_mask=mask, scale=scale,
        enable_gqa=num_heads != kv_num_heads)
    return y.transpose(1, 2).reshape(b, t, num_heads * hd), present_key, present_value


@group_query_attention.register_fake
def _(query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache, sin_cache, num_heads,
      kv_num_heads, scale):
    hd = past_key.shape[3]
    return (query.new_empty((*query.shape[:2], num_heads * hd)), torch.empty_like(past_key),
            torch.empty_like(past_value))


@torch.library.custom_op("elm_onnx::skip_rms_norm", mutates_args=())
def skip_rms_norm(x: Tensor, skip: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """com.microsoft SkipSimplifiedLayerNormalization: (rms_norm(x + skip) * weight, x + skip)."""
    total = x + skip
    return torch.ops.elm.rms_norm(total, weight, eps), total


@skip_rms_norm.register_fake
def _(x, skip, weight, eps):
    return torch.empty_like(x), torch.empty_like(x)
