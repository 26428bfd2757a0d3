"""Target name -> back-end module. A back end is one module exposing:

    DESCRIPTION: str
    add_arguments(parser)                          # its own CLI options (beyond model/compiler/--out)
    export(compiled, args, out_dir, log) -> dict   # writes the package via elmexport.package, returns the manifest

Adding a target is one module plus one line here (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib

TARGETS = {
    "coreml": "elmexport.targets.coreml",
    "onnx": "elmexport.targets.onnx",
    "executorch": "elmexport.targets.executorch",
}


def target_module(name: str):
    return importlib.import_module(TARGETS[name])
