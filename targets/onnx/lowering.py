"""The ONNX target's lowering table: elm:: / elm_onnx:: op -> onnxscript function (torch.onnx custom_translation_table).

Each function is traced inline by the dynamo exporter, so every IR op becomes exactly one ONNX node:

    elm.rms_norm(x, w, eps)                 -> RMSNormalization(x, w, epsilon=eps, axis=-1)        (opset 23)
    elm_onnx.skip_rms_norm(x, f, w, eps)    -> com.microsoft.SkipSimplifiedLayerNormalization(x, f, w)
    elm_onnx.gqa_lengths(mask)              -> Cast(ReduceSum(mask) - 1), Cast(Shape(mask)[1])      (once)
    elm_onnx.group_query_attention(...)     -> com.microsoft.GroupQueryAttention(..., do_rotary=1)
    elm_onnx.matmul_nbits(x, p, s, ...)     -> com.microsoft.MatMulNBits(x, p, s, K, N, bits, block_size)
    elm_onnx.gather_nbits(p, s, ids, ...)   -> com.microsoft.GatherBlockQuantized(reshape(p), ids, reshape(s))

The elm:: / elm_onnx:: reference kernels define the numbers; onnxruntime's kernels for these nodes compute the
same formulas (RMSNorm in fp32 without the fp16-safe rescaling, which fp32 does not need).
"""

from __future__ import annotations

import torch
from onnx.defs import OpSchema
from onnxscript import opset23 as op
from onnxscript.values import Op, Opset

from . import ops  # noqa: F401  (registers elm_onnx::)

OPSET = 23


def _contrib_op(name: str, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]], types: dict[str, list[str]],
                attributes: list[str], optional: tuple[str, ...] = (), float_attributes: tuple[str, ...] = ()) -> Op:
    """An onnxscript handle for an onnxruntime contrib op (onnx ships no schemas for com.microsoft ops)."""
    P = OpSchema.FormalParameter
    opt, single = OpSchema.FormalParameterOption.Optional, OpSchema.FormalParameterOption.Single
    kind = OpSchema.AttrType
    schema = OpSchema(
        name, "com.microsoft", 1,
        inputs=[P(n, t, param_option=opt if n in optional else single) for n, t in inputs],
        outputs=[P(n, t, param_option=opt if n in optional else single) for n, t in outputs],
        type_constraints=[(t, allowed, "") for t, allowed in types.items()],
        attributes=[OpSchema.Attribute(a, kind.FLOAT if a in float_attributes else kind.INT, "", required=False)
                    for a in attributes],
    )
    return Op(Opset("com.microsoft", 1), name, schema)


MatMulNBits = _contrib_op(
    "MatMulNBits", [("A", "T1"), ("B", "T2"), ("scales", "T1"), ("zero_points", "T3"), ("g_idx", "T4"), ("bias", "T1")],
    [("Y", "T1")], {"T1": ["tensor(float)", "tensor(float16)"], "T2": ["tensor(uint8)"],
                    "T3": ["tensor(uint8)", "tensor(float)", "tensor(float16)"], "T4": ["tensor(int32)"]},
    ["K", "N", "bits", "block_size", "accuracy_level"], optional=("zero_points", "g_idx", "bias"))
GatherBlockQuantized = _contrib_op(
    "GatherBlockQuantized", [("data", "T1"), ("indices", "Tind"), ("scales", "T2"), ("zero_points", "T1")],
    [("output", "T2")], {"T1": ["tensor(uint8)", "tensor(int4)", "tensor(uint4)"],
                         "T2": ["tensor(float)", "tensor(float16)"], "Tind": ["tensor(int32)", "tensor(int64)"]},
    ["bits", "block_size", "gather_axis", "quantize_axis"], optional=("zero_points",))

