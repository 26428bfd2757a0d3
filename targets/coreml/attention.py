"""elm.attention for Core ML: the reference math with GQA folded into the sequence axis, one mask per graph.

Before (one layer of the IR):
    %y = elm.attention(%qkv, k_cache_i, v_cache_i, %input_pos, %cos, %sin, %wq, %wk, Hq, Hkv, eps, scale)
After (a plain function the entry's torch.export traces into ATen; the mask is built once per graph):
    %mask = causal_cache_mask(%input_pos, context)                           # [T, context]
    %y    = attention_for_coreml(%qkv, k_cache_i, v_cache_i, %input_pos, %cos, %sin, %wq, %wk, Hq, Hkv, eps,
                                 scale, %mask)
which exports as the reference's split / elm.rms_norm / RoPE, the cache writes `cache[:, :, input_pos] = k`
(one slice_update each, see lowering.py) and one fused scaled_dot_product_attention:
- coremltools ignores SDPA's enable_gqa. Instead of repeating K/V (a copy of the whole cache per step), the query
  heads that share a KV head are folded into the sequence axis:
      q [1, H, T, d] -> [1, KV, (H/KV)*T, d],  mask [T, S] -> [(H/KV)*T, S]
  one SDPA over the un-repeated cache, then back to [1, H, T, d].
- no scale argument for the default 1/sqrt(d): coremltools keeps the fused op only then (coremltools #2864).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...ir.ops import ELM_OPS, causal_cache_mask, normed_rotated_qkv
from ...passes.fuse_attention import require_fused


def attention_for_coreml(qkv, k_cache, v_cache, input_pos, cos, sin, q_norm_weight, k_norm_weight, n_q: int,
                         n_kv: int, norm_eps: float, scale: float, mask):
    head_dim = k_cache.shape[-1]
    q, k, v = normed_rotated_qkv(qkv, cos, sin, q_norm_weight, k_norm_weight, n_q, n_kv, norm_eps, head_dim)
    k_cache[:, :, input_pos] = k
    v_cache[:, :, input_pos] = v
    B, _, T, _ = q.shape
    group = n_q // n_kv
    if group > 1:
        q = q.reshape(B, n_kv, group * T, head_dim)
        mask = mask.repeat(group, 1)
    default_scale = abs(scale - head_dim ** -0.5) < 1e-12
    out = F.scaled_dot_product_attention(q, k_cache, v_cache, mask) if default_scale else \
        F.scaled_dot_product_attention(q, k_cache, v_cache, mask, scale=scale)
    if group > 1:
        out = out.reshape(B, n_q, T, head_dim)
    return out.transpose(1, 2).reshape(B, T, n_q * head_dim)


def lower_attention(gm: torch.fx.GraphModule, context: int) -> int:
    """Swap every elm.attention for attention_for_coreml in place; returns how many."""
    graph = gm.graph
    require_fused(graph, "coreml")
    nodes = [n for n in graph.nodes if n.op == "call_function" and n.target is ELM_OPS["attention"]]
    if not nodes:
        return 0
    with graph.inserting_before(nodes[0]):
        mask = graph.call_function(causal_cache_mask, (nodes[0].args[3], context))
    for node in nodes:
        node.target = attention_for_coreml
        node.args = (*node.args, mask)
    graph.lint()
    gm.recompile()
    return len(nodes)


class LowerAttention:
    name = "coreml::lower_attention"

    def __init__(self, options=None):
        pass

    def run(self, program) -> dict[str, int]:
        return {"attention_lowered": lower_attention(program.gm, program.context)}
