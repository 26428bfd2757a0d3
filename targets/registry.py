"""Target name -> back-end module. A back end is one module exposing:

    DESCRIPTION: str
    add_arguments(parser)                          # its own CLI options (beyond model/compiler/--out)
    export(compiled, args, out_dir, log) -> dict   # writes the package via elmexport.package, returns the manifest
and optionally check_arguments(args) and adapt_quant(config) -> config (see target_quant).

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


def target_quant(module, quant):
    """The quant config (a preset name, a file or a QuantConfig) as `module`'s kernels need it quantized: a target
    whose kernels constrain the codes (ExecuTorch: positive scales for XNNPACK) says so with adapt_quant."""
    from ..passes.quant_config import QuantConfig, load_quant_config

    config = quant if isinstance(quant, QuantConfig) else load_quant_config(quant)
    return module.adapt_quant(config) if hasattr(module, "adapt_quant") else config
