"""`--logits last` (the default): the head runs on the last position only, so a T-token prefill returns [1, 1, vocab].

Before:  %logits = linear(%h, %table)                       # [1, T, vocab]: T x vocab x dim MACs in prefill
After:   %logits = linear(unsqueeze(select(%h, 1, -1), 1), %table)   # [1, 1, vocab], the 1 is static
A generator only samples from the last position; onnxruntime-genai sees the static 1 and treats the model as
"pruned" (it then reads the logits as they are). What it costs: teacher-forced scoring of a prompt (validation,
speculative or n-gram decoding) needs one call per token, which targets/onnx/runner.py does by itself.
"""

from __future__ import annotations

import torch

from ...errors import ElmExportError

aten = torch.ops.aten


def keep_last_logits(gm: torch.fx.GraphModule) -> None:
    """Rewrite the head (the producer of the graph's first output) to read the last position only, in place."""
    output = next(n for n in gm.graph.nodes if n.op == "output")
    head = output.args[0][0]
    hidden = head.args[0] if head.op == "call_function" and head.args else None
    if hidden is None or not isinstance(hidden, torch.fx.Node):
        raise ElmExportError(f"--logits last: the logits come from {head.name}, not from a head over hidden states")
    with gm.graph.inserting_before(head):
        last = gm.graph.call_function(aten.select.int, (hidden, 1, -1))
        last = gm.graph.call_function(aten.unsqueeze.default, (last, 1))
    head.replace_input_with(hidden, last)
    gm.graph.lint()
    gm.recompile()
