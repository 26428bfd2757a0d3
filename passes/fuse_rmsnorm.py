"""fuse_rmsnorm: replace every decomposed RMSNorm with one `elm::rms_norm` (fp16-safe, see elmexport/ir/ops.py).

Before (the reference's float-cast chain; the casts may be absent, `x * x` may replace `pow(x, 2)`):
    %xf   = aten.to.dtype(%x, float32)
    %sq   = aten.pow.Tensor_Scalar(%xf, 2)
    %ms   = aten.mean.dim(%sq, [-1], True)
    %a    = aten.add.Tensor(%ms, 1e-06)
    %r    = aten.rsqrt.default(%a)
    %n    = aten.mul.Tensor(%xf, %r)
    %nc   = aten.type_as.default(%n, %x)
    %out  = aten.mul.Tensor(%nc, %weight)       # absent for an unweighted norm
After:
    %out  = elm.rms_norm(%x, %weight, 1e-06)     # weight None when unweighted

`aten.rms_norm` (torch.nn.RMSNorm) is rewritten to the same op. OpenELM has 4L+1 norms (attn, ffn, q, k per
layer + final), Llama-family models 2L+1; the count is reported so a missed pattern shows up immediately.
"""

from __future__ import annotations

import torch

from ..ir.program import IRProgram

aten = torch.ops.aten
_CASTS = {aten.to.dtype, aten.type_as.default, aten._to_copy.default}


def _strip_cast(node):
    """The value under a chain of dtype casts (the reference's x.float())."""
    while getattr(node, "op", None) == "call_function" and node.target in _CASTS:
        node = node.args[0]
    return node


def _is_square_of(node):
    """Return v if node computes v**2 (pow(v, 2) or v * v), else None."""
    if node.op != "call_function":
        return None
    if node.target is aten.pow.Tensor_Scalar and node.args[1] == 2:
        return node.args[0]
    if node.target is aten.mul.Tensor and node.args[0] is node.args[1]:
        return node.args[0]
    return None


def _last_dim_mean(node) -> bool:
    if node.op != "call_function" or node.target is not aten.mean.dim:
        return False
    dims, keepdim = node.args[1], (node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
    rank = node.args[0].meta["val"].dim()
    return keepdim and len(dims) == 1 and dims[0] in (-1, rank - 1)


def _match(rsqrt):
    """From an rsqrt node, return (x, v, eps, normalized) or None; `normalized` is the mul(v, rsqrt) node."""
    add = rsqrt.args[0]
    if add.op != "call_function" or add.target is not aten.add.Tensor or not isinstance(add.args[1], float):
        return None
    mean = add.args[0]
    if not _last_dim_mean(mean):
        return None
    v = _is_square_of(mean.args[0])
    if v is None:
        return None
    for user in rsqrt.users:
        if user.target is aten.mul.Tensor and v in user.args and rsqrt in user.args:
            x = v.args[0] if v.target in _CASTS else v  # undo the one x.float() of the reference chain
            return x, v, float(add.args[1]), user
    return None


def _weight_after(node):
    """Follow an optional cast back to the input dtype, then an optional mul by a 1-D weight attribute."""
    end = node
    if len(end.users) == 1:
        only = next(iter(end.users))
        if only.target in _CASTS:
            end = only
    if len(end.users) == 1:
        only = next(iter(end.users))
        if only.target is aten.mul.Tensor:
            other = _strip_cast(only.args[1] if only.args[0] is end else only.args[0])
            if getattr(other, "op", None) == "get_attr" and other.meta.get("val") is not None \
                    and other.meta["val"].dim() == 1:
                return other, only  # a cast of the weight (w.half()) is redone inside the fused op
    return None, end


class FuseRMSNorm:
    name = "common::fuse_rmsnorm"

    def run(self, ir: IRProgram) -> dict[str, int]:
        graph = ir.gm.graph
        fused = weighted = 0
        for node in list(graph.nodes):
            if node.op != "call_function":
                continue
            if node.target is aten.rms_norm.default:
                x, _shape, weight, eps = (list(node.args) + [None, None])[:4]
                self._replace(graph, node, x, weight, eps if eps is not None else 1e-6)
                fused += 1
                weighted += weight is not None
                continue
            if node.target is not aten.rsqrt.default:
                continue
            m = _match(node)
            if m is None:
                continue
            x, _v, eps, normalized = m
            weight, last = _weight_after(normalized)
            self._replace(graph, last, x, weight, eps)
            fused += 1
            weighted += weight is not None
        return {"rms_norm_fused": fused, "weighted": weighted, "unweighted": fused - weighted}

    @staticmethod
    def _replace(graph, last, x, weight, eps):
        with graph.inserting_after(last):
            new = graph.call_function(torch.ops.elm.rms_norm.default, (x, weight, eps))
        new.meta["val"] = last.meta.get("val")
        last.replace_all_uses_with(new)
