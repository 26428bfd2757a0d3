"""Fused projections -> one linear per part, on row slices of the same weight (quantized: same codes, scales).

Before:  %y = linear(%x, %W_1) ; split(%y, ffn, -1)                           (FFN [gate; up])
After:   linear(%x, %W_gate) ; linear(%x, %W_up)
Exact: each output row is computed from the same weights as before. Why: XNNPACK cannot split a tensor of
dynamic shape. attention.py splits the qkv projection of each elm.attention the same way (`linear_parts`).
ONNX does neither: GroupQueryAttention takes the fused qkv as it is, and onnxruntime runs one fused [gate; up]
MatMulNBits + Split ~3% faster per decode token than two MatMulNBits.
"""

from __future__ import annotations

import operator

import torch

from ...ir.graph_edit import add_constant, constant_tensor
from ...ir.ops import ELM_OPS

aten = torch.ops.aten
QUANTIZED_LINEAR = ELM_OPS["quantized_linear"]
_VIEWS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)


def is_linear(node) -> bool:
    if node.op != "call_function":
        return False
    if node.target is aten.linear.default:
        return node.args[1].op == "get_attr" and (len(node.args) < 3 or node.args[2] is None)
    return node.target is QUANTIZED_LINEAR


def _only_user(node):
    return next(iter(node.users)) if len(node.users) == 1 else None


def _getitems(split) -> dict[int, torch.fx.Node] | None:
    items = {}
    for u in split.users:
        if u.target is not operator.getitem:
            return None
        items[u.args[1]] = u
    return items


def split_fused_ffn(gm: torch.fx.GraphModule) -> int:
    """linear + split(-1) -> one linear per part (the FFN's [gate; up])."""
    done = 0
    for lin in [n for n in gm.graph.nodes if is_linear(n)]:
        user = _only_user(lin)
        if user is None or user.target is not aten.split.Tensor:
            continue
        split_dim = user.args[2] if len(user.args) > 2 else user.kwargs.get("dim", 0)
        size, items, rows = user.args[1], _getitems(user), lin.meta["val"].shape[-1]
        if split_dim not in (-1, lin.meta["val"].dim() - 1) or items is None or rows % size:
            continue
        new = linear_parts(gm, lin, [(i * size, (i + 1) * size) for i in range(rows // size)])
        for i, node in items.items():
            node.replace_all_uses_with(new[i])
        done += 1
    return done


def linear_parts(gm, lin, row_ranges) -> list[torch.fx.Node]:
    """One linear per row range of lin's weight (for elm.quantized_linear: of its codes and scales)."""
    x = lin.args[0]
    tensors = [lin.args[1]] + ([lin.args[2]] if lin.target is QUANTIZED_LINEAR else [])
    out = []
    for i, (a, b) in enumerate(row_ranges):
        getters = []
        for t in tensors:
            src = constant_tensor(gm, t.target)
            getters.append(add_constant(gm, f"{t.target}_rows{i}", src[a:b].clone()))
        args = (x, *getters, *lin.args[len(tensors) + 1:])
        with gm.graph.inserting_before(lin):
            out.append(gm.graph.call_function(lin.target, args))
    return out
