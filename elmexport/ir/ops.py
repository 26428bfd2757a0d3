"""The `elm::` op library: ops a target must see as one unit, each with a reference PyTorch kernel and a fake kernel.

Because every op has a reference kernel, the IR after passes still runs in PyTorch: that is the "optimised IR"
stage of validation, and the reference kernels *define* the numbers every target must reproduce (the exact
dequantized weights of a quantized linear, the fp16-safe RMSNorm formulation).
"""

from __future__ import annotations

import torch
from torch import Tensor


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


# Each op's body is its kernel, defined once above: the custom op runs it in the IR, and back ends without a native
# form trace the same function into ATen (decompose.py), so the two can never disagree.
ELM_OPS = {
    "rms_norm": torch.ops.elm.rms_norm.default,
    "quantized_linear": torch.ops.elm.quantized_linear.default,
    "quantized_embedding": torch.ops.elm.quantized_embedding.default,
    "palettized_linear": torch.ops.elm.palettized_linear.default,
    "palettized_embedding": torch.ops.elm.palettized_embedding.default,
}

REFERENCE_KERNELS = {
    ELM_OPS["rms_norm"]: rms_norm_kernel,
    ELM_OPS["quantized_linear"]: quantized_linear_kernel,
    ELM_OPS["quantized_embedding"]: quantized_embedding_kernel,
    ELM_OPS["palettized_linear"]: palettized_linear_kernel,
    ELM_OPS["palettized_embedding"]: palettized_embedding_kernel,
}
