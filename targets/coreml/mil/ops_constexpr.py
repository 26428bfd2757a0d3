"""Weight decompression ops (``constexpr_*``) and the runtime (de)quantize ops.

The executor evaluates constexpr ops once when the program is loaded and caches the dense result, so a
palettized or int4 model costs its decompression once, not on every ``predict``.

The decoders below are written from the MIL op specification (block-wise LUTs, block-wise shift/scale,
bit-mask sparsity), not copied from coremltools, so the tests can compare them against coremltools' own
reference decompression as an independent check.
"""

from __future__ import annotations

import numpy as np

from . import dtypes
from .dtypes import STRING_TO_NUMPY
from .ops_common import as_int, as_ints, as_str, f32
from .optable import register


def _block_group_ids(shape, groups):
    """Flat id of the block each element of ``shape`` belongs to, when dim i is split into groups[i] blocks."""
    ids = np.zeros((), dtype=np.int64)
    for dim, ng in zip(shape, groups):
        if dim % ng:
            raise ValueError(f"dimension {dim} is not divisible into {ng} blocks")
        coord = np.arange(dim, dtype=np.int64) // (dim // ng)
        ids = ids[..., None] * ng + coord
    return ids


def lut_to_dense(indices, lut, vector_axis=None):
    """iOS18 ``constexpr_lut_to_dense``: ``lut[block(p)][indices[p]]`` (a vector along ``vector_axis`` if VS > 1)."""
    idx = np.asarray(indices).astype(np.int64)
    lut = np.asarray(lut)
    k = idx.ndim
    if lut.ndim != k + 2:
        raise ValueError(f"lut rank {lut.ndim} must be indices rank {k} + 2")
    n_pal, vs = lut.shape[-2], lut.shape[-1]
    if idx.size and idx.max() >= n_pal:
        raise ValueError(f"index {idx.max()} out of range for a {n_pal}-entry palette")
    group = _block_group_ids(idx.shape, lut.shape[:k])
    flat = lut.reshape(-1, n_pal, vs)
    vals = flat[group, idx]  # [*indices.shape, vs]
    if vs == 1:
        return vals[..., 0]
    if vector_axis is None:
        raise ValueError("vector_axis is required when the LUT holds vectors")
    ax = as_int(vector_axis)
    ax = ax + k if ax < 0 else ax
    out_shape = list(idx.shape)
    out_shape[ax] *= vs
    return np.moveaxis(vals, -1, ax + 1).reshape(out_shape)


