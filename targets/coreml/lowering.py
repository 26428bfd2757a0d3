"""Core ML lowering table: elm:: ops -> MIL, plus the cache-write lowering coremltools needs from our IR.

MIL lowerings (registered with coremltools' torch frontend when this module is imported):
- elm::rms_norm            -> fp16-safe max-scaled RMSNorm (reduce_max|x|, divide, mean of squares, rsqrt with
                              the eps term rescaled by 1/m^2): no overflow in fp16 for any finite input.
- elm::quantized_linear    -> constexpr_blockwise_shift_scale(int4/int8 codes, fp16 scales) + linear
- elm::quantized_embedding -> the same constexpr (shared with a tied head) + gather
- elm::palettized_linear   -> constexpr_lut_to_dense(uintN indices, fp16 LUT per channel group) + linear
- elm::palettized_embedding-> the same constexpr + gather
The codes, scales, LUTs and indices are the IR's own tensors, so the dequantized weights are the IR's exactly.

elm::attention is lowered before export (attention.py); its cache writes reach the frontend as
- The cache write `index_put_(cache, [None, None, input_pos], new)` of a T-token chunk becomes one slice_update
  starting at input_pos[0] (override of the frontend's index_put for this exact pattern; coremltools alone
  handles only single-position writes). Core ML packages therefore take contiguous positions start..start+T-1.
"""

from __future__ import annotations

import numpy as np
import torch

aten = torch.ops.aten
_REGISTERED = False


