"""Per-layer hidden states of the eager model and of the IR, to find the first layer where the error jumps.

Eager: forward hooks on each DecoderLayer. IR: an fx Interpreter that records, for every `layers.{i}` module, the
last node torch.export attributed to it (its residual output), using the nodes' `nn_module_stack` metadata.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.fx import Interpreter


@torch.inference_mode()
def eager_hidden_states(model, ids: list[int]) -> list[np.ndarray]:
    outs = []
    hooks = [layer.register_forward_hook(lambda m, a, o: outs.append(o[0].float().numpy().copy()))
             for layer in model.layers]
    try:
        model.reset_cache()
        model(torch.tensor([ids]), torch.arange(len(ids)))
    finally:
        for h in hooks:
            h.remove()
        model.reset_cache()
    return outs


def _layer_output_nodes(gm) -> list:
    last: dict[int, object] = {}
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        for path, _type in stack.values():
            parts = path.split(".")
            if len(parts) == 2 and parts[0] == "layers" and parts[1].isdigit():
                last[int(parts[1])] = node
    return [last[i] for i in sorted(last)]


class _Recorder(Interpreter):
    def __init__(self, gm, wanted):
        super().__init__(gm)
        self.wanted = {n.name: i for i, n in enumerate(wanted)}
        self.values: dict[int, np.ndarray] = {}

    def run_node(self, n):
        out = super().run_node(n)
        if n.name in self.wanted and isinstance(out, torch.Tensor):
            self.values[self.wanted[n.name]] = out[0].float().numpy().copy()
        return out


@torch.inference_mode()
def ir_hidden_states(ir, ids: list[int]) -> list[np.ndarray]:
    nodes = _layer_output_nodes(ir.gm)
    rec = _Recorder(ir.gm, nodes)
    ir.reset_cache()
    rec.run(torch.tensor([ids]), torch.arange(len(ids)))
    ir.reset_cache()
    return [rec.values[i] for i in sorted(rec.values)]


def layer_errors(reference: list[np.ndarray], other: list[np.ndarray]) -> list[dict]:
    """Relative error per layer (|a-b| / |a|, max over positions), and where it first jumps."""
    rows = []
    for i, (a, b) in enumerate(zip(reference, other)):
        rel = float(np.abs(a - b).max() / (np.abs(a).max() + 1e-30))
        rows.append({"layer": i, "max_abs_err": float(np.abs(a - b).max()), "rel_err": rel})
    return rows


def first_jump(rows: list[dict], factor: float = 3.0) -> int | None:
    """First layer whose relative error exceeds `factor` x the previous layer's (and 1e-4): where error enters."""
    prev = None
    for r in rows:
        if r["rel_err"] > 1e-4 and (prev is None or r["rel_err"] > factor * max(prev, 1e-6)):
            return r["layer"]
        prev = r["rel_err"]
    return None