SkipSimplifiedLayerNormalization = _contrib_op(
    "SkipSimplifiedLayerNormalization", [("input", "T"), ("skip", "T"), ("gamma", "T"), ("bias", "T")],
    [("output", "T"), ("mean", "U"), ("inv_std_var", "U"), ("input_skip_bias_sum", "T")],
    {"T": ["tensor(float)", "tensor(float16)"], "U": ["tensor(float)"]}, ["epsilon"],
    optional=("bias", "mean", "inv_std_var", "input_skip_bias_sum"), float_attributes=("epsilon",))
_GQA_INPUTS = ["query", "key", "value", "past_key", "past_value", "seqlens_k", "total_sequence_length", "cos_cache",
               "sin_cache"]
GroupQueryAttention = _contrib_op(
    "GroupQueryAttention", [(n, {"seqlens_k": "M", "total_sequence_length": "M"}.get(n, "T")) for n in _GQA_INPUTS],
    [("output", "T"), ("present_key", "T"), ("present_value", "T")],
    {"T": ["tensor(float)", "tensor(float16)"], "M": ["tensor(int32)"]},
    ["num_heads", "kv_num_heads", "scale", "do_rotary", "rotary_interleaved", "local_window_size", "softcap"],
    optional=("key", "value", "cos_cache", "sin_cache"), float_attributes=("scale", "softcap"))


def rms_norm(x, weight, eps: float):
    if weight is None:
        weight = op.ConstantOfShape(op.Shape(x, start=-1), value=op.Constant(value_float=1.0))
    return op.RMSNormalization(x, weight, axis=-1, epsilon=eps, stash_type=1)


def skip_rms_norm(x, skip, weight, eps: float):
    normed, _, _, total = SkipSimplifiedLayerNormalization(x, skip, weight, epsilon=eps)
    return normed, total


def gqa_lengths(attention_mask):
    attended = op.ReduceSum(attention_mask, op.Constant(value_ints=[1]), keepdims=0)
    seqlens_k = op.Cast(op.Sub(attended, op.Constant(value_int=1)), to=6)  # int32
    total = op.Cast(op.Gather(op.Shape(attention_mask), op.Constant(value_int=1), axis=0), to=6)
    return seqlens_k, total


def group_query_attention(query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache,
                          sin_cache, num_heads: int, kv_num_heads: int, scale: float):
    y, present_key, present_value = GroupQueryAttention(
        query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache, sin_cache,
        num_heads=num_heads, kv_num_heads=kv_num_heads, scale=scale, do_rotary=1, rotary_interleaved=0)
    return y, present_key, present_value


def matmul_nbits(x, packed, scales, bits: int, block_size: int, accuracy_level: int):
    n, blocks, blob = packed.shape
    return MatMulNBits(x, packed, scales, K=blocks * blob * 8 // bits, N=n, bits=bits, block_size=block_size,
                            accuracy_level=accuracy_level)


def gather_nbits(packed, scales, ids, bits: int, block_size: int):
    n, blocks, blob = packed.shape
    data = op.Reshape(packed, op.Constant(value_ints=[n, blocks * blob]))
    table_scales = op.Reshape(scales, op.Constant(value_ints=[n, blocks]))
    return GatherBlockQuantized(data, ids, table_scales, bits=bits, block_size=block_size,
                                     gather_axis=0, quantize_axis=1)


TRANSLATIONS = {
    torch.ops.elm.rms_norm.default: rms_norm,
    torch.ops.elm_onnx.skip_rms_norm.default: skip_rms_norm,
    torch.ops.elm_onnx.gqa_lengths.default: gqa_lengths,
    torch.ops.elm_onnx.group_query_attention.default: group_query_attention,
    torch.ops.elm_onnx.matmul_nbits.default: matmul_nbits,
    torch.ops.elm_onnx.gather_nbits.default: gather_nbits,
}


def unsupported_ops(gm: torch.fx.GraphModule) -> list[str]:
    """Custom (elm::) ops in the graph that have no lowering here, e.g. palettized weights."""
    return sorted({str(n.target) for n in gm.graph.nodes if n.op == "call_function"
                   and str(n.target).startswith(("elm.", "elm_onnx.")) and n.target not in TRANSLATIONS})
