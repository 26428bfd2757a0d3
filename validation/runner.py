"""The runner interface every runtime implements (eager PyTorch, optimised IR, onnxruntime, ExecuTorch, Core ML).

A runner owns its KV cache. `forward(ids, start_pos)` feeds tokens at positions start_pos.. and returns the
logits for each of them as float32 numpy [T, vocab]; `reset()` clears the cache. Generation and validation only
ever talk to this interface, which is what lets one token stream go through every stage.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    name: str
    context: int

    def reset(self) -> None: ...

    def forward(self, ids: list[int], start_pos: int) -> np.ndarray: ...
