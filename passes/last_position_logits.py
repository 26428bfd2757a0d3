"""last_position_logits: the head reads the last position of the call only, so a T-token prefill returns [1, 1, vocab].

Before:  %h = elm.rms_norm(%x, %w, eps) ; %logits = linear(%h, %W_head)                          # [1, T, vocab]
After:   %h = elm.rms_norm(%x, %w, eps) ; %last = slice(%h, 1, -1) ; %logits = linear(%last, %W_head)  # [1, 1, vocab]
(the head may be a quantized or palettized linear; the 1 is static in the exported program)

Why: LLM runners (onnxruntime-genai, ExecuTorch's TextLLMRunner, llama_main) sample from the last row only, and
the head is the largest matmul of a small model (SmolLM2: 49152 x 576, a fifth of its weights), so computing it
for all T prompt positions costs about a fifth of the prefill for rows nobody reads. onnxruntime-genai sees the
static 1 and reads the logits as they are. Exact: the head works on each position independently. What it costs:
teacher-forced scoring (validation, perplexity) needs one call per token, which the runners do by themselves.
A target pass: the IR keeps every row.
"""

from __future__ import annotations

import torch

from ..errors import ElmExportError
from ..ir.ops import ELM_OPS

aten = torch.ops.aten
_HEADS = (aten.linear.default, ELM_OPS["quantized_linear"], ELM_OPS["palettized_linear"])
_CASTS = (aten.to.dtype, aten._to_copy.default, aten.type_as.default)


def last_position(h: torch.Tensor) -> torch.Tensor:
    """[1, T, D] -> [1, 1, D]: the hidden state of the call's last token."""
    return h[:, -1:, :]


class LastPositionLogits:
    name = "common::last_position_logits"

    def __init__(self, options=None):
        pass

    def run(self, program) -> dict[str, int]:
        graph = program.gm.graph
        output = next(n for n in graph.nodes if n.op == "output")
        outs = output.args[0]
        head = outs[0] if isinstance(outs, (tuple, list)) else outs
        while head.op == "call_function" and head.target in _CASTS and len(head.users) == 1:
            head = head.args[0]  # the model's final .float(), when cleanup did not remove it
        if head.op != "call_function" or head.target not in _HEADS:
            raise ElmExportError(f"{program.target}: the logits come from {head.name}, not from the head's linear; "
                                 f"cannot keep only the last position")
        hidden = head.args[0]
        with graph.inserting_before(head):
            last = graph.call_function(last_position, (hidden,))
        head.replace_input_with(hidden, last)
        return {"heads_on_last_position": 1}
