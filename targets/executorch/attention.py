"""elm.attention for XNNPACK programs: token-major q/k/v, ExecuTorch's `llama::update_cache` + `llama::custom_sdpa`.

Before (one layer of the IR; caches [1, n_kv, context, hd], read whole behind a mask by the reference kernel):
    %qkv = linear(%x, %W_qkv)
    %y   = elm.attention(%qkv, k_cache_i, v_cache_i, %input_pos, %cos, %sin, %wq, %wk, Hq, Hkv, eps, scale)
After (caches re-registered as [1, context, n_kv, hd], the layout the custom ops use; per-layer head counts kept):
    %start        = start_position(%input_pos)                                  # once per graph
    %cos_t, %sin_t = unsqueeze(%cos, -2), unsqueeze(%sin, -2)                    # [T, 1, hd], once per graph
    %q, %k, %v    = linear(%x, %W_q), linear(%x, %W_k), linear(%x, %W_v)       # row slices of %W_qkv
    %y = attention_for_xnnpack(%q, %k, %v, k_cache_i, v_cache_i, %start, %cos_t, %sin_t, %wq, %wk, Hq, Hkv, eps,
                               scale, %rotate_half, %mean_row)
which exports, per layer, as: view q/k/v to [1, T, H, hd] (token-major: no transposes), the q/k norms with their
mean as a GEMM (rms_norm_for_xnnpack), RoPE as x * cos + linear(x, R) * sin with R the signed permutation of
rotate-half (exact: each output is one input times +-1), update_cache(k), update_cache(v), custom_sdpa.

Why each choice:
- custom_sdpa reads only positions [0, start + T) and runs multi-threaded, where the portable SDPA expands K/V to
  every query head and reads the whole cache every step; it never reads slots that were not written yet
  (ExecuTorch does not initialise mutable buffers). It relies on contiguous positions, as elm.attention does.
- XNNPACK cannot split or slice a tensor of dynamic shape, so the fused qkv projection becomes three linears over
  the same codes and scales, and rotate-half becomes a matmul; every op left in the layer is then delegated.
- At T = 1 an XNNPACK op costs a fixed price per call whatever its size (a transpose ~0.4 us, an elementwise op
  ~0.25 us: `python benchmarks/xnnpack_op_cost.py`); token-major q/k/v save the 8 transposes per layer that the
  reference layout [1, H, T, hd] would cost. Norm, rotation and the table products act on the last axis, so the
  layout does not change their numbers.
"""

from __future__ import annotations

import contextlib
import os
import sys

import torch
import torch.nn.functional as F

from ...errors import ElmExportError
from ...ir.ops import ELM_OPS
from ...passes.fuse_attention import require_fused
from ...ir.graph_edit import add_constant, replace_buffer
from .split_projections import is_linear, linear_parts
from .xnnpack_form import add_mean_row, rms_norm_for_xnnpack

aten = torch.ops.aten


def load_custom_ops() -> None:
    """Register llama:: ops (AOT meta kernels + runtime kernels); the runtime needs this before loading a .pte."""
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401


def start_position(input_pos: torch.Tensor, context: int):
    """The first position as a size-like SymInt, bounded by the cache (checks become runtime asserts)."""
    start = input_pos[0].item()
    torch._check(start >= 0)
    torch._check(start < context)
    return start