def register_lowerings() -> None:
    """Register the MIL lowerings once per process (coremltools' registry is global)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch import ops as torch_ops
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op
    from coremltools.converters.mil.mil import types

    shared_weights: dict = {}  # (kind, id of codes) -> MIL var, so a tied table is stored once

    def const_val(var):
        return None if var is None else var.val

    def scalar_like(x, value):
        """A constant in x's dtype (MIL binary ops need matching dtypes)."""
        return np.array(value, dtype=types.nptype_from_builtin(x.dtype))

    def match_dtype(w, x):
        """Dequantized weights are fp16 (the IR's exact values); before the fp16 pass an fp32 graph needs a cast,
        which coremltools' precision pass removes again when the whole program becomes fp16."""
        return w if w.dtype == x.dtype else mb.cast(x=w, dtype=types.builtin_to_string(x.dtype))

    @register_torch_op(torch_alias=["elm::rms_norm", "elm.rms_norm.default"])
    def elm_rms_norm(context, node):
        x, weight, eps = _get_inputs(context, node, expected=3)
        eps = float(const_val(eps))
        m = mb.reduce_max(x=mb.abs(x=x), axes=[-1], keep_dims=True)
        m = mb.maximum(x=m, y=scalar_like(x, 6.1e-5))  # any m > 0 gives the same result; keep it fp16-normal
        y = mb.real_div(x=x, y=m)
        mean_sq = mb.reduce_mean(x=mb.mul(x=y, y=y), axes=[-1], keep_dims=True)
        e = mb.real_div(x=scalar_like(x, eps ** 0.5), y=m)
        out = mb.mul(x=y, y=mb.rsqrt(x=mb.add(x=mean_sq, y=mb.mul(x=e, y=e))))
        if weight is not None:
            out = mb.mul(x=out, y=match_dtype(weight, x))
        context.add(out, torch_name=node.name)

    def blockwise_weight(qweight, scales, bits):
        key = ("blockwise", qweight.name)
        if key not in shared_weights:
            dtype = types.nptype_from_builtin(types.string_to_builtin(f"int{int(bits)}"))
            codes = const_val(qweight).astype(np.int8).astype(dtype)
            shared_weights[key] = mb.constexpr_blockwise_shift_scale(
                data=codes, scale=const_val(scales).astype(np.float16), name=f"{qweight.name}_dequant")
        return shared_weights[key]

    def lut_weight(lut, indices, group_size, nbits):
        key = ("lut", indices.name)
        if key not in shared_weights:
            idx = const_val(indices)
            table = const_val(lut).astype(np.float16)  # [groups, K]
            groups, k = table.shape
            dtype = types.nptype_from_builtin(types.string_to_builtin(f"uint{int(nbits)}"))
            shared_weights[key] = mb.constexpr_lut_to_dense(
                indices=idx.astype(dtype), lut=table.reshape(groups, 1, k, 1), name=f"{indices.name}_dequant")
        return shared_weights[key]

    @register_torch_op(torch_alias=["elm::quantized_linear", "elm.quantized_linear.default"])
    def elm_quantized_linear(context, node):
        x, qweight, scales, _block, bits = _get_inputs(context, node, expected=5)
        w = match_dtype(blockwise_weight(qweight, scales, const_val(bits)), x)
        context.add(mb.linear(x=x, weight=w, name=node.name), torch_name=node.name)

    @register_torch_op(torch_alias=["elm::quantized_embedding", "elm.quantized_embedding.default"])
    def elm_quantized_embedding(context, node):
        qweight, scales, ids, _block, bits = _get_inputs(context, node, expected=5)
        w = blockwise_weight(qweight, scales, const_val(bits))
        out = mb.gather(x=w, indices=ids, axis=0)
        context.add(mb.cast(x=out, dtype="fp32", name=node.name), torch_name=node.name)

    @register_torch_op(torch_alias=["elm::palettized_linear", "elm.palettized_linear.default"])
    def elm_palettized_linear(context, node):
        x, lut, indices, group, nbits = _get_inputs(context, node, expected=5)
        w = match_dtype(lut_weight(lut, indices, const_val(group), const_val(nbits)), x)
        context.add(mb.linear(x=x, weight=w, name=node.name), torch_name=node.name)

    @register_torch_op(torch_alias=["elm::palettized_embedding", "elm.palettized_embedding.default"])
    def elm_palettized_embedding(context, node):
        lut, indices, ids, group, nbits = _get_inputs(context, node, expected=5)
        w = lut_weight(lut, indices, const_val(group), const_val(nbits))
        out = mb.gather(x=w, indices=ids, axis=0)
        context.add(mb.cast(x=out, dtype="fp32", name=node.name), torch_name=node.name)

    original_index_put = torch_ops.index_put

    @register_torch_op(override=True)
    def index_put(context, node):
        """A T-token cache write at contiguous positions -> one slice_update from input_pos[0]."""
        inputs = _get_inputs(context, node, expected=(3, 4))
        x, indices, values = inputs[0], inputs[1], inputs[2]
        dims = [i for i, idx in enumerate(indices) if idx is not None] if isinstance(indices, list) else []
        if len(dims) == 1 and indices[dims[0]].rank == 1 and indices[dims[0]].shape[0] > 1:
            dim, index = dims[0], indices[dims[0]]
            length = int(index.shape[0])
            expected = list(x.shape)
            expected[dim] = length
            if tuple(values.shape) != tuple(expected):
                if int(np.prod(values.shape)) != int(np.prod(expected)):
                    original_index_put(context, node)
                    return
                values = mb.reshape(x=values, shape=expected)  # export may drop size-1 dims of the update
            start = mb.slice_by_index(x=index, begin=[0], end=[1])
            begin = [np.array([0], dtype=np.int32)] * x.rank
            end = [np.array([s], dtype=np.int32) for s in x.shape]
            begin[dim] = mb.cast(x=start, dtype="int32")
            end[dim] = mb.add(x=begin[dim], y=np.int32(length))
            updated = mb.slice_update(x=x, update=values, begin=mb.concat(values=begin, axis=0),
                                      end=mb.concat(values=end, axis=0), name=node.name)
            context.add(updated, torch_name=node.name)
            return
        original_index_put(context, node)

    register_lowerings.shared_weights = shared_weights
    _REGISTERED = True


def reset_shared_weights() -> None:
    """Forget tied-weight vars between conversions (each conversion builds a new MIL program)."""
    shared = getattr(register_lowerings, "shared_weights", None)
    if shared is not None:
        shared.clear()
