"""The shared middle of every command: load -> capture -> passes. Targets call `build_ir` and lower the result."""

from __future__ import annotations

from dataclasses import dataclass

from .frontend import capture
from .ir.program import IRProgram
from .passes.manager import PassManager, PassReport
from .passes.quant_config import QuantConfig, load_quant_config
from .passes.registry import build_passes
from .weights.sources import LoadedModel, load_model
from .weights.spec import ModelSpec


@dataclass
class CompiledModel:
    loaded: LoadedModel
    ir: IRProgram
    quant: QuantConfig
    reports: list[PassReport]


def build_ir(spec: ModelSpec, quant: "str | QuantConfig | None" = None, passes: list[str] | None = None,
             dump_ir: str | None = None, log=print, loaded: LoadedModel | None = None) -> CompiledModel:
    qconfig = quant if isinstance(quant, QuantConfig) else load_quant_config(quant)  # parse before the slow steps
    pass_list = build_passes(passes, qconfig)
    loaded = loaded or load_model(spec, log=log)
    ir = capture(loaded.model, log=log)
    reports = PassManager(pass_list, dump_dir=dump_ir, log=log, tokenizer=loaded.tokenizer).run(ir)
    return CompiledModel(loaded, ir, qconfig, reports)
