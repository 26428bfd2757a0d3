"""A target's working copy of the IR graph: what its passes rewrite, and how to run it in PyTorch between them.

Every target rewrites the IR before handing it to its compiler (attention lowered to the runtime's kernels,
weights in the runtime's layout, the head on the last position only). Those rewrites are passes like the IR's
own, run by the same PassManager with the same numeric check after each one, so the copy must run in PyTorch
at every step, however its calling convention changes:
- in-graph caches (the IR's convention): forward(input_ids [1, T], input_pos [T]) -> logits, caches are buffers;
- explicit caches (after onnx::explicit_cache): forward(input_ids, attention_mask, past...) -> (logits, present...),
  where `explicit` holds the per-layer buffers between calls;
- last-position logits (after common::last_position_logits): one row per call. The check feeds all but the last
  LAST_POSITION_ROWS - 1 tokens as one prefill (its last row), then those tokens one per call: the rows of a
  prefill and of decode steps through the cache it wrote, LAST_POSITION_ROWS rows for LAST_POSITION_ROWS calls.
  Replaying every token instead cost one whole-model call per checked token (a minute per pass at 270M, where
  the emulated int4 kernels dequantize their weights on every call) to check the same code paths.
The copy shares the IR's weight tensors (no second copy of the model); the IR itself stays untouched for
validation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .decompose import shallow_copy
from .program import IRProgram


LAST_POSITION_ROWS = 4


@dataclass
class TargetGraph(IRProgram):
    target: str = ""
    explicit: object = None  # targets/onnx/form.ExplicitCacheModule once the caches are graph inputs
    call_context: Callable = contextlib.nullcontext  # set by a pass whose kernels need a guard to run in PyTorch
    _buffers: list = field(default_factory=list)

    @classmethod
    def from_ir(cls, ir: IRProgram, target: str) -> "TargetGraph":
        return cls(gm=shallow_copy(ir.gm), cfg=ir.cfg, context=ir.context, target=target)

    def use_explicit_cache(self, form) -> None:
        """Switch to the explicit-cache calling convention: `form` (ExplicitCacheModule) wraps the new graph."""
        self.gm, self.explicit = form.gm, form
        self.reset_cache()

    def reset_cache(self) -> None:
        if self.explicit is not None:
            self._buffers = self.explicit.kv_buffers()
        else:
            super().reset_cache()

    @torch.inference_mode()
    def _call(self, ids: list[int], start_pos: int) -> torch.Tensor:
        with self.call_context():
            return self._call_graph(ids, start_pos)

    def _call_graph(self, ids: list[int], start_pos: int) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long)
        if self.explicit is not None:
            logits, self._buffers = self.explicit(x, start_pos, self._buffers)
            return logits[0].float()
        out = self.gm(x, torch.arange(start_pos, start_pos + len(ids), dtype=torch.long))
        return out[0].float()

    def logits(self, ids: list[int], start_pos: int = 0) -> torch.Tensor:
        """A row per fed token, or for a last-position graph the rows of the last LAST_POSITION_ROWS tokens (the
        PassManager compares the rows both graphs have: the trailing ones)."""
        split = max(1, len(ids) - LAST_POSITION_ROWS + 1)
        rows = self._call(ids[:split], start_pos)
        if rows.shape[0] == split:  # every row: feed the rest the same way
            return torch.cat([rows, self._call(ids[split:], start_pos + split)]) if split < len(ids) else rows
        return torch.cat([rows] + [self._call([t], start_pos + split + i) for i, t in enumerate(ids[split:])])
