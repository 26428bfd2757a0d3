"""Attention for ExecuTorch: the IR's full-cache SDPA -> ExecuTorch's `llama::update_cache` + `llama::custom_sdpa`.

Before (per layer; caches [1, n_kv, context, hd], every step reads all `context` positions behind a bool mask):
    %kc  = aten.index_put_(%k_cache, [None, None, %input_pos], %k)
    %vc  = aten.index_put_(%v_cache, [None, None, %input_pos], %v)
    %o   = aten.scaled_dot_product_attention(%q, %kc, %vc, %mask, scale=s, enable_gqa=True)
After (caches re-registered as [1, context, n_kv, hd], the layout the custom ops use; same per-layer head counts):
    %start = input_pos[0].item()                                  # once per graph
    %o     = cached_attention(%q, %k, %v, %k_cache, %v_cache, %start, s)
             # update_cache(k) ; update_cache(v) ; custom_sdpa(q, caches, start, causal) -- GQA handled natively

Why: the portable decomposition of SDPA expands K/V to every query head and reads the whole cache every decode
step; custom_sdpa reads only positions [0, start + T) and runs multi-threaded. It also never reads cache slots
that were not written yet (ExecuTorch does not initialise mutable buffers). The one assumption, which every
runner meets (ours, TextLLMRunner, llama_main): `input_pos` is contiguous, start .. start + T - 1.
"""

from __future__ import annotations

import torch

from ...errors import ElmExportError

aten = torch.ops.aten
_VIEWS = {aten.view.default, aten.reshape.default, aten._unsafe_view.default}


def load_custom_ops() -> None:
    """Register llama:: ops (AOT meta kernels + runtime kernels); the runtime needs this before loading a .pte."""
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401


def start_position(input_pos: torch.Tensor, context: int):
    """The first position as a size-like SymInt, bounded by the cache (checks become runtime asserts)."""
    start = input_pos[0].item()
    torch._check(start >= 0)
    torch._check(start < context)
    return start


def cached_attention(q, k, v, k_cache, v_cache, start, scale: float):
    """q [1, Hq, T, hd]; k, v [1, n_kv, T, hd]; caches [1, context, n_kv, hd] (written in place)."""
    out = cached_attention_token_major(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), k_cache, v_cache,
                                       start, scale)
    return out.transpose(1, 2)


def cached_attention_token_major(q, k, v, k_cache, v_cache, start, scale: float):
    """The same on [1, T, heads, hd] inputs, returning [1, T, Hq, hd]: the layout the custom ops read, which
    token_major.py leaves when the projections feed attention without transposes."""
    torch.ops.llama.update_cache(k.contiguous(), k_cache, start)
    torch.ops.llama.update_cache(v.contiguous(), v_cache, start)
    return torch.ops.llama.custom_sdpa(q.contiguous(), k_cache, v_cache, start, None, 0.0, True, scale)


def _source_4d(node):
    """The [1, n_kv, T, hd] tensor an index_put_ value was viewed from (export flattens it)."""
    while node.op == "call_function" and node.target in _VIEWS:
        node = node.args[0]
    return node


def _cache_write(node, input_pos):
    """(cache get_attr node, written value) if node is index_put_(cache, [None, None, input_pos], value)."""
    if node.op != "call_function" or node.target not in (aten.index_put_.default, aten.index_put.default):
        return None
    cache, indices, value = node.args[:3]
    if cache.op != "get_attr" or list(indices[:2]) != [None, None] or indices[2] is not input_pos or len(indices) != 3:
        return None
    return cache, _source_4d(value)


def use_custom_sdpa(gm: torch.fx.GraphModule, context: int) -> dict[str, int]:
    """Rewrite every cached SDPA in place; re-registers the caches in [1, context, n_kv, hd]. Returns counts."""
    load_custom_ops()
    graph = gm.graph
    input_pos = [n for n in graph.nodes if n.op == "placeholder"][1]
    sdpas = [n for n in graph.nodes if n.op == "call_function" and n.target is aten.scaled_dot_product_attention.default]
    with graph.inserting_after(input_pos):
        start = graph.call_function(start_position, (input_pos, context))
    rewritten = 0
    for sdpa in sdpas:
        q, kc, vc = sdpa.args[:3]
        k_write, v_write = _cache_write(kc, input_pos), _cache_write(vc, input_pos)
        if k_write is None or v_write is None:
            raise ElmExportError(f"executorch: attention node {sdpa.name} does not read a KV cache written at "
                                 f"input_pos; the graph is not the export-first model's")
        scale = sdpa.kwargs.get("scale") or q.meta["val"].shape[-1] ** -0.5
        new_caches = []
        for cache, value in (k_write, v_write):
            val = value.meta["val"]
            old = gm.get_buffer(cache.target)
            if val.dim() != 4 or val.shape[1] != old.shape[1] or val.shape[3] != old.shape[3]:
                raise ElmExportError(f"executorch: cannot recover the [1, n_kv, T, hd] cache write for {cache.target}")
            _replace_buffer(gm, cache.target, old.new_zeros(old.shape[0], old.shape[2], old.shape[1], old.shape[3]))
            new_caches.append(cache)
        with graph.inserting_before(sdpa):
            out = graph.call_function(cached_attention, (q, k_write[1], v_write[1], *new_caches, start, float(scale)))
        out.meta["val"] = sdpa.meta.get("val")
        sdpa.replace_all_uses_with(out)
        graph.erase_node(sdpa)
        for write in (kc, vc):
            if not write.users:
                graph.erase_node(write)
        rewritten += 1
    if not rewritten:
        graph.erase_node(start)
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    return {"attention_rewritten": rewritten}


def _replace_buffer(gm: torch.fx.GraphModule, target: str, tensor: torch.Tensor) -> None:
    owner_path, _, attr = target.rpartition(".")
    owner = gm.get_submodule(owner_path) if owner_path else gm
    delattr(owner, attr)
    owner.register_buffer(attr, tensor)
