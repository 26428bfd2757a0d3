"""The shared middle of every command: load -> capture -> IR passes (`build_ir`), then a target's own passes on a
copy of the IR (`run_target_passes`), both through the one PassManager."""

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
    dump_ir: str | None = None  # where --dump-ir writes; target pipelines write into <dump_ir>/<target>/


def build_ir(spec: ModelSpec, quant: "str | QuantConfig | None" = None, passes: list[str] | None = None,
             dump_ir: str | None = None, log=print, loaded: LoadedModel | None = None) -> CompiledModel:
    qconfig = quant if isinstance(quant, QuantConfig) else load_quant_config(quant)  # parse before the slow steps
    pass_list = build_passes(passes, qconfig)
    loaded = loaded or load_model(spec, log=log)
    ir = capture(loaded.model, log=log)
    reports = PassManager(pass_list, dump_dir=dump_ir, log=log, tokenizer=loaded.tokenizer).run(ir)
    return CompiledModel(loaded, ir, qconfig, reports, dump_ir)


def run_target_passes(compiled: "CompiledModel | IRProgram", target: str, names: list[str], options, log=print):
    """A copy of the IR (sharing its weights) rewritten by the target pipeline `names`; -> (TargetGraph, reports).

    Each pass is checked like an IR pass: the copy runs in PyTorch after it, against the copy before it. Given a
    CompiledModel, the check uses its tokenizer's text and --dump-ir writes into <dump_ir>/<target>/."""
    from pathlib import Path

    from .ir.target_graph import TargetGraph
    from .passes.registry import target_passes

    if isinstance(compiled, IRProgram):
        ir, dump, tokenizer = compiled, None, None
    else:
        ir, tokenizer = compiled.ir, compiled.loaded.tokenizer
        dump = Path(compiled.dump_ir) / target if compiled.dump_ir else None
    program = TargetGraph.from_ir(ir, target)
    manager = PassManager(target_passes(names, options), dump_dir=dump, log=log, tokenizer=tokenizer,
                          first_dump="ir")
    return program, manager.run(program)
