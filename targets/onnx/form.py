"""The IR's in-graph static KV cache -> GroupQueryAttention over per-layer KV buffers shared by past and present.

Before (one layer of the IR; the cache is a buffer written in place at input_pos, attention reads all of it):
    %qkv  = linear(%x)                                               # [1, T, (Hq + 2 Hkv) hd], rows q | k | v
    %q, %k, %v = split(transpose(view(%qkv)))   [%q, %k = rms_norm(...) when the model has qk-norm]
    %q_r, %k_r = rope(%q, cos[input_pos], sin[input_pos]), rope(%k, ...)
    %k_w  = aten.index_put_(k_cache_i, [None, None, %input_pos], %k_r)        (same for v)
    %y    = reshape(transpose(aten.scaled_dot_product_attention(%q_r, %k_w, %v_w, %mask)))
After (`attention_mask` [1, past + T] replaces input_pos; past_key_values.i.* are [1, n_kv_i, L, hd] buffers):
    %seqlens_k, %total = elm_onnx.gqa_lengths(%attention_mask)                # once
    %y, %present_k_i, %present_v_i = elm_onnx.group_query_attention(
        %qkv, None, None, %past_k_i, %past_v_i, %seqlens_k, %total, %cos_half, %sin_half, Hq, Hkv, scale)
with q, k, v passed separately (split on the head axis of view(%qkv) and RMS-normed, no transpose) when the
model has qk-norm. RoPE, the cache write and attention are one onnxruntime kernel; positions are
`past .. past+T-1` with past = tokens in the mask - T, so prefill and decode run through the same graph. Per-layer
KV head counts (OpenELM) are per-node attributes and per-input buffer shapes.

Everything else (fused norms, quantized linears, the tied head) is the IR's graph, untouched; the rewritten module
shares the IR's weight tensors (no copy) and still runs in PyTorch (tests check it against the IR).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch

from ...errors import ElmExportError
from ...ir.program import IRProgram
from . import ops  # noqa: F401  (registers elm_onnx::)

aten = torch.ops.aten
_INDEX_PUT = {aten.index_put_.default, aten.index_put.default}
_RMS_NORM = torch.ops.elm.rms_norm.default


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

    writes = {}  # cache name -> its index_put_ node (args: cache, indices, new values)
    for n in graph.nodes:
        if n.op == "call_function" and n.target in _INDEX_PUT and n.args[0].op == "get_attr" \
                and n.args[0].target in past:
            writes[n.args[0].target] = n
    if set(writes) != set(caches):
        missing = sorted(set(caches) - set(writes))
        raise ElmExportError(f"ONNX lowering: no cache write found for {missing[0]} (is the IR from the front end?)")

    presents = {}
    for sdpa in [n for n in graph.nodes if n.target is aten.scaled_dot_product_attention.default]:
        k_w, v_w = sdpa.args[1], sdpa.args[2]
        if k_w not in writes.values() or v_w not in writes.values():
            raise ElmExportError(f"ONNX lowering: attention {sdpa.name} does not read a KV cache")
        _check_causal_mask(sdpa)
        k_name, v_name = k_w.args[0].target, v_w.args[0].target
        n_kv = ir.gm.get_buffer(k_name).shape[1]
        att = _AttentionPattern.match(sdpa, k_w, v_w, input_pos, n_kv, head_dim)
        scale = sdpa.kwargs.get("scale") or head_dim ** -0.5
        with graph.inserting_before(att.output):
            qkv_args = att.gqa_inputs(graph)
            gqa = graph.call_function(
                torch.ops.elm_onnx.group_query_attention.default,
                (*qkv_args, past[k_name], past[v_name], seqlens_k, total, cos_node, sin_node, att.n_q, n_kv,
                 float(scale)))
            y, pk, pv = (graph.call_function(operator.getitem, (gqa, i)) for i in range(3))
        att.output.replace_all_uses_with(y)
        for old in (att.output, att.output.args[0], sdpa):  # reshape, transpose, sdpa (fx deems sdpa impure)
            graph.erase_node(old)
        presents[k_name], presents[v_name] = pk, pv
    if set(presents) != set(caches):
        raise ElmExportError("ONNX lowering: not every KV cache is read by an attention")

    graph.output((logits, *[presents[name] for name in caches]))
    graph.eliminate_dead_code()
    for write in writes.values():  # in-place writes are never "dead" to fx: drop them by hand
        graph.erase_node(write)
    graph.eliminate_dead_code()
    if input_pos.users:
        user = next(iter(input_pos.users))
        raise ElmExportError(f"ONNX lowering: {user.name} still reads input_pos after attention was lowered")
    graph.erase_node(input_pos)
    # root = only the attributes the graph reads (torch.export would lift any other one as an input)
    attrs = {n.target: _attr(ir.gm, n.target) for n in graph.nodes if n.op == "get_attr"
             and not n.target.startswith("onnx_rope_")}
    gm = torch.fx.GraphModule({**attrs, "onnx_rope_cos_half": cos_half, "onnx_rope_sin_half": sin_half}, graph)
    gm.graph.lint()
    return ExplicitCacheModule(gm, kv_heads, head_dim, ir.context, ir.cfg.vocab_size)


def _attr(module: torch.nn.Module, target: str):
    for part in target.split("."):
        module = getattr(module, part)
    return module


def _half_rope_tables(ir: IRProgram) -> tuple[torch.Tensor, torch.Tensor]:
    """The IR's rotate-half tables [context, hd] = cat(a, a) -> GroupQueryAttention's cos/sin caches [context, hd/2]."""
    cos, sin = ir.gm.get_buffer("rope_cos"), ir.gm.get_buffer("rope_sin")
    half = cos.shape[-1] // 2
    if not (torch.equal(cos[:, :half], cos[:, half:]) and torch.equal(sin[:, :half], sin[:, half:])):
        raise ElmExportError("ONNX lowering: the RoPE tables are not rotate-half (cat(a, a)); GroupQueryAttention "
                             "cannot apply them")
    return cos[:, :half].contiguous(), sin[:, :half].contiguous()


@dataclass
class _AttentionPattern:
    """One layer's attention in the IR, from the fused qkv projection to the [1, T, Hq*hd] input of out_proj."""

    qkv: torch.fx.Node          # linear output [1, T, (Hq + 2 Hkv) hd]
    view: torch.fx.Node         # view(qkv, [1, T, Hq + 2 Hkv, hd])
    q_norm: tuple | None        # (weight node, eps) when the model RMS-normalises q and k per head
    k_norm: tuple | None
    n_q: int
    n_kv: int
    head_dim: int
    output: torch.fx.Node       # reshape(transpose(sdpa)) [1, T, Hq*hd]

    @classmethod
    def match(cls, sdpa, k_write, v_write, input_pos, n_kv: int, head_dim: int) -> "_AttentionPattern":
        def fail(why):
            raise ElmExportError(f"ONNX lowering: attention {sdpa.name}: {why}; GroupQueryAttention needs the "
                                 f"model's qkv -> (qk-norm) -> RoPE -> cache -> SDPA layout")

        q_pre = _unrope(sdpa.args[0], input_pos) or fail("query RoPE not recognised")
        k_pre = _unrope(_skip_views(k_write.args[2]), input_pos) or fail("key RoPE not recognised")
        v = _skip_views(v_write.args[2])
        q_norm = k_norm = None
        if q_pre.target is _RMS_NORM:
            q_norm, q_pre = (q_pre.args[1], q_pre.args[2]), q_pre.args[0]
        if k_pre.target is _RMS_NORM:
            k_norm, k_pre = (k_pre.args[1], k_pre.args[2]), k_pre.args[0]
        if (q_norm is None) != (k_norm is None) or (q_norm is not None and (q_norm[0] is None or k_norm[0] is None)):
            fail("q and k are normalised differently")
        parts = [q_pre, k_pre, v]
        if any(p.target is not operator.getitem for p in parts) or [p.args[1] for p in parts] != [0, 1, 2] \
                or len({p.args[0] for p in parts}) != 1:
            fail("q, k, v are not the three parts of one split")
        split = q_pre.args[0]
        transpose = split.args[0]
        if split.target is not aten.split_with_sizes.default or split.args[2] != 1 \
                or transpose.target is not aten.transpose.int or list(transpose.args[1:]) != [1, 2]:
            fail("q, k, v are not split on the head axis of the projection")
        view = transpose.args[0]
        n_q = split.args[1][0]
        if view.target not in (aten.view.default, aten.reshape.default) or list(split.args[1]) != [n_q, n_kv, n_kv] \
                or view.args[1][-2:] != [n_q + 2 * n_kv, head_dim]:
            fail("the projection is not viewed as [1, T, Hq + 2 Hkv, hd]")
        out_t = next(iter(sdpa.users)) if len(sdpa.users) == 1 else None
        out = next(iter(out_t.users)) if out_t is not None and len(out_t.users) == 1 else None
        if out_t is None or out_t.target is not aten.transpose.int or list(out_t.args[1:]) != [1, 2] \
                or out is None or out.target not in (aten.view.default, aten.reshape.default):
            fail("its output is not transposed back to [1, T, Hq*hd]")
        return cls(view.args[0], view, q_norm, k_norm, n_q, n_kv, head_dim, out)

    def gqa_inputs(self, graph: torch.fx.Graph) -> tuple:
        """(query, key, value) for group_query_attention: packed qkv, or normed q, k and v without a transpose."""
        if self.q_norm is None:
            return self.qkv, None, None
        split = graph.call_function(aten.split_with_sizes.default,
                                    (self.view, [self.n_q, self.n_kv, self.n_kv], 2))
        q, k, v = (graph.call_function(operator.getitem, (split, i)) for i in range(3))
        q = graph.call_function(_RMS_NORM, (q, *self.q_norm))
        k = graph.call_function(_RMS_NORM, (k, *self.k_norm))
        seq = graph.call_function(aten.sym_size.int, (self.qkv, 1))
        return tuple(graph.call_function(aten.reshape.default, (t, [1, seq, n * self.head_dim]))
                     for t, n in ((q, self.n_q), (k, self.n_kv), (v, self.n_kv)))


