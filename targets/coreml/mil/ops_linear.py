"""Matrix-product MIL ops: linear, matmul, einsum, conv and iOS18 ``scaled_dot_product_attention``.

All accumulate in float32 (numpy has no fast float16 GEMM, and fp32 accumulation is what Core ML's fp16
kernels approximate); the executor rounds the result to the declared dtype. Constant fp16 weights reach these
functions already widened to float32 (the executor caches the widened copy at load), so ``f32`` is a no-op on
them and a decode step does not re-convert every weight.
"""

from __future__ import annotations

import numpy as np

from .ops_activation import softmax_f32
from .ops_common import as_int, as_ints, as_str, f32
from .optable import register


@register("linear")
def linear(x, weight, bias=None):
    out = np.matmul(f32(x), f32(weight).T)
    if bias is not None:
        out += f32(bias)
    return out


@register("matmul")
def matmul(x, y, transpose_x=False, transpose_y=False):
    x, y = f32(x), f32(y)
    if bool(transpose_x) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if bool(transpose_y) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@register("einsum")
def einsum(values, equation):
    return np.einsum(as_str(equation), *[f32(v) for v in values], optimize=True)


def _expand_kv_heads(q, kv):
    """Repeat K/V heads when Q has a multiple of their count (grouped-query attention).

    coremltools' converter already repeats K/V (``tile``) before the op; this only makes hand-built programs
    with un-repeated K/V work too, matching torch's ``enable_gqa=True`` semantics."""
    if q.ndim >= 3 and kv.ndim == q.ndim and kv.shape[-3] != q.shape[-3] and q.shape[-3] % kv.shape[-3] == 0:
        return np.repeat(kv, q.shape[-3] // kv.shape[-3], axis=-3)
    return kv


@register("scaled_dot_product_attention")
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    """softmax(Q K^T / sqrt(E) + mask) V, with a bool mask meaning "may attend" (False -> -inf).

    A query row whose mask excludes every key yields zeros (torch's math SDPA does the same since 2.5)."""
    q, k, v = f32(query), f32(key), f32(value)
    k, v = _expand_kv_heads(q, k), _expand_kv_heads(q, v)
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) * np.float32(1.0 / np.sqrt(q.shape[-1]))
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        if m.dtype == np.bool_:
            scores = np.where(m, scores, np.float32(-np.inf))
        else:
            scores = scores + f32(m)
    probs = softmax_f32(scores, scores.ndim - 1)
    probs = np.nan_to_num(probs, nan=0.0)
    return np.matmul(probs, v)


def _conv_pads(pad_type, pad, in_sp, k, strides, dil):
    n = len(in_sp)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        p = as_ints(pad)
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        pads = []
        for i in range(n):
            out = -(-in_sp[i] // strides[i])
            total = max((out - 1) * strides[i] + (k[i] - 1) * dil[i] + 1 - in_sp[i], 0)
            small = total // 2
            pads.append((small, total - small) if pad_type == "same" else (total - small, small))
        return pads
    raise ValueError(f"unknown pad_type {pad_type!r}")


@register("conv")
def conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    """N-d convolution, NC[spatial] layout, by summing one matmul per kernel tap (1x1 convs are one matmul)."""
    x, w = f32(x), f32(weight)
    n_sp = x.ndim - 2
    k = w.shape[2:]
    strides = as_ints(strides) if strides is not None else [1] * n_sp
    dil = as_ints(dilations) if dilations is not None else [1] * n_sp
    g = as_int(groups)
    pads = _conv_pads(as_str(pad_type), pad, x.shape[2:], k, strides, dil)
    xp = np.pad(x, [(0, 0), (0, 0)] + pads) if any(p != (0, 0) for p in pads) else x
    out_sp = [(xp.shape[2 + i] - dil[i] * (k[i] - 1) - 1) // strides[i] + 1 for i in range(n_sp)]
    n, c_in = x.shape[:2]
    c_out = w.shape[0]
    cig, cog = c_in // g, c_out // g
    out = np.zeros((n, c_out, *out_sp), dtype=np.float32)
    for tap in np.ndindex(*k):
        sl = tuple(
            slice(tap[i] * dil[i], tap[i] * dil[i] + strides[i] * (out_sp[i] - 1) + 1, strides[i]) for i in range(n_sp)
        )
        patch = xp[(slice(None), slice(None)) + sl]
        for gi in range(g):
            wt = w[(slice(gi * cog, (gi + 1) * cog), slice(None)) + tap]  # [cog, cig]
            pg = patch[:, gi * cig : (gi + 1) * cig]
            out[:, gi * cog : (gi + 1) * cog] += np.moveaxis(np.tensordot(wt, pg, axes=([1], [1])), 0, 1)
    if bias is not None:
        out += f32(bias).reshape((1, -1) + (1,) * n_sp)
    return out
