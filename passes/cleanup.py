"""cleanup: drop export bookkeeping that no target needs.

Before:
    %_assert_tensor_metadata = aten._assert_tensor_metadata(%x, dtype=float32)
    %to = aten.to.dtype(%x, float32)          # x is already float32
    %y = aten.mul.Tensor(%to, %r)
After:
    %y = aten.mul.Tensor(%x, %r)

Only no-op casts (input dtype == requested dtype, known from the node's fake-tensor metadata) are removed.
"""

from __future__ import annotations

import torch

from ..ir.program import IRProgram

_NOOP_CASTS = {torch.ops.aten.to.dtype, torch.ops.aten.type_as.default, torch.ops.aten._to_copy.default}


class Cleanup:
    name = "common::cleanup"

    def run(self, ir: IRProgram) -> dict[str, int]:
        asserts = casts = 0
        for node in list(ir.gm.graph.nodes):
            if node.op != "call_function":
                continue
            if node.target is torch.ops.aten._assert_tensor_metadata.default:
                ir.gm.graph.erase_node(node)
                asserts += 1
            elif node.target in _NOOP_CASTS and _same_dtype(node):
                node.replace_all_uses_with(node.args[0])
                ir.gm.graph.erase_node(node)
                casts += 1
        return {"asserts_removed": asserts, "noop_casts_removed": casts}


def _same_dtype(node) -> bool:
    src, out = node.args[0], node
    a = getattr(src, "meta", {}).get("val")
    b = out.meta.get("val")
    if a is None or b is None or not isinstance(a, torch.Tensor):
        return False
    if node.target is torch.ops.aten._to_copy.default and set(node.kwargs) - {"dtype"}:
        return False
    return a.dtype == b.dtype