def _skip_views(node):
    while node.op == "call_function" and node.target in (aten.view.default, aten.reshape.default):
        node = node.args[0]
    return node


def _unrope(node, input_pos):
    """x from `x * cos[input_pos] + cat([-x[..., h:], x[..., :h]]) * sin[input_pos]` (the model's RoPE), else None."""
    if node.op != "call_function" or node.target is not aten.add.Tensor or len(node.args) != 2 or node.kwargs:
        return None
    a, b = node.args
    if a.target is not aten.mul.Tensor or b.target is not aten.mul.Tensor:
        return None
    x, cos = a.args
    rotated, sin = b.args
    if not (_table_at(cos, "rope_cos", input_pos) and _table_at(sin, "rope_sin", input_pos)):
        return None
    if rotated.target is not aten.cat.default or len(rotated.args[0]) != 2:
        return None
    neg, low = rotated.args[0]
    if neg.target is not aten.neg.default or low.target is not aten.slice.Tensor or low.args[0] is not x \
            or neg.args[0].target is not aten.slice.Tensor or neg.args[0].args[0] is not x:
        return None
    return x


def _table_at(node, table: str, input_pos) -> bool:
    return node.target is aten.index.Tensor and node.args[0].op == "get_attr" and node.args[0].target == table \
        and list(node.args[1]) == [input_pos]


def _check_causal_mask(sdpa) -> None:
    """GroupQueryAttention is causal (bottom-right); the IR's mask must be the model's `cache_pos <= input_pos`."""
    mask = sdpa.args[3] if len(sdpa.args) > 3 else sdpa.kwargs.get("attn_mask")
    if getattr(mask, "target", None) is not aten.le.Tensor or sdpa.kwargs.get("is_causal"):
        raise ElmExportError(f"ONNX lowering: attention {sdpa.name} has a mask other than the causal cache mask")
