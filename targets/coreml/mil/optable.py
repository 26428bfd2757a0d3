"""The op table: MIL op type -> numpy implementation.

An implementation is called with the op's inputs as keyword arguments named as in the MIL spec (``x``, ``y``,
``axes`` ...); optional inputs the program omits are the function's defaults, which mirror coremltools' op
definitions. It returns one array, or a tuple for multi-output ops. The executor casts each result to the dtype
the program declares, so implementations may compute in a wider type (see ``ops_common.f32``).

Ops that touch model state get the working state dict as first positional argument (``register(..., state=True)``).
Tests may delete entries (``monkeypatch.delitem(OPS, "softmax")``) to exercise the unsupported-op path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class OpImpl:
    fn: Callable
    uses_state: bool = False


OPS: dict[str, OpImpl] = {}


def register(*names: str, state: bool = False):
    """Decorator registering ``fn`` under each MIL op type in ``names``."""

    def deco(fn):
        for n in names:
            OPS[n] = OpImpl(fn, state)
        return fn

    return deco


def load_all() -> dict[str, OpImpl]:
    """Import every ``ops_*`` module (each registers its ops on import) and return the table."""
    from . import (  # noqa: F401, PLC0415
        ops_activation,
        ops_constexpr,
        ops_elementwise,
        ops_linear,
        ops_normalization,
        ops_reduce,
        ops_scatter_gather,
        ops_state,
        ops_tensor,
    )

    return OPS
