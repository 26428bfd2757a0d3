"""coreml::row_logits: the head reads one chosen row of the call, named by an optional input `logits_row`.

Before:  forward(input_ids, input_pos)
         %h = elm.rms_norm(%x, %w, eps) ; %logits = linear(%h, %W_head)                               # [1, T, vocab]
After:   forward(input_ids, input_pos, logits_row=None)
         %h = elm.rms_norm(%x, %w, eps) ; %r = selected_row(%h, %logits_row) ; %logits = linear(%r, %W_head)
         with logits_row ([1] int): [1, 1, vocab], the row at that index; without it: every row, as before.

Why an input and not the last row (common::last_position_logits, which ONNX and ExecuTorch use): a Core ML
function has fixed shapes, so a prompt's last chunk is padded to `prefill_chunk` tokens and its last real token
is usually not the chunk's last row. The caller knows which row it needs (real tokens - 1) and says so; the
head, the largest matmul of a small model (SmolLM2: 49152 x 576), then runs on one row instead of C, and the call
returns one row ([1, 1, vocab], 96 KiB in fp16 for SmolLM2) instead of C (6 MiB at C = 64).

Only the prefill function is exported with `logits_row`; decode (one row anyway) and verify (a speculative pair's
target needs every row) are exported without it and keep every row. So the numeric check after this pass, which
runs the graph without the input, sees the graph unchanged; the row selection itself is checked through the
exported package (tests/targets/coreml/test_coreml_prefill_row.py).
"""

from __future__ import annotations

import torch

from ...errors import ElmExportError
from ...passes.last_position_logits import LastPositionLogits, last_position
from . import ROW_INPUT


def selected_row(h: torch.Tensor, row: torch.Tensor | None) -> torch.Tensor:
    """[1, T, D] -> [1, 1, D] at index `row` ([1] int), or h itself when no row is asked for."""
    return h if row is None else h.index_select(1, row)


class RowLogits:
    name = "coreml::row_logits"

    def __init__(self, options=None):
        pass

    def run(self, program) -> dict[str, int]:
        LastPositionLogits().run(program)  # finds the head and puts a last_position node before it
        graph = program.gm.graph
        node = next(n for n in graph.nodes if n.op == "call_function" and n.target is last_position)
        _plain_signature(graph)
        last_input = [n for n in graph.nodes if n.op == "placeholder"][-1]
        with graph.inserting_after(last_input):
            row = graph.placeholder(ROW_INPUT, default_value=None)
        node.target, node.args = selected_row, (node.args[0], row)
        graph.lint()
        program.gm.recompile()
        return {"heads_on_selected_row": 1}


def _plain_signature(graph: torch.fx.Graph) -> None:
    """forward(input_ids, input_pos) -> logits written out plainly instead of through the pytree specs the
    captured graph carries, which fix the number of inputs: the optional input needs a plain default."""
    info = getattr(graph._codegen, "pytree_info", None)
    output = next(n for n in graph.nodes if n.op == "output")
    outs = output.args[0]
    if info is not None:
        if not (info.out_spec.is_leaf() and isinstance(outs, (tuple, list)) and len(outs) == 1):
            raise ElmExportError(f"coreml: the graph returns {info.out_spec}, not the logits alone; cannot add "
                                 f"the {ROW_INPUT} input")
        output.args = (outs[0],)
    graph.set_codegen(torch.fx.graph.CodeGen())
