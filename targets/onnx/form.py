"""The IR's in-graph static KV cache -> GroupQueryAttention over per-layer KV buffers shared by past and present.

Before (one layer of the IR after `fuse_attention`; the caches are buffers the op writes in place at input_pos):
    %cos, %sin = index(rope_cos, [%input_pos]), index(rope_sin, [%input_pos])
    %y = elm.attention(%qkv, k_cache_i, v_cache_i, %input_pos, %cos, %sin, %wq, %wk, Hq, Hkv, eps, scale)
After (`attention_mask` [1, past + T] replaces input_pos; past_key_values.i.* are [1, n_kv_i, L, hd] buffers):
    %seqlens_k, %total = elm_onnx.gqa_lengths(%attention_mask)                # once
    %y, %present_k_i, %present_v_i = elm_onnx.group_query_attention(
        %qkv, None, None, %past_k_i, %past_v_i, %seqlens_k, %total, %cos_half, %sin_half, Hq, Hkv, scale)
with q, k, v passed separately (split on the head axis of view(%qkv) and RMS-normed, no transpose) when the
model has qk-norm. RoPE, the cache write and attention are one onnxruntime kernel; positions are
`past .. past+T-1` with past = tokens in the mask - T, so prefill and decode run through the same graph (the
contiguous positions elm.attention assumes). Per-layer KV head counts (OpenELM) are per-node attributes and
per-input buffer shapes.

Everything else (fused norms, quantized linears, the tied head) is the IR's graph, untouched; the rewritten module
shares the IR's weight tensors (no copy) and still runs in PyTorch (tests check it against the IR).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch

from ...errors import ElmExportError
from ...ir.graph_edit import attribute
from ...ir.program import IRProgram
from ...passes.fuse_attention import require_fused
from . import ops  # noqa: F401  (registers elm_onnx::)

aten = torch.ops.aten
_RMS_NORM = torch.ops.elm.rms_norm.default
_ATTENTION = torch.ops.elm.attention.default


@dataclass
class ExplicitCacheModule:
    """A GraphModule `(input_ids, attention_mask, past_key_values.0.key, ...) -> (logits, present.0.key, ...)`."""

    gm: torch.fx.GraphModule
    kv_heads: list[int]
    head_dim: int
    context: int
    vocab_size: int

    @property
    def num_layers(self) -> int:
        return len(self.kv_heads)

    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask"] + [f"past_key_values.{i}.{kv}" for i in range(self.num_layers)
                                                  for kv in ("key", "value")]

    def output_names(self) -> list[str]:
        return ["logits"] + [f"present.{i}.{kv}" for i in range(self.num_layers) for kv in ("key", "value")]

    def kv_buffers(self, length: int | None = None, dtype=torch.float32) -> list[torch.Tensor]:
        """Zeroed per-layer KV buffers of `length` positions (default: the context), key then value per layer."""
        n = self.context if length is None else length
        return [torch.zeros(1, h, n, self.head_dim, dtype=dtype) for h in self.kv_heads for _ in (0, 1)]

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, start_pos: int, buffers: list[torch.Tensor]):
        """Feed ids at positions start_pos..; -> (logits, the updated buffers)."""
        mask = torch.ones(1, start_pos + ids.shape[1], dtype=torch.long)
        out = self.gm(ids, mask, *buffers)
        return out[0], list(out[1:])


def explicit_cache_form(ir: IRProgram) -> ExplicitCacheModule:
    graph = torch.fx.Graph()
    env: dict = {}
    old_out = graph.graph_copy(ir.gm.graph, env)  # copies every node but the output
    logits = old_out[0] if isinstance(old_out, (tuple, list)) else old_out

    for n in list(graph.nodes):  # torch.export's guard check of the old inputs: not part of the math
        if n.op == "call_module" and not n.users:
            graph.erase_node(n)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if [p.target for p in placeholders] != ["input_ids", "input_pos"]:
        raise ElmExportError(f"ONNX lowering: unexpected IR inputs {[p.target for p in placeholders]}")
    input_ids, input_pos = placeholders

    caches = list(ir.cache_names())
    kv_heads = [ir.gm.get_buffer(name).shape[1] for name in caches if name.endswith("k_cache")]
    head_dim = ir.cfg.head_dim
    with graph.inserting_after(input_ids):
        mask = graph.placeholder("attention_mask")
    past, anchor = {}, mask
    for name in caches:
        layer = int(name.split(".")[1])
        kind = "key" if name.endswith("k_cache") else "value"
        with graph.inserting_after(anchor):
            anchor = graph.placeholder(f"past_key_values_{layer}_{kind}")
        past[name] = anchor

    with graph.inserting_after(anchor):
        lengths = graph.call_function(torch.ops.elm_onnx.gqa_lengths.default, (mask,))
    with graph.inserting_after(lengths):
        seqlens_k = graph.call_function(operator.getitem, (lengths, 0))
    with graph.inserting_after(seqlens_k):
        total = graph.call_function(operator.getitem, (lengths, 1))
    cos_half, sin_half = _half_rope_tables(ir)
    with graph.inserting_after(total):
        cos_node = graph.get_attr("onnx_rope_cos_half")
    with graph.inserting_after(cos_node):
        sin_node = graph.get_attr("onnx_rope_sin_half")

    require_fused(graph, "onnx")
    presents = {}
    for att in [n for n in graph.nodes if n.op == "call_function" and n.target is _ATTENTION]:
        qkv, k_cache, v_cache, _pos, cos, _sin, q_norm_w, k_norm_w, n_q, n_kv, eps, scale = att.args
        _check_rope_table(cos, "rope_cos")
        with graph.inserting_before(att):
            qkv_args = _gqa_inputs(graph, qkv, q_norm_w, k_norm_w, eps, n_q, n_kv, head_dim)
            gqa = graph.call_function(
                torch.ops.elm_onnx.group_query_attention.default,
                (*qkv_args, past[k_cache.target], past[v_cache.target], seqlens_k, total, cos_node, sin_node, n_q,
                 n_kv, float(scale)))
            y, pk, pv = (graph.call_function(operator.getitem, (gqa, i)) for i in range(3))
        att.replace_all_uses_with(y)
        graph.erase_node(att)  # it mutates the caches, so fx never deems it dead
        presents[k_cache.target], presents[v_cache.target] = pk, pv
    if set(presents) != set(caches):
        left = sorted(set(caches) - set(presents))
        raise ElmExportError(f"ONNX lowering: the cache {left[0]} is not read by an elm.attention op (did the "
                             f"fuse_attention pass run? see the pass table of `elmexport compile`)")

    graph.output((logits, *[presents[name] for name in caches]))
    graph.eliminate_dead_code()
    if input_pos.users:
        user = next(iter(input_pos.users))
        raise ElmExportError(f"ONNX lowering: {user.name} still reads input_pos after attention was lowered")
    graph.erase_node(input_pos)
    # root = only the attributes the graph reads (torch.export would lift any other one as an input)
    attrs = {n.target: attribute(ir.gm, n.target) for n in graph.nodes if n.op == "get_attr"
             and not n.target.startswith("onnx_rope_")}
    gm = torch.fx.GraphModule({**attrs, "onnx_rope_cos_half": cos_half, "onnx_rope_sin_half": sin_half}, graph)
    gm.graph.lint()
    return ExplicitCacheModule(gm, kv_heads, head_dim, ir.context, ir.cfg.vocab_size)


def _half_rope_tables(ir: IRProgram) -> tuple[torch.Tensor, torch.Tensor]:
    """The IR's rotate-half tables [context, hd] = cat(a, a) -> GroupQueryAttention's cos/sin caches [context, hd/2]."""
    cos, sin = ir.gm.get_buffer("rope_cos"), ir.gm.get_buffer("rope_sin")
    half = cos.shape[-1] // 2
    if not (torch.equal(cos[:, :half], cos[:, half:]) and torch.equal(sin[:, :half], sin[:, half:])):
        raise ElmExportError("ONNX lowering: the RoPE tables are not rotate-half (cat(a, a)); GroupQueryAttention "
                             "cannot apply them")
    return cos[:, :half].contiguous(), sin[:, :half].contiguous()


def _gqa_inputs(graph: torch.fx.Graph, qkv, q_norm_w, k_norm_w, eps: float, n_q: int, n_kv: int, head_dim: int):
    """(query, key, value) for group_query_attention: the packed qkv as it is, or, with per-head q/k norms,
    q, k (normed) and v as [1, T, heads * hd] (the view splits on the head axis without a transpose)."""
    if q_norm_w is None:
        return qkv, None, None
    seq = graph.call_function(aten.sym_size.int, (qkv, 1))
    heads = graph.call_function(aten.view.default, (qkv, [1, seq, n_q + 2 * n_kv, head_dim]))
    split = graph.call_function(aten.split_with_sizes.default, (heads, [n_q, n_kv, n_kv], 2))
    q, k, v = (graph.call_function(operator.getitem, (split, i)) for i in range(3))
    q = graph.call_function(_RMS_NORM, (q, q_norm_w, eps))
    k = graph.call_function(_RMS_NORM, (k, k_norm_w, eps))
    return tuple(graph.call_function(aten.reshape.default, (t, [1, seq, n * head_dim]))
                 for t, n in ((q, n_q), (k, n_kv), (v, n_kv)))


def _check_rope_table(cos, table: str) -> None:
    """GroupQueryAttention indexes the full tables by position itself: elm.attention's cos must be the model's
    table at input_pos (what fuse_attention emits)."""
    if not (cos.op == "call_function" and cos.target is aten.index.Tensor and cos.args[0].op == "get_attr"
            and cos.args[0].target == table):
        raise ElmExportError(f"ONNX lowering: attention reads RoPE tables other than {table}[input_pos]")


class ExplicitCache:
    """onnx::explicit_cache: the pass form of explicit_cache_form (the program's caches become graph inputs)."""

    name = "onnx::explicit_cache"

    def __init__(self, options=None):
        pass

    def run(self, program) -> dict[str, int]:
        form = explicit_cache_form(program)
        program.use_explicit_cache(form)
        return {"group_query_attention": len(form.kv_heads)}
