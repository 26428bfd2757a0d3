"""Keep attention inputs token-major ([1, T, heads, hd]), the layout llama::update_cache and custom_sdpa read.

Before (per layer, after attention.py and the XNNPACK form; q shown, k and v alike):
    %q  = view(linear(%x, %W_q), [1, -1, H, hd]) ; %qt = transpose(%q, 1, 2)           # [1, H, T, hd]
    %qn = rms_norm(%qt) (OpenELM) ; %qr = add(mul(%qn, %cos), mul(linear(%qn, %R), %sin))  # cos, sin: [T, hd]
    %o  = cached_attention(%qr, %kr, %vt, ...)       # transposes q, k, v back, and its output to [1, H, T, hd]
    %y  = view(transpose(%o, 1, 2), [1, -1, D])
After:
    %qr = add(mul(%qn, %cos_t), mul(linear(%qn, %R), %sin_t)) on %q itself       # cos_t = unsqueeze(cos, -2)
    %o  = cached_attention_token_major(%qr, %kr, %v, ...)                       # [1, T, H, hd], no transposes
    %y  = view(%o, [1, -1, D])
Why: at T = 1 an XNNPACK op costs a fixed price per call, whatever its size (a transpose ~0.4 us, an elementwise op
~0.25 us, an fp32 GEMM ~2 us: `python benchmarks/xnnpack_op_cost.py`); the 8 transposes per layer (240 per
SmolLM2 token) are pure overhead. Norm, rotate-half and the table multiplies work on the last axis, so
they give the same numbers in either layout: the rewrite is exact.
"""

from __future__ import annotations

import torch

from .attention import cached_attention, cached_attention_token_major
from .xnnpack_form import rms_norm_for_xnnpack

aten = torch.ops.aten
_LAST_AXIS_OPS = {rms_norm_for_xnnpack, aten.linear.default, aten.mul.Tensor, aten.add.Tensor}


def use_token_major_attention(gm: torch.fx.GraphModule) -> dict[str, int]:
    """Rewrite every cached_attention whose q, k, v come from transpose(1, 2) through last-axis ops; in place."""
    done = 0
    tables: dict[torch.fx.Node, torch.fx.Node] = {}
    for att in [n for n in gm.graph.nodes if n.op == "call_function" and n.target is cached_attention]:
        regions = [_region(arg) for arg in att.args[:3]]
        out_transposes = [u for u in att.users if _is_transpose_12(u)]
        if any(r is None for r in regions) or len(out_transposes) != len(att.users):
            continue
        for transpose, region in regions:
            for node in region:
                if node.target is aten.mul.Tensor:
                    node.args = tuple(_token_major_table(gm, tables, a) if _is_table(a, region, transpose) else a
                                      for a in node.args)
            transpose.replace_all_uses_with(transpose.args[0])
        att.target = cached_attention_token_major
        for t in out_transposes:
            t.replace_all_uses_with(att)
        done += 1
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    return {"token_major_attention": done}


def _is_transpose_12(node) -> bool:
    return node.op == "call_function" and node.target is aten.transpose.int and sorted(node.args[1:3]) == [1, 2]


def _region(node):
    """(the transpose, the last-axis ops between it and the attention) if node is reached only that way."""
    region, stack, transpose = [], [node], None
    while stack:
        n = stack.pop()
        if _is_transpose_12(n):
            if transpose is not None and transpose is not n:
                return None
            transpose = n
        elif n not in region:
            if n.op != "call_function" or n.target not in _LAST_AXIS_OPS:
                return None
            region.append(n)
            stack.extend(a for a in n.args[:2] if isinstance(a, torch.fx.Node) and not _is_constant(a)
                         and not _is_table_like(a))
    if transpose is None:
        return None
    inside = set(region) | {transpose}
    if any(u not in inside and u.target is not cached_attention for n in inside for u in n.users):
        return None  # something else reads the head-major tensor: leave this layer alone
    return transpose, region


def _is_constant(node) -> bool:
    return node.op == "get_attr"


def _is_table_like(node) -> bool:
    """RoPE cos/sin rows: [T, hd] tensors indexed by position, not derived from the projections."""
    val = node.meta.get("val")
    return node.op == "call_function" and node.target is aten.index.Tensor and val is not None and val.dim() == 2


def _is_table(arg, region, transpose) -> bool:
    return isinstance(arg, torch.fx.Node) and arg not in region and arg is not transpose and _is_table_like(arg)


def _token_major_table(gm, tables: dict, table: torch.fx.Node) -> torch.fx.Node:
    """[T, hd] -> [T, 1, hd], once per table: broadcasts over the heads axis of [1, T, H, hd]."""
    if table not in tables:
        with gm.graph.inserting_after(table):
            tables[table] = gm.graph.call_function(aten.unsqueeze.default, (table, -2))
    return tables[table]
