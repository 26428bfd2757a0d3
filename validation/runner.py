"""The runner interface every runtime implements (eager PyTorch, optimised IR, onnxruntime, ExecuTorch, Core ML).

A runner owns its KV cache. `forward(ids, start_pos)` feeds tokens at positions start_pos.. and returns the
logits for each of them as float32 numpy [T, vocab]; `reset()` clears the cache. Generation and validation only
ever talk to this interface, which is what lets one token stream go through every stage.

Generation only needs the last position's logits. Packages whose program returns just that row (ExecuTorch by
default, ONNX `--logits last`) would have to feed a prompt one token per call to produce every row, so such
runners also offer `forward_last(ids, start_pos) -> [vocab]`; `last_logits()` uses it when present.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    name: str
    context: int

    def reset(self) -> None: ...

    def forward(self, ids: list[int], start_pos: int) -> np.ndarray: ...


def last_logits(runner, ids: list[int], start_pos: int) -> np.ndarray:
    """Logits of the last fed position, [vocab]: one call for a whole prompt when the runner can do that."""
    fast = getattr(runner, "forward_last", None)
    return fast(ids, start_pos) if fast else runner.forward(ids, start_pos)[-1]
