"""The IR: one captured graph (an fx GraphModule with ATen + elm:: ops) plus the facts targets need.

Why a GraphModule and not the ExportedProgram itself: passes add and drop weights (quantized codes, LUTs), which
on an unlifted GraphModule is `register_buffer` + a `get_attr` node, and the result still runs in PyTorch. Each
target then asks for the entry it needs (`export("prefill")`, `export("decode")`), a fresh torch.export of the
optimised graph with that entry's shapes, so there is one graph and one copy of the weights for every entry.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.export import Dim

from ..models.config import ModelConfig


@dataclass
class IRProgram:
    gm: torch.fx.GraphModule
    cfg: ModelConfig
    context: int
    history: list = field(default_factory=list)  # PassReport dicts, filled by the pass manager

    # ---- facts ----
    def cache_names(self) -> list[str]:
        return [n for n, _ in self.gm.named_buffers() if n.endswith(("k_cache", "v_cache"))]

    def op_counts(self) -> Counter:
        return Counter(str(n.target) for n in self.gm.graph.nodes if n.op == "call_function")

    def graph_text(self) -> str:
        return str(self.gm.graph)

    # ---- running it (the "optimised IR" stage) ----
    def reset_cache(self) -> None:
        for name in self.cache_names():
            self.gm.get_buffer(name).zero_()

    @torch.inference_mode()
    def logits(self, ids: list[int], start_pos: int = 0) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long)
        pos = torch.arange(start_pos, start_pos + len(ids), dtype=torch.long)
        return self.gm(x, pos)[0].float()

    def runner(self, name: str = "ir") -> "IRRunner":
        return IRRunner(self, name)

    # ---- entries for targets ----
    def export(self, entry: str, chunk: int | None = None,
               gm: torch.fx.GraphModule | None = None) -> torch.export.ExportedProgram:
        """prefill: T dynamic in [1, context] (or a fixed chunk); decode: T = 1. Both update the KV caches.

        `gm` is a target's lowered copy of the IR graph (same inputs and caches); default the IR graph itself."""
        if entry == "decode":
            n, dynamic = 1, None
        elif entry == "prefill":
            n = chunk or min(8, self.context)
            T = Dim("T", min=1, max=self.context)
            dynamic = None if chunk else ({1: T}, {0: T})
        else:
            raise ValueError(f"unknown entry {entry!r} (prefill or decode)")
        args = (torch.zeros(1, n, dtype=torch.long), torch.arange(n, dtype=torch.long))
        return torch.export.export(self.gm if gm is None else gm, args, dynamic_shapes=dynamic)


class IRRunner:
    """Runner protocol (validation/runner.py) over the IR's GraphModule."""

    def __init__(self, ir: IRProgram, name: str = "ir"):
        self.ir, self.name, self.context = ir, name, ir.context

    def reset(self) -> None:
        self.ir.reset_cache()

    def forward(self, ids: list[int], start_pos: int) -> np.ndarray:
        return self.ir.logits(ids, start_pos).numpy()
