"""Front end: capture the export-first model with torch.export into the IR.

One capture with a dynamic token count T in [1, context] covers both prefill and decode; the captured graph is
unlifted into a GraphModule (weights and KV caches as attributes, cache writes as in-place index_put_) on which
the passes work. Capture traces with fake tensors, so it needs no second copy of the weights (3B fits).
"""

from __future__ import annotations

import time

import torch
from torch.export import Dim

from .ir import ops as _register_elm_ops  # noqa: F401  (the graph may contain elm:: ops after passes)
from .ir.graph_edit import replace_buffer
from .ir.program import IRProgram
from .models.transformer import Transformer


def capture(model: Transformer, log=None) -> IRProgram:
    t0 = time.perf_counter()
    context = model.context
    n = min(4, context)
    T = Dim("T", min=1, max=context)
    args = (torch.zeros(1, n, dtype=torch.long), torch.arange(n, dtype=torch.long))
    with torch.no_grad():
        ep = torch.export.export(model.eval(), args, dynamic_shapes=({1: T}, {0: T}))
    gm = ep.module()
    ir = IRProgram(gm=gm, cfg=model.cfg, context=context)
    for name in ir.cache_names():  # own KV caches: running the IR must not disturb the eager model's
        replace_buffer(gm, name, torch.zeros_like(gm.get_buffer(name)))
    if log:
        log(f"captured {model.cfg.name} with torch.export in {time.perf_counter() - t0:.1f} s "
            f"({len(gm.graph.nodes)} graph nodes, T dynamic in [1, {context}])")
    return ir
