"""The IR's in-graph static KV cache -> explicit per-layer past/present tensors (what ONNX LLM runtimes expect).

Before (one layer of the IR; the cache is a buffer written in place at input_pos, attention reads all of it):
    %kc   = get_attr[layers.i.attn.k_cache]                          # [1, n_kv_i, context, hd]
    %k_w  = aten.index_put_(%kc, [None, None, %input_pos], %k_new)
    %v_w  = aten.index_put_(%vc, [None, None, %input_pos], %v_new)
    %y    = aten.scaled_dot_product_attention(%q, %k_w, %v_w, %mask, scale=s, enable_gqa=...)
After:
    %past_k_i, %past_v_i = placeholder                               # [1, n_kv_i, past, hd]
    %att  = elm_onnx.attention_with_past(%q, reshape(%k_new), reshape(%v_new), %past_k_i, %past_v_i, s)
    %y, %present_k_i, %present_v_i = %att[0], %att[1], %att[2]       # present = concat(past, new)
and `input_pos` stops being an input: it is `arange(past, past + T)` with past = past_k_0.shape[2], so prefill
(past = 0) and decode (T = 1) run through the same graph and positions can never disagree with the cache.

Everything else (fused norms, quantized linears, RoPE tables, the tied head) is the IR's graph, untouched; the
rewritten module shares the IR's weight tensors (no copy) and still runs in PyTorch.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch

from ..errors import ElmExportError
from ..ir.program import IRProgram
from . import onnx_ops  # noqa: F401  (registers elm_onnx::)

aten = torch.ops.aten
_INDEX_PUT = {aten.index_put_.default, aten.index_put.default}


@dataclass
class ExplicitCacheModule:
    """A GraphModule `(input_ids, past_key_values.0.key, ...value, ...) -> (logits, present.0.key, ...)`."""

    gm: torch.fx.GraphModule
    kv_heads: list[int]
    head_dim: int
    context: int
    vocab_size: int

    @property
    def num_layers(self) -> int:
        return len(self.kv_heads)

    def input_names(self) -> list[str]:
        return ["input_ids"] + [f"past_key_values.{i}.{kv}" for i in range(self.num_layers) for kv in ("key", "value")]

    def output_names(self) -> list[str]:
        return ["logits"] + [f"present.{i}.{kv}" for i in range(self.num_layers) for kv in ("key", "value")]

    def empty_past(self, past_len: int = 0, dtype=torch.float32) -> list[torch.Tensor]:
        return [torch.zeros(1, h, past_len, self.head_dim, dtype=dtype) for h in self.kv_heads for _ in (0, 1)]

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, past: list[torch.Tensor]):
        out = self.gm(ids, *past)
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
    past = {}
    anchor = input_ids
    for name in caches:
        layer = int(name.split(".")[1])
        kind = "key" if name.endswith("k_cache") else "value"
        with graph.inserting_after(anchor):
            anchor = graph.placeholder(f"past_key_values_{layer}_{kind}")
        past[name] = anchor

    # input_pos = arange(past_len, past_len + T)
    first = anchor.next
    with graph.inserting_before(first):
        past_len = graph.call_function(aten.sym_size.int, (past[caches[0]], 2))
        seq_len = graph.call_function(aten.sym_size.int, (input_ids, 1))
        end = graph.call_function(operator.add, (past_len, seq_len))
        positions = graph.call_function(torch.arange, (past_len, end), {"dtype": torch.long})
    input_pos.replace_all_uses_with(positions)
    graph.erase_node(input_pos)

    writes = {}  # cache name -> its index_put_ node (args: cache, indices, new values)
    for n in graph.nodes:
        if n.op == "call_function" and n.target in _INDEX_PUT and n.args[0].op == "get_attr" \
                and n.args[0].target in past:
            _check_cache_write(n, positions, ir.gm.get_buffer(n.args[0].target).shape)
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
        scale = sdpa.kwargs.get("scale") or head_dim ** -0.5
        with graph.inserting_before(sdpa):
            k_new = graph.call_function(aten.reshape.default, (k_w.args[2], [1, n_kv, -1, head_dim]))
            v_new = graph.call_function(aten.reshape.default, (v_w.args[2], [1, n_kv, -1, head_dim]))
            att = graph.call_function(torch.ops.elm_onnx.attention_with_past.default,
                                      (sdpa.args[0], k_new, v_new, past[k_name], past[v_name], float(scale)))
            y, pk, pv = (graph.call_function(operator.getitem, (att, i)) for i in range(3))
        sdpa.replace_all_uses_with(y)
        graph.erase_node(sdpa)
        presents[k_name], presents[v_name] = pk, pv
    if set(presents) != set(caches):
        raise ElmExportError("ONNX lowering: not every KV cache is read by an attention")

    graph.output((logits, *[presents[name] for name in caches]))
    for write in writes.values():  # in-place writes are never "dead" to fx: drop them by hand
        if not write.users:
            graph.erase_node(write)
    graph.eliminate_dead_code()
    gm = torch.fx.GraphModule(ir.gm, graph)
    gm.graph.lint()
    drop_unused_attributes(gm)
    return ExplicitCacheModule(gm, kv_heads, head_dim, ir.context, ir.cfg.vocab_size)


def _check_cache_write(node, positions, cache_shape) -> None:
    """The IR writes `cache[:, :, input_pos] = new` with new holding exactly n_kv x T x head_dim values."""
    _, n_kv, _, hd = cache_shape
    indices, values = node.args[1], node.args[2]
    if list(indices[:2]) != [None, None] or indices[2] is not positions or len(indices) != 3:
        raise ElmExportError(f"ONNX lowering: {node.args[0].target} is not written at input_pos along the sequence axis")
    shape = list(values.meta["val"].shape) if "val" in values.meta else None
    heads = shape[:-2] if shape is not None else None  # [n_kv], [1, n_kv], or [] when n_kv == 1
    if shape is not None and (shape[-1] != hd or heads not in ([n_kv], [1, n_kv], [] if n_kv == 1 else [n_kv])):
        raise ElmExportError(f"ONNX lowering: {node.args[0].target} is written with values of shape {shape}")


def _check_causal_mask(sdpa) -> None:
    """Attention_with_past is causal (bottom-right); the IR's mask must be the model's `cache_pos <= input_pos`."""
    mask = sdpa.args[3] if len(sdpa.args) > 3 else sdpa.kwargs.get("attn_mask")
    if getattr(mask, "target", None) is not aten.le.Tensor or sdpa.kwargs.get("is_causal"):
        raise ElmExportError(f"ONNX lowering: attention {sdpa.name} has a mask other than the causal cache mask")


def drop_unused_attributes(gm: torch.fx.GraphModule) -> None:
    """Delete parameters/buffers no get_attr reads (torch.export would otherwise lift them as inputs)."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner_path, _, attr = name.rpartition(".")
            owner = gm.get_submodule(owner_path) if owner_path else gm
            delattr(owner, attr)
