"""fuse_attention: replace each layer's attention block with one `elm::attention` (see elmexport/ir/ops.py).

Before (one layer as the front end captures it; `fuse_rmsnorm` has already turned the q/k norms into elm ops):
    %qkv  = linear(%x, %W_qkv)                                       # [1, T, (Hq + 2 Hkv) hd], rows q | k | v
    %h    = transpose(view(%qkv, [1, T, Hq + 2 Hkv, hd]), 1, 2)
    %q, %k, %v = split_with_sizes(%h, [Hq, Hkv, Hkv], 1)
    %q, %k = elm.rms_norm(%q, %wq, eps), elm.rms_norm(%k, %wk, eps)   # OpenELM only
    %cos, %sin = index(rope_cos, [%input_pos]), index(rope_sin, [%input_pos])          # once per graph
    %qr   = add(mul(%q, %cos), mul(cat([neg(%q[..., h:]), %q[..., :h]]), %sin))   # rotate-half RoPE; %kr alike
    %kw   = index_put_(k_cache_i, [None, None, %input_pos], %kr) ; %vw = index_put_(v_cache_i, ..., %v)
    %mask = le(unsqueeze(cache_positions, 0), unsqueeze(%input_pos, 1))                # once per graph
    %o    = scaled_dot_product_attention(%qr, %kw, %vw, %mask, scale=s, enable_gqa=Hq != Hkv)
    %y    = reshape(transpose(%o, 1, 2), [1, T, Hq hd])
After:
    %y    = elm.attention(%qkv, k_cache_i, v_cache_i, %input_pos, %cos, %sin, %wq, %wk, Hq, Hkv, eps, s)

Every target lowers the one op (a GroupQueryAttention node, ExecuTorch's cache kernels, Core ML's folded-GQA
SDPA), so no target recognises attention, RoPE or the qkv split again. A block that does not match exactly is
left as it is and reported (`attention_unmatched`): targets then refuse the graph with that count, rather than
lowering something they do not understand.
"""

from __future__ import annotations

import operator

import torch

from ..errors import ElmExportError
from ..ir.ops import ELM_OPS
from ..ir.program import IRProgram

aten = torch.ops.aten
_VIEWS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)
_INDEX_PUT = (aten.index_put_.default, aten.index_put.default)
_RMS_NORM = ELM_OPS["rms_norm"]


class Unmatched(Exception):
    """This SDPA is not the model's attention block; the message says where the match stopped."""


class FuseAttention:
    name = "common::fuse_attention"

    def __init__(self):
        self.extra: dict = {}

    def run(self, ir: IRProgram) -> dict[str, int]:
        graph = ir.gm.graph
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        input_pos = placeholders[1] if len(placeholders) > 1 else None
        fused, unmatched = 0, []
        for sdpa in [n for n in graph.nodes
                     if n.op == "call_function" and n.target is aten.scaled_dot_product_attention.default]:
            try:
                block = _match(ir.gm, sdpa, input_pos)
            except Unmatched as why:
                unmatched.append(f"{sdpa.name}: {why}")
                continue
            with graph.inserting_before(block["output"]):
                new = graph.call_function(ELM_OPS["attention"], block["args"])
            new.meta["val"] = block["output"].meta.get("val")
            block["output"].replace_all_uses_with(new)
            for dead in block["dead"]:  # the cache writes are in place, so fx never deems them dead
                if not dead.users:
                    graph.erase_node(dead)
            fused += 1
        graph.eliminate_dead_code()
        self.extra = {"unmatched": unmatched} if unmatched else {}
        return {"attention_fused": fused, "attention_unmatched": len(unmatched)}


def _match(gm, sdpa, input_pos) -> dict:
    q_rot, k_write, v_write = sdpa.args[:3]
    mask = sdpa.args[3] if len(sdpa.args) > 3 else sdpa.kwargs.get("attn_mask")
    if sdpa.kwargs.get("is_causal") or sdpa.kwargs.get("dropout_p") or not _is_cache_mask(gm, mask, input_pos):
        raise Unmatched("the mask is not the causal cache mask cache_positions <= input_pos")
    k_cache, k_rot = _cache_write(k_write, input_pos)
    v_cache, v = _cache_write(v_write, input_pos)
    if len(k_write.users) != 1 or len(v_write.users) != 1:
        raise Unmatched("a written cache is read by something other than this attention")
    q_pre, cos, sin = _unrope(q_rot, input_pos)
    k_pre, k_cos, k_sin = _unrope(k_rot, input_pos)
    if (k_cos, k_sin) != (cos, sin):
        raise Unmatched("q and k are rotated with different tables")
    q_norm_weight = k_norm_weight = None
    eps = 0.0
    if q_pre.target is _RMS_NORM or k_pre.target is _RMS_NORM:
        if q_pre.target is not _RMS_NORM or k_pre.target is not _RMS_NORM or q_pre.args[2] != k_pre.args[2] \
                or q_pre.args[1] is None or k_pre.args[1] is None:
            raise Unmatched("q and k are normalised differently")
        (q_pre, q_norm_weight, eps), (k_pre, k_norm_weight, _) = q_pre.args, k_pre.args
    parts = [q_pre, k_pre, v]
    if any(p.op != "call_function" or p.target is not operator.getitem for p in parts) \
            or [p.args[1] for p in parts] != [0, 1, 2] or len({p.args[0] for p in parts}) != 1:
        raise Unmatched("q, k, v are not the three parts of one split")
    split = q_pre.args[0]
    transpose = split.args[0]
    if split.target is not aten.split_with_sizes.default or split.args[2] != 1 or len(split.users) != 3 \
            or transpose.target is not aten.transpose.int or list(transpose.args[1:]) != [1, 2]:
        raise Unmatched("q, k, v are not split on the head axis of the projection")
    view = transpose.args[0]
    n_q, n_kv, n_kv_v = split.args[1]
    head_dim = gm.get_buffer(k_cache.target).shape[-1]
    if view.target not in _VIEWS or n_kv != n_kv_v or gm.get_buffer(k_cache.target).shape[1] != n_kv \
            or list(view.args[1][-2:]) != [n_q + 2 * n_kv, head_dim]:
        raise Unmatched("the projection is not viewed as [1, T, Hq + 2 Hkv, hd] matching the cache")
    out_t = _only_user(sdpa)
    output = _only_user(out_t) if out_t is not None else None
    if out_t is None or out_t.target is not aten.transpose.int or list(out_t.args[1:]) != [1, 2] \
            or output is None or output.target not in _VIEWS:
        raise Unmatched("the output is not transposed back to [1, T, Hq hd]")
    scale = sdpa.kwargs.get("scale") or head_dim ** -0.5
    if n_q != n_kv and not sdpa.kwargs.get("enable_gqa", False):
        raise Unmatched("grouped heads without enable_gqa")
    args = (view.args[0], k_cache, v_cache, input_pos, cos, sin, q_norm_weight, k_norm_weight, n_q, n_kv,
            float(eps), float(scale))
    return {"args": args, "output": output, "dead": [output, out_t, sdpa, k_write, v_write]}


