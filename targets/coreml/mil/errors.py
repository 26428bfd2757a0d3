"""Exception types of the MIL interpreter.

Each one carries a single-line message that names the thing that went wrong (file, op type, function, input),
so a validation report can print ``str(err)`` instead of a deep traceback.
"""

from __future__ import annotations


class MILError(Exception):
    """Base class of every error raised by ``elmexport.targets.coreml.mil``."""


class MILPackageError(MILError):
    """The ``.mlpackage`` is missing a file, is truncated or does not parse as an ML Program."""


class UnsupportedMILOp(MILError):
    """The program uses an op type that the numpy interpreter does not implement."""

    def __init__(self, op_types, function_name: str):
        if isinstance(op_types, str):
            op_types = [op_types]
        self.op_types = sorted(set(op_types))
        self.function_name = function_name
        if len(self.op_types) == 1:
            what = f"op '{self.op_types[0]}'"
        else:
            what = "ops " + ", ".join(f"'{t}'" for t in self.op_types)
        verb = "is" if len(self.op_types) == 1 else "are"
        super().__init__(f"{what} (in function '{function_name}') {verb} not supported by the MIL interpreter")


class MILInputError(MILError, ValueError):
    """``predict`` got a missing/unknown input, a wrong shape, or a bad state dict."""


class MILExecutionError(MILError):
    """An op failed while running (bad indices, shape mismatch with the declared type, ...)."""
