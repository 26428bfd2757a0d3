"""`elm_onnx::` ops: the IR ops in the exact form onnxruntime runs them, each with a reference PyTorch kernel.

Why a second small op library: the ONNX target rewrites the IR (targets/onnx_form.py, targets/onnx_quant.py)
into a graph whose ops map one-to-one onto onnxruntime kernels, and keeps it runnable in PyTorch. The rewritten
graph is therefore checked against the IR *before* ONNX export; what remains between it and onnxruntime is only
the kernels' arithmetic.

- matmul_nbits  -> com.microsoft MatMulNBits: codes packed as unsigned (code + 2^(bits-1), zero point implied),
                   two 4-bit codes per byte with the even element in the low nibble; fp32 scales [N * K/block].
- gather_nbits  -> com.microsoft GatherBlockQuantized over the same packed bytes (a tied embedding shares them).
- attention_with_past -> ONNX Attention (opset 23) with past_key/past_value and is_causal=1: present =
                   concat(past, new) and bottom-right causal alignment (query t sees keys <= past_len + t).
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


def causal_mask_with_past(q_len: int, past_len: int, device=None) -> Tensor:
    """[T, past+T] bool, True = attend: query t (absolute position past+t) sees keys 0..past+t (bottom-right)."""
    keys = torch.arange(past_len + q_len, device=device)
    return keys.unsqueeze(0) <= (past_len + torch.arange(q_len, device=device)).unsqueeze(1)


@torch.library.custom_op("elm_onnx::attention_with_past", mutates_args=())
def attention_with_past(q: Tensor, k: Tensor, v: Tensor, past_k: Tensor, past_v: Tensor,
                        scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """q [1, Hq, T, hd], k/v [1, Hkv, T, hd], past [1, Hkv, P, hd] -> (y [1, Hq, T, hd], present_k, present_v)."""
    present_k, present_v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
    mask = causal_mask_with_past(q.shape[2], past_k.shape[2], q.device)
    y = torch.nn.functional.scaled_dot_product_attention(
        q, present_k, present_v, attn_mask=mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1])
    return y, present_k, present_v


@attention_with_past.register_fake
def _(q, k, v, past_k, past_v, scale):
    total = past_k.shape[2] + k.shape[2]
    return (torch.empty_like(q), k.new_empty((*k.shape[:2], total, k.shape[3])),
            v.new_empty((*v.shape[:2], total, v.shape[3])))


ONNX_OPS = {
    "matmul_nbits": torch.ops.elm_onnx.matmul_nbits.default,
    "gather_nbits": torch.ops.elm_onnx.gather_nbits.default,
    "attention_with_past": torch.ops.elm_onnx.attention_with_past.default,
}
