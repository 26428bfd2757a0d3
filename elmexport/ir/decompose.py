"""Decompose elm:: ops into plain ATen by tracing their reference kernels (for back ends without an elm lowering).

Every elm op has a reference kernel written in torch ops (elmexport/ir/ops.py); that kernel *defines* the op's
numbers. A back end that has no native form of an op can therefore run the kernel itself: on a GraphModule the
op node's target is swapped for the kernel (a plain Python callable), and the next torch.export traces the kernel
into ATen ops; on an ExportedProgram `run_decompositions` does the same tracing in one step.

    before:  %n = elm.rms_norm(%x, %w, 1e-06)
    after:   %n = rms_norm_kernel(%x, %w, 1e-06)      # -> abs, amax, div, mul, mean, add, rsqrt, ... on export

A target passes `overrides` to map an op to its own formulation instead (ExecuTorch maps quantized_linear to
torchao's dynamic-activation form that XNNPACK recognises); anything not in the table is left alone.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable

import torch

from . import ops


def decomposition_table(only: list[str] | None = None, overrides: dict | None = None) -> dict:
    """{elm op overload: function}; `only` restricts to op names ("rms_norm", ...), `overrides` replaces kernels."""
    table = dict(ops.REFERENCE_KERNELS)
    if only is not None:
        unknown = set(only) - set(ops.ELM_OPS)
        if unknown:
            raise ValueError(f"unknown elm ops {sorted(unknown)}; known: {sorted(ops.ELM_OPS)}")
        table = {op: fn for op, fn in table.items() if op.__name__.split(".")[0] in only}
    table.update(overrides or {})
    return table


def shallow_copy(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A GraphModule with its own graph and module tree but the same weight tensors: rewrite it (swap kernels,
    re-register buffers) without touching the IR, which validation still runs."""
    graph = torch.fx.Graph()
    graph._codegen = copy.deepcopy(gm.graph._codegen)  # keeps torch.export's pytree in/out handling
    graph.output(graph.graph_copy(gm.graph, {}))
    return torch.fx.GraphModule(gm, graph)


def decompose_graph_module(gm: torch.fx.GraphModule, table: dict[object, Callable] | None = None) -> Counter:
    """In place: each elm node calls its kernel instead; returns how many nodes of each op were replaced.

    The graph still runs eagerly (same numbers), and torch.export of it yields ATen ops only for those ops.
    """
    table = decomposition_table() if table is None else table
    replaced: Counter = Counter()
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in table:
            replaced[str(node.target)] += 1
            node.target = table[node.target]
    gm.recompile()
    return replaced


def decompose_exported_program(ep: torch.export.ExportedProgram,
                               table: dict[object, Callable] | None = None) -> torch.export.ExportedProgram:
    """A new ExportedProgram with the elm ops in `table` traced into ATen (other ops are kept as they are)."""
    table = decomposition_table() if table is None else table
    return ep.run_decompositions(table)


def remaining_elm_ops(graph: torch.fx.Graph) -> Counter:
    """elm ops still in a graph: a target asserts this is empty before handing the graph to its compiler."""
    return Counter(str(n.target) for n in graph.nodes
                   if n.op == "call_function" and str(n.target).startswith("elm."))