def blockwise_shift_scale(data, scale, offset=None):
    """iOS18 ``constexpr_blockwise_shift_scale``: ``scale[block] * (data - offset[block])`` in float32."""
    data = np.asarray(data)
    scale = f32(scale)
    if data.ndim != scale.ndim:
        raise ValueError(f"data rank {data.ndim} != scale rank {scale.ndim}")
    blocks = []
    for d, s in zip(data.shape, scale.shape):
        if d % s:
            raise ValueError(f"data dim {d} is not a multiple of scale dim {s}")
        blocks += [s, d // s]
    x = data.astype(np.float32).reshape(blocks)
    expand = tuple(v for s in scale.shape for v in (s, 1))
    if offset is not None:
        x = x - f32(offset).reshape(expand)
    return (x * scale.reshape(expand)).reshape(data.shape)


def sparse_to_dense(nonzero_data, mask):
    """iOS18 ``constexpr_sparse_to_dense``: scatter ``nonzero_data`` (C order) where ``mask`` is 1."""
    mask = np.asarray(mask) != 0
    data = np.asarray(nonzero_data)
    if int(mask.sum()) != data.size:
        raise ValueError(f"mask has {int(mask.sum())} set bits but nonzero_data has {data.size} values")
    out = np.zeros(mask.shape, dtype=data.dtype)
    out[mask] = data.reshape(-1)
    return out


_NBITS_CODE = {1: dtypes.UINT1, 2: dtypes.UINT2, 3: dtypes.UINT3, 4: dtypes.UINT4, 6: dtypes.UINT6}


@register("constexpr_lut_to_dense")
def constexpr_lut_to_dense(indices, lut, vector_axis=None, shape=None):
    if shape is not None:
        # iOS16 form: packed uint8 indices, a flat [2^nbits] LUT and an explicit output shape.
        lut = np.asarray(lut).reshape(-1)
        nbits = int(np.log2(lut.size))
        count = int(np.prod(as_ints(shape)))
        raw = np.asarray(indices).astype(np.uint8)
        idx = raw[:count] if nbits == 8 else dtypes.unpack_sub_byte(raw, _NBITS_CODE[nbits], count)
        return lut[idx.astype(np.int64)].reshape(as_ints(shape))
    return lut_to_dense(indices, lut, vector_axis)


@register("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(data, scale, offset=None):
    return blockwise_shift_scale(data, scale, offset)


@register("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(nonzero_data, mask, shape=None):
    if shape is not None:
        # iOS16 form: bit mask packed LSB-first into uint8 plus an explicit shape.
        count = int(np.prod(as_ints(shape)))
        bits = np.unpackbits(np.asarray(mask).astype(np.uint8), bitorder="little")[:count]
        return sparse_to_dense(nonzero_data, bits.reshape(as_ints(shape)))
    return sparse_to_dense(nonzero_data, mask)


@register("constexpr_lut_to_sparse")
def constexpr_lut_to_sparse(indices_mask, indices_nonzero_data, lut, vector_axis=None):
    mask = np.asarray(indices_mask)
    dense_idx = sparse_to_dense(indices_nonzero_data, mask)
    dense = lut_to_dense(dense_idx, lut, vector_axis)
    out_mask = mask
    vs = np.asarray(lut).shape[-1]
    if vs > 1:
        out_mask = np.repeat(mask, vs, axis=as_int(vector_axis))
    return out_mask, dense[out_mask != 0]


@register("constexpr_sparse_blockwise_shift_scale")
def constexpr_sparse_blockwise_shift_scale(data_mask, nonzero_data, scale, offset=None):
    mask = np.asarray(data_mask)
    dense = blockwise_shift_scale(sparse_to_dense(nonzero_data, mask), scale, offset)
    return mask, dense[mask != 0]


def _along_axis(p, x, axis):
    p = f32(p)
    if p.ndim == 0 or p.size == 1:
        return p.reshape(())
    if p.ndim == x.ndim:
        return p
    ax = as_int(axis)
    ax = ax + x.ndim if ax < 0 else ax
    shape = [1] * x.ndim
    shape[ax] = -1
    return p.reshape(shape)


@register("constexpr_affine_dequantize")
def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis=0):
    q = np.asarray(quantized_data)
    return (q.astype(np.float32) - _along_axis(zero_point, q, axis)) * _along_axis(scale, q, axis)


@register("constexpr_cast")
def constexpr_cast(source_val, output_dtype):
    return np.asarray(source_val).astype(STRING_TO_NUMPY[as_str(output_dtype)])


@register("dequantize")
def dequantize(input, scale, zero_point=None, axis=None):  # noqa: A002 - MIL's parameter name
    q = np.asarray(input)
    x = q.astype(np.float32)
    if zero_point is not None:
        x = x - _along_axis(zero_point, q, axis if axis is not None else 0)
    return x * _along_axis(scale, q, axis if axis is not None else 0)


@register("quantize")
def quantize(input, scale, output_dtype, zero_point=None, axis=None):  # noqa: A002
    x = f32(input)
    target = STRING_TO_NUMPY[as_str(output_dtype)]
    y = np.round(x / _along_axis(scale, x, axis if axis is not None else 0))
    if zero_point is not None:
        y = y + _along_axis(zero_point, x, axis if axis is not None else 0)
    info = np.iinfo(target)
    return np.clip(y, info.min, info.max).astype(target)
