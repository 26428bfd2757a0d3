"""State ops: ``read_state`` and ``write_state`` (and the pymil-only ``coreml_update_state``).

coremltools serialises ``coreml_update_state(state, value)`` as ``write_state(input=state, data=value)``
followed by ``read_state(input=state)``; a program loaded from disk therefore only has the first two, but
hand-built or future programs may carry the fused op, so it is accepted too.

The executor binds a state-typed function input to a ``StateRef`` and passes the *working* state dict (name ->
array) as the first argument. Writes replace the dict entry (values are never mutated in place, so arrays read
earlier stay valid); the runner copies the final values back into the caller's arrays after the call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .optable import register


@dataclass(frozen=True)
class StateRef:
    name: str
    dtype: np.dtype
    shape: tuple


def _ref(v) -> StateRef:
    if not isinstance(v, StateRef):
        raise TypeError(f"expected a state input, got {type(v).__name__}")
    return v


@register("read_state", state=True)
def read_state(states, input):  # noqa: A002 - MIL's parameter name
    return states[_ref(input).name]


def _store(states, ref: StateRef, value):
    value = np.asarray(value)
    if value.shape != ref.shape:
        raise ValueError(f"state '{ref.name}' has shape {ref.shape}, cannot store a value of shape {value.shape}")
    states[ref.name] = value.astype(ref.dtype, copy=False)


@register("write_state", state=True)
def write_state(states, input, data):  # noqa: A002
    _store(states, _ref(input), data)
    return ()


@register("coreml_update_state", state=True)
def coreml_update_state(states, state, value):
    ref = _ref(state)
    _store(states, ref, value)
    return states[ref.name]