def attention_for_xnnpack(q, k, v, k_cache, v_cache, start, cos, sin, q_norm_weight, k_norm_weight, n_q: int,
                          n_kv: int, norm_eps: float, scale: float, rotate_half, mean_row):
    """q/k/v projections [1, T, H*hd] or token rows [T, H*hd] (token_rows.py); caches [1, context, n_kv, hd]
    (written in place); cos/sin [T, 1, hd]. The output has the projections' rank."""
    head_dim = k_cache.shape[-1]
    token_rows = q.dim() == 2
    q = q.view(1, -1, n_q, head_dim)
    k = k.view(1, -1, n_kv, head_dim)
    v = v.view(1, -1, n_kv, head_dim)
    if q_norm_weight is not None:
        q = rms_norm_for_xnnpack(q, q_norm_weight, norm_eps, mean_row)
        k = rms_norm_for_xnnpack(k, k_norm_weight, norm_eps, mean_row)
    q = q * cos + F.linear(q, rotate_half) * sin
    k = k * cos + F.linear(k, rotate_half) * sin
    torch.ops.llama.update_cache(k.contiguous(), k_cache, start)
    torch.ops.llama.update_cache(v.contiguous(), v_cache, start)
    out = torch.ops.llama.custom_sdpa(q.contiguous(), k_cache, v_cache, start, None, 0.0, True, scale)
    return out.view(-1, n_q * head_dim) if token_rows else out.view(1, -1, n_q * head_dim)


def rotate_half_matrix(head_dim: int) -> torch.Tensor:
    """R with x @ R.T == cat([-x[..., h:], x[..., :h]], -1): a signed permutation."""
    h = head_dim // 2
    r = torch.zeros(head_dim, head_dim)
    r[torch.arange(h), torch.arange(h) + h] = -1.0
    r[torch.arange(h) + h, torch.arange(h)] = 1.0
    return r


def lower_attention(gm: torch.fx.GraphModule, context: int) -> dict[str, int]:
    """Every elm.attention -> attention_for_xnnpack, in place (see the module docstring); returns counts."""
    load_custom_ops()
    graph = gm.graph
    require_fused(graph, "executorch")
    nodes = [n for n in graph.nodes if n.op == "call_function" and n.target is ELM_OPS["attention"]]
    if not nodes:
        return {"attention_lowered": 0}
    first = nodes[0]
    input_pos = first.args[3]
    head_dim = gm.get_buffer(first.args[1].target).shape[-1]
    rotate = add_constant(gm, f"rotate_half_{head_dim}", rotate_half_matrix(head_dim))
    mean_row = add_mean_row(gm, head_dim) if first.args[6] is not None else None  # q/k norms (OpenELM)
    with graph.inserting_before(first):
        start = graph.call_function(start_position, (input_pos, context))
    token_major: dict = {}  # cos/sin node -> its [T, 1, hd] form, made once
    for node in nodes:
        qkv, k_cache, v_cache, _pos, cos, sin, q_w, k_w, n_q, n_kv, eps, scale = node.args
        for table in (cos, sin):
            if table not in token_major:
                with graph.inserting_before(first):
                    token_major[table] = graph.call_function(aten.unsqueeze.default, (table, -2))
        if not is_linear(qkv) or len(qkv.users) != 1:
            raise ElmExportError(f"executorch: the qkv input of {node.name} is not a projection read only by it; "
                                 f"XNNPACK needs it as three linears")
        bounds = [(0, n_q * head_dim), (n_q * head_dim, (n_q + n_kv) * head_dim),
                  ((n_q + n_kv) * head_dim, (n_q + 2 * n_kv) * head_dim)]
        q, k, v = linear_parts(gm, qkv, bounds)
        for cache in (k_cache, v_cache):
            old = gm.get_buffer(cache.target)
            replace_buffer(gm, cache.target, old.new_zeros(old.shape[0], old.shape[2], old.shape[1], old.shape[3]))
        node.target = attention_for_xnnpack
        node.args = (q, k, v, k_cache, v_cache, start, token_major[cos], token_major[sin], q_w, k_w, n_q, n_kv, eps,
                     scale, rotate, mean_row)
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    return {"attention_lowered": len(nodes)}


class LowerAttention:
    name = "executorch::lower_attention"

    def __init__(self, options=None):
        pass

    def run(self, program) -> dict[str, int]:
        program.call_context = native_stderr_silenced
        return lower_attention(program.gm, program.context)


@contextlib.contextmanager
def native_stderr_silenced():
    """ExecuTorch's custom-op kernels, run eagerly by the pass manager's checks, log a line per call from C++
    ("No temp allocator provided") straight to file descriptor 2; keep the export's output readable."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
