"""executorch::token_rows: the layer stack computes on token rows [T, D] instead of [1, T, D] (batch is always 1).

Before:  %h = embedding(..., %input_ids)                        # [1, T, D]
         ... norms, linears, attention, residual adds on [1, T, D] ...
         %last = last_position(%h_final)                        # [1, 1, D]  (or every row: --all-logits)
         %logits = linear(%last, %W_head)                       # [1, 1, vocab]
After:   %h = view(embedding(..., %input_ids), [-1, D])         # [T, D]
         ... the same ops on [T, D] (attention views its q/k/v to [1, T, H, hd] as before and returns rows) ...
         %last = last_row(%h_final)                             # [1, 1, D]: the head and the output as before
         (--all-logits: the logits rows are viewed back to [1, T, vocab] at the output)

Exact: every op acts on the last axis or elementwise, so the same numbers flow; the program's inputs and outputs
are unchanged. Why: ExecuTorch re-traces the graph on fake tensors some 40 times while lowering it, and a linear on
a 3-D input with a symbolic T is a matmul decomposition there (a symbolic reshape to 2-D and back, ~2.2 ms per
call) where a 2-D linear is one mm (~0.7 ms); a model has 11 linears per layer (7 projections, 2 RoPE rotations,
2 norm means). The views in and out are static reshapes XNNPACK takes inside the delegate.
"""

from __future__ import annotations

import torch

from ...errors import ElmExportError
from ...passes.last_position_logits import last_position


def rows(h: torch.Tensor) -> torch.Tensor:
    """[1, T, D] -> [T, D]."""
    return h.view(-1, h.shape[-1])


def last_row(h: torch.Tensor) -> torch.Tensor:
    """[T, D] -> [1, 1, D]: the call's last token, in the shape the head had before."""
    return h[-1:].view(1, 1, -1)


def batched(logits: torch.Tensor) -> torch.Tensor:
    """[T, vocab] -> [1, T, vocab]."""
    return logits.view(1, -1, logits.shape[-1])


def to_token_rows(gm: torch.fx.GraphModule) -> dict[str, int]:
    graph = gm.graph
    ids = next(n for n in graph.nodes if n.op == "placeholder")
    embeddings = [u for u in ids.users if u.op == "call_function"]
    if len(embeddings) != 1:
        raise ElmExportError(f"executorch: expected one embedding of {ids.name}, found {len(embeddings)}")
    embedding = embeddings[0]
    with graph.inserting_after(embedding):
        hidden = graph.call_function(rows, (embedding,))
    embedding.replace_all_uses_with(hidden)
    hidden.args = (embedding,)
    lasts = [n for n in graph.nodes if n.op == "call_function" and n.target is last_position]
    for node in lasts:
        node.target = last_row
    if not lasts:  # every row's logits: back to [1, T, vocab] for the caller
        output = next(n for n in graph.nodes if n.op == "output")
        outs = output.args[0]
        logits = outs[0] if isinstance(outs, (tuple, list)) else outs
        with graph.inserting_before(output):
            output.replace_input_with(logits, graph.call_function(batched, (logits,)))
    graph.lint()
    gm.recompile()
    return {"token_rows": 1}


class TokenRows:
    name = "executorch::token_rows"

    def __init__(self, options=None):
        pass

    def run(self, program) -> dict[str, int]:
        return to_token_rows(program.gm)
