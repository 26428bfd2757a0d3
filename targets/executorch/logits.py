"""Return only the last position's logits from the ExecuTorch program, as ExecuTorch's own LLM exporter does.

    before:  %h = add(...) ; %n = rms_norm(%h) ; %logits = linear(%n, %W_head)           -> [1, T, vocab]
    after:   %h = add(...) ; %l = last_position(%h) ; %n = rms_norm(%l) ; linear(%n, ...) -> [1, 1, vocab]

Why: LLM runners (TextLLMRunner, llama_main) read only the last row of a prefill, and the head is the largest
matmul of a small model (SmolLM2: 49152 x 576, a fifth of its weights), so computing it for all T prompt
positions costs about a fifth of the prefill for rows nobody reads. Exact: the final norm and the head work on
each position independently. Runners that need every row (validation, perplexity) feed one token per call.
"""

from __future__ import annotations

import torch

from ...errors import ElmExportError


def last_position(h: torch.Tensor) -> torch.Tensor:
    """[1, T, D] -> [1, 1, D]: the hidden state of the last token of the call."""
    return h[:, -1:, :]


def keep_last_position(gm: torch.fx.GraphModule) -> int:
    """Insert last_position before the final norm (the norm's input is the hidden state the head reads)."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    logits = out.args[0][0] if isinstance(out.args[0], (tuple, list)) else out.args[0]
    norm = logits.args[0] if logits.op == "call_function" and logits.args else None
    if norm is None or norm.op != "call_function" or not norm.args or "val" not in norm.args[0].meta \
            or norm.args[0].meta["val"].dim() != 3:
        raise ElmExportError("executorch: cannot find the final norm -> head chain to keep only the last logits")
    hidden = norm.args[0]
    with gm.graph.inserting_before(norm):
        last = gm.graph.call_function(last_position, (hidden,))
    norm.replace_input_with(hidden, last)
    gm.graph.lint()
    gm.recompile()
    return 1