def _only_user(node):
    return next(iter(node.users)) if len(node.users) == 1 else None


def _skip_views(node):
    while node.op == "call_function" and node.target in _VIEWS:
        node = node.args[0]
    return node


def _cache_write(node, input_pos):
    """(cache get_attr, the [1, n_kv, T, hd] value) of `index_put_(cache, [None, None, input_pos], value)`."""
    if getattr(node, "target", None) not in _INDEX_PUT:
        raise Unmatched("attention does not read a cache written at input_pos")
    cache, indices, value = node.args[:3]
    if cache.op != "get_attr" or len(indices) != 3 or list(indices[:2]) != [None, None] or indices[2] is not input_pos \
            or (len(node.args) > 3 and node.args[3]):
        raise Unmatched("the cache write is not cache[:, :, input_pos] = value")
    return cache, _skip_views(value)


def _unrope(node, input_pos):
    """(x, cos, sin) from `x * cos + cat([-x[..., h:], x[..., :h]], -1) * sin` with tables indexed at input_pos."""
    if node.op != "call_function" or node.target is not aten.add.Tensor or len(node.args) != 2 or node.kwargs:
        raise Unmatched("RoPE not recognised (no add of two products)")
    a, b = node.args
    if a.target is not aten.mul.Tensor or b.target is not aten.mul.Tensor:
        raise Unmatched("RoPE not recognised (not products)")
    (x, cos), (rotated, sin) = a.args, b.args
    if not (_table_at(cos, input_pos) and _table_at(sin, input_pos)):
        raise Unmatched("RoPE tables are not indexed at input_pos")
    if rotated.target is not aten.cat.default or len(rotated.args[0]) != 2 \
            or (len(rotated.args) > 1 and rotated.args[1] not in (-1, 3)):
        raise Unmatched("RoPE rotation is not a concatenation on the last axis")
    neg, low = rotated.args[0]
    half = x.meta["val"].shape[-1] // 2
    if neg.target is not aten.neg.default or not _is_slice(neg.args[0], x, half, None) \
            or not _is_slice(low, x, 0, half):
        raise Unmatched("RoPE rotation is not rotate-half")
    return x, cos, sin


def _is_slice(node, x, start, end) -> bool:
    """node is x[..., start:end] (end None = to the end)."""
    if node.op != "call_function" or node.target is not aten.slice.Tensor or node.args[0] is not x:
        return False
    dim, lo = node.args[1], node.args[2]
    hi = node.args[3] if len(node.args) > 3 else None
    step = node.args[4] if len(node.args) > 4 else 1
    width = x.meta["val"].shape[-1]
    return dim in (-1, x.meta["val"].dim() - 1) and lo == start and step == 1 \
        and (hi == end if end is not None else (hi is None or hi >= width))


def _table_at(node, input_pos) -> bool:
    return node.op == "call_function" and node.target is aten.index.Tensor and node.args[0].op == "get_attr" \
        and list(node.args[1]) == [input_pos]


def _is_cache_mask(gm, mask, input_pos) -> bool:
    """le(unsqueeze(slots, 0), unsqueeze(input_pos, 1)) with slots the constant arange(context)."""
    if getattr(mask, "target", None) is not aten.le.Tensor:
        return False
    slots, pos = mask.args
    if slots.target is not aten.unsqueeze.default or pos.target is not aten.unsqueeze.default \
            or pos.args[0] is not input_pos or slots.args[0].op != "get_attr" \
            or slots.args[1] != 0 or pos.args[1] not in (1, -1):
        return False
    table = gm.get_buffer(slots.args[0].target)
    return table.dim() == 1 and torch.equal(table, torch.arange(table.shape[0], dtype=table.dtype))


def require_fused(graph: torch.fx.Graph, target: str) -> None:
    """Targets lower elm.attention only: an attention left unfused would be exported wrong or slow, so refuse it."""
    left = [n.name for n in graph.nodes
            if n.op == "call_function" and n.target is aten.scaled_dot_product_attention.default]
    if left:
        raise ElmExportError(f"{target}: {len(left)} attention block(s) ({left[0]}, ...) were not fused into "
                             f"elm.attention; keep fuse_attention in --passes (`elmexport compile` shows why a "
                             f"block did not match)")
