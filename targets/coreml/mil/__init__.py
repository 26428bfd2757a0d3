"""Run saved Core ML ML Programs (``.mlpackage``) in numpy, so Core ML exports can be validated off macOS.

    from elmexport.targets.coreml.mil import MILProgramRunner
    runner = MILProgramRunner("model.mlpackage")          # default function ("main")
    state = runner.make_state()                           # {state name: zeros}, shared by all functions
    out = runner.predict({"input_ids": ids}, state=state, function_name="prefill")

``open_coreml_runner(path)`` gives the real Core ML runtime on macOS and this interpreter elsewhere.
See ``ops_common`` for the fp16 numeric policy and ``optable`` for the op table.
"""

from .coreml import CoreMLRunner, coreml_runtime_available, open_coreml_runner
from .errors import MILError, MILExecutionError, MILInputError, MILPackageError, UnsupportedMILOp
from .optable import OPS, load_all
from .runner import MILProgramRunner


def supported_ops() -> list[str]:
    """Sorted MIL op types the interpreter implements (plus ``const``, handled by the loader)."""
    return sorted(set(load_all()) | {"const"})


__all__ = [
    "CoreMLRunner",
    "MILError",
    "MILExecutionError",
    "MILInputError",
    "MILPackageError",
    "MILProgramRunner",
    "OPS",
    "UnsupportedMILOp",
    "coreml_runtime_available",
    "open_coreml_runner",
    "supported_ops",
]
