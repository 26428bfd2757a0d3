"""Put the graph in the form XNNPACK can take with a dynamic token count, so it is cut into few delegate calls.

XNNPACK rejects slices and splits of a tensor whose shape is dynamic, reshapes with a symbolic size, and
reductions other than 4-D spatial means. Every rejected op cuts the delegate in two, and each cut costs a
delegate call per forward plus ~1 s of lowering. These rewrites are exact (or exact up to fp32 summation order)
and, with attention.py, leave one delegate per attention block and one per FFN block:

1. split_fused_ffn -- the FFN's fused [gate; up] projection becomes one linear per part, on row slices of the
   same weight (for quantized linears, of the same int codes and scales):
       %y = linear(%x, %W_1); split(%y, ffn, -1)       -> linear(%x, %W_gate) ; linear(%x, %W_up)
   (attention.py does the same for the qkv projection and rotate-half when it lowers elm.attention)
2. infer_token_dim -- view/reshape sizes that name the symbolic T are written as -1.
3. rms_norm_mean_as_gemm -- elm.rms_norm becomes rms_norm_for_xnnpack, with mean(x^2) as linear(x*x, [1/D]*D):
   an fp32 GEMM with a constant weight instead of an undelegatable reduction. The fp16-safe max-rescaling of the reference kernel is
   dropped: this program computes in fp32, where x^2 cannot overflow for any activation a model produces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...ir.ops import ELM_OPS
from ...ir.graph_edit import add_constant, constant_tensor
from .split_projections import split_fused_ffn  # rewrite 1

aten = torch.ops.aten
_VIEWS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)


def add_mean_row(gm: torch.fx.GraphModule, width: int) -> torch.fx.Node:
    """The constant [1, width] row of 1/width that rms_norm_for_xnnpack takes the mean with."""
    return add_constant(gm, f"rms_mean_row_{width}", torch.full((1, width), 1.0 / width))


def rms_norm_for_xnnpack(x, weight, eps: float, mean_row):
    """elm.rms_norm for an fp32 XNNPACK program: x * rsqrt(mean(x^2) + eps) * w, the mean as x^2 @ mean_row.T."""
    out = x * torch.rsqrt(F.linear(x * x, mean_row) + eps)
    if weight is None:
        return out
    return out * (weight if weight.dtype == x.dtype else weight.to(x.dtype))  # no no-op cast node per norm


def to_xnnpack_form(gm: torch.fx.GraphModule) -> dict[str, int]:
    """Rewrites 1-3 in place."""
    counts = {"ffn_projections_split": split_fused_ffn(gm),
              "views_inferred": infer_token_dim(gm),
              "rms_norm_gemm_mean": rms_norm_mean_as_gemm(gm)}
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    return counts


# ------------------------------------------------------------------------------------------ 2. static views
def infer_token_dim(gm: torch.fx.GraphModule) -> int:
    done = 0
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _VIEWS:
            shape = list(node.args[1])
            symbolic = [i for i, s in enumerate(shape) if not isinstance(s, int)]
            if len(symbolic) == 1 and -1 not in shape:
                shape[symbolic[0]] = -1
                node.args = (node.args[0], shape, *node.args[2:])
                done += 1
    return done


# ------------------------------------------------------------------------------------------------ 3. rms_norm
def rms_norm_mean_as_gemm(gm: torch.fx.GraphModule) -> int:
    """elm.rms_norm(x, w, eps) -> rms_norm_for_xnnpack(x, w, eps, %mean_row) with a constant [1, D] row of 1/D."""
    rows: dict[int, torch.fx.Node] = {}
    done = 0
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is ELM_OPS["rms_norm"]:
            d = node.args[0].meta["val"].shape[-1] if "val" in node.args[0].meta else None
            d = d if isinstance(d, int) else _norm_dim(gm, node)
            if d not in rows:
                rows[d] = add_mean_row(gm, d)
            node.target = rms_norm_for_xnnpack
            node.args = (*node.args[:3], rows[d])
            done += 1
    return done


def _norm_dim(gm, node) -> int:
    weight = node.args[1]
    if weight is None:
        raise ValueError(f"cannot tell the width of unweighted norm {node.name}")
    return constant_tensor(gm, weight.target).shape[0]


class XnnpackForm:
    name = "executorch::xnnpack_form"

    def __init__(self, options=None):
        pass

    def run(self, program) -> dict[str, int]:
        return to_xnnpack_form(program.gm)
