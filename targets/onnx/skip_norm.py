"""Residual add + RMSNorm -> one elm_onnx.skip_rms_norm (onnxruntime's SkipSimplifiedLayerNormalization).

Before (every layer, twice):               After:
    %h = aten.add(%x, %f)                      %n, %h = elm_onnx.skip_rms_norm(%x, %f, %w, eps)
    %n = elm.rms_norm(%h, %w, eps)             (%h still feeds the next residual add)
One kernel reads x and f once, writes the sum for the next residual and the normalised activations: two memory
passes per norm instead of three, and one node instead of two per decode step.
"""

from __future__ import annotations

import operator

import torch

from . import ops  # noqa: F401  (registers elm_onnx::)

aten = torch.ops.aten


def fuse_skip_norms(gm: torch.fx.GraphModule) -> int:
    """Rewrite every `rms_norm(a + b)` with a weight and same-shape a, b in place; returns how many were fused."""
    fused = 0
    for norm in [n for n in gm.graph.nodes if n.target is torch.ops.elm.rms_norm.default]:
        add = norm.args[0]
        if not _plain_add(add) or norm.args[1] is None:
            continue
        a, b = add.args
        with gm.graph.inserting_after(add):  # a, b and the weight are defined before the add; its users after
            skip = gm.graph.call_function(torch.ops.elm_onnx.skip_rms_norm.default, (a, b, norm.args[1], norm.args[2]))
        with gm.graph.inserting_after(skip):
            normed = gm.graph.call_function(operator.getitem, (skip, 0))
        with gm.graph.inserting_after(normed):
            total = gm.graph.call_function(operator.getitem, (skip, 1))
        normed.meta, total.meta = dict(norm.meta), dict(add.meta)  # the next residual add is checked on them
        norm.replace_all_uses_with(normed)
        gm.graph.erase_node(norm)
        add.replace_all_uses_with(total)
        gm.graph.erase_node(add)
        fused += 1
    gm.graph.lint()
    gm.recompile()
    return fused


def _plain_add(node) -> bool:
    """x + y of two float tensors of one shape (no alpha, no broadcasting): what the fused kernel computes."""
    if node.op != "call_function" or node.target is not aten.add.Tensor or node.kwargs or len(node.args) != 2:
        return False
    vals = [getattr(a, "meta", {}).get("val") for a in node.args]
    return all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in vals) \
        and vals[0].shape == vals[1].shape


class SkipNorm:
    name = "onnx::skip_norm"

    def __init__(self, options=None):
        pass

    def run(self, program) -> dict[str, int]:
        return {"skip_norms_fused": fuse_skip_norms(program.gm)}
