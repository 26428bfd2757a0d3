"""The IR's block-quantized weights -> MatMulNBits / GatherBlockQuantized layout, code for code.

Before (quantize_linear's output; codes int8 in [-8, 7] or [-128, 127], fp16 scales [N, K/block]):
    %q, %s = get_attr[...weight_qweight], get_attr[...weight_scales]
    %y = elm.quantized_linear(%x, %q, %s, block, bits)           %e = elm.quantized_embedding(%q, %s, %ids, block, bits)
After:
    %p, %f = get_attr[...weight_onnx_packed], get_attr[...weight_onnx_scales]
    %y = elm_onnx.matmul_nbits(%x, %p, %f, bits, B, acc)          %e = elm_onnx.gather_nbits(%p, %f, %ids, bits, B)
with %p = code + 2^(bits-1) packed at `bits` (zero point implied), %f the same scales in fp32 repeated so that
each covers B = the largest power of two (<= 128) dividing the IR block: MatMulNBits needs a power-of-two block
>= 16, and a per-channel int8 row (block = K = 1280) becomes 10 blocks of 128 with one scale. The dequantized
weights are therefore bit-identical to the IR's. A tied embedding/head keeps one packed table for both ops.
"""

from __future__ import annotations

import torch

from ...errors import ElmExportError
from ...ir.graph_edit import add_constant
from .ops import pack_codes

MAX_BLOCK = 128
SUPPORTED_BITS = (4, 8)


def onnx_block_size(ir_block: int, in_features: int) -> int:
    """The MatMulNBits block for an IR block (0 = per-channel): largest power of two dividing it, at most 128."""
    b = ir_block or in_features
    p = min(b & -b, MAX_BLOCK)
    if p < 16:
        raise ElmExportError(f"block_size {b} cannot be lowered to MatMulNBits (needs a multiple of 16); "
                             f"use block_size 16, 32, 64 or 128 in the quant config")
    return p


def check_block_size(ir_block: int) -> None:
    """Early check on a quant config's block size (0 = per-channel is checked per weight at export)."""
    if ir_block:
        onnx_block_size(ir_block, ir_block)


def lower_quantized_weights(gm: torch.fx.GraphModule, accuracy_level: int) -> dict[str, int]:
    """Rewrite every elm.quantized_linear/embedding of `gm` in place; returns counts for the manifest."""
    qlinear = torch.ops.elm.quantized_linear.default
    qembed = torch.ops.elm.quantized_embedding.default
    packed: dict[str, tuple] = {}  # qweight attr -> (packed get_attr, scales get_attr, onnx block)
    counts = {"matmul_nbits": 0, "gather_nbits": 0, "shared_tables": 0}

    def lowered(q_node, s_node, ir_block, bits):
        key = q_node.target
        if key in packed:
            counts["shared_tables"] += 1
            return packed[key]
        if bits not in SUPPORTED_BITS:
            raise ElmExportError(f"{key}: {bits}-bit weights cannot be lowered to MatMulNBits (4 or 8 bits)")
        codes, scales = gm.get_buffer(q_node.target), gm.get_buffer(s_node.target)
        block = onnx_block_size(ir_block, codes.shape[1])
        p = pack_codes(codes, bits, block)
        f = scales.float().repeat_interleave((ir_block or codes.shape[1]) // block, dim=1).reshape(-1).contiguous()
        base = q_node.target.removesuffix("_qweight")
        getters = [add_constant(gm, f"{base}_{suffix}", t) for suffix, t in (("onnx_packed", p), ("onnx_scales", f))]
        packed[key] = (*getters, block)
        return packed[key]

    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (qlinear, qembed):
            continue
        if node.target is qlinear:
            x, q, s, ir_block, bits = node.args
            p, f, block = lowered(q, s, ir_block, bits)
            new_args = (x, p, f, bits, block, accuracy_level)
            op, counts_key = torch.ops.elm_onnx.matmul_nbits.default, "matmul_nbits"
        else:
            q, s, ids, ir_block, bits = node.args
            p, f, block = lowered(q, s, ir_block, bits)
            new_args = (p, f, ids, bits, block)
            op, counts_key = torch.ops.elm_onnx.gather_nbits.default, "gather_nbits"
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(op, new_args)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        counts[counts_key] += 1
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return counts


class MatMulNBits:
    """onnx::matmul_nbits: quantized weights in MatMulNBits / GatherBlockQuantized layout; refuses what ONNX cannot
    run (palettized weights) with the quant modes it can."""

    name = "onnx::matmul_nbits"

    def __init__(self, options):
        self.accuracy_level = options.accuracy_level

    def run(self, program) -> dict[str, int]:
        from .lowering import unsupported_ops

        counts = lower_quantized_weights(program.gm, self.accuracy_level)
        bad = unsupported_ops(program.gm)
        if bad:
            raise ElmExportError(f"the ONNX target cannot lower {bad[0]}; use --quant none, int8 or int4")
        return counts
