"""``open_coreml_runner``: the real Core ML runtime on macOS, the numpy MIL interpreter elsewhere.

Both runners expose ``function_names``, ``make_state()``, ``predict(inputs, state=None, function_name=None)``,
``read_state(state, name)`` and ``write_state(state, name, value)``, so parity code does not care which one it
got. The macOS branch cannot run on Linux CI: it is a thin pass-through to coremltools' public API.
"""

from __future__ import annotations

import os
import sys

from .loader import load_program
from .runner import MILProgramRunner


def coreml_runtime_available() -> bool:
    """True when coremltools can actually predict (macOS with its native extension)."""
    if sys.platform != "darwin":
        return False
    try:
        import coremltools.libcoremlpython  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001
        return False
    return True


class CoreMLRunner:
    """Core ML runtime wrapper with the ``MILProgramRunner`` interface.

    One ``MLModel`` is opened per function on first use (coremltools selects a function at load time); state
    objects from ``make_state()`` are shared between functions of the package, as Core ML allows."""

    def __init__(self, path, function_name: str | None = None, compute_units=None):
        import coremltools as ct  # noqa: PLC0415

        self._ct = ct
        self.path = os.fspath(path)
        program = load_program(self.path)  # parses the spec only; cheap next to Core ML's own load
        self.function_names = list(program.functions)
        self.function_name = function_name or program.default_function
        self._compute_units = compute_units if compute_units is not None else ct.ComputeUnit.CPU_ONLY
        self._models = {}

    def _model(self, function_name: str | None):
        name = function_name or self.function_name
        if name not in self._models:
            kwargs = {"compute_units": self._compute_units}
            if len(self.function_names) > 1 or name != "main":
                kwargs["function_name"] = name
            self._models[name] = self._ct.models.MLModel(self.path, **kwargs)
        return self._models[name]

    def make_state(self):
        return self._model(None).make_state()

    def predict(self, inputs: dict, state=None, function_name: str | None = None) -> dict:
        model = self._model(function_name)
        return model.predict(inputs, state=state) if state is not None else model.predict(inputs)

    @staticmethod
    def read_state(state, name: str):
        return state.read_state(name)

    @staticmethod
    def write_state(state, name: str, value) -> None:
        state.write_state(name, value)


def open_coreml_runner(path, function_name: str | None = None, *, prefer_coreml: bool = True):
    """Return a ``CoreMLRunner`` where Core ML can predict (macOS), else a ``MILProgramRunner``."""
    if prefer_coreml and coreml_runtime_available():
        return CoreMLRunner(path, function_name)
    return MILProgramRunner(path, function_name)
