"""The one list of targets. Everything else that needs the targets (CLI sub-commands, runners for `generate` and
`validate`, the quickstart, the Python API) derives from it.

A target module exposes:

    DESCRIPTION: str                      one line for `elmexport --help`
    OPTIONS: type[TargetOptions]          its typed options (targets/options.py); flags and API keywords follow
    SUPPORTED_MODES: tuple[str, ...]      weight modes its kernels execute (none, int8, int4, palettize4, ...)
    FOUR_BIT_PRESET: str                  the 4-bit quant preset the quickstart exports it with
    export(compiled, options, out_dir, log) -> dict    writes the package via elmexport.package
and optionally:
    OWN_PRESETS: tuple[str, ...]          quant presets only this target can execute (ExecuTorch: 8da4w, whose
                                          8-bit dynamic activations no other target computes)
    check_quant(config)                   limits of its kernels beyond the modes (ONNX: MatMulNBits block sizes)
    adapt_quant(config) -> config         when its kernels constrain the codes (ExecuTorch: positive scales)

Adding a target is one module (or folder) plus one line in TARGETS (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ..errors import ElmExportError

TARGETS = {
    "coreml": "elmexport.targets.coreml",
    "onnx": "elmexport.targets.onnx",
    "executorch": "elmexport.targets.executorch",
}


@dataclass(frozen=True)
class Target:
    name: str
    module: ModuleType
    description: str
    options: type  # the target's TargetOptions subclass

    def quant_config(self, quant):
        """The quant config (a preset name, a file or a QuantConfig) checked against what this target executes, and
        adapted to how its kernels need the codes. A mode it cannot run is refused with one line."""
        from ..passes.quant_config import QuantConfig, load_quant_config

        if isinstance(quant, str) or quant is None:
            owner = _preset_owner(quant)
            if owner is not None and owner != self.name:
                raise ElmExportError(f"--quant {quant}: this preset's kernels exist only on {owner} "
                                     f"(elmexport {owner}); for {self.name} choose one of "
                                     f"{', '.join(self.module.SUPPORTED_MODES)}")
        config = quant if isinstance(quant, QuantConfig) else load_quant_config(quant)
        for where, q in [("default", config.default), ("embedding", config.embedding), *config.overrides]:
            if q.mode not in self.module.SUPPORTED_MODES:
                raise ElmExportError(f"--quant {config.name}: mode {q.mode!r} ({where}) cannot run on {self.name}; "
                                     f"choose one of {', '.join(self.module.SUPPORTED_MODES)}")
        if hasattr(self.module, "check_quant"):
            self.module.check_quant(config)
        return self.module.adapt_quant(config) if hasattr(self.module, "adapt_quant") else config


def _preset_owner(quant: str | None) -> str | None:
    for name in TARGETS:
        if quant in getattr(target_module(name), "OWN_PRESETS", ()):
            return name
    return None


def target_module(name: str) -> ModuleType:
    return importlib.import_module(TARGETS[name])


def target_entry(name: str) -> Target:
    if name not in TARGETS:
        raise ElmExportError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    module = target_module(name)
    return Target(name, module, module.DESCRIPTION, module.OPTIONS)
