"""Helpers for the ONNX target tests: export a tiny package in-process, run token streams through runners."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from elmexport.targets import onnx as onnx_target

from elmexport.pipeline import build_ir
from elmexport.targets.registry import target_entry
from elmexport.weights.spec import ModelSpec
from elmexport.validation.streams import teacher_forced as prefill_then_decode  # noqa: F401  (re-exported for the tests)


def export_tiny(out: Path, quant: str = "none", accuracy_level: int = 4, model: str = "openelm-tiny",
                context: int = 64, tokenizer: str | None = None, logits: str = "all"):
    """(compiled, manifest) for a random-weight tiny model exported through the target module."""
    options = onnx_target.OnnxOptions(accuracy_level=accuracy_level, logits=logits)
    options.check(context)
    spec = ModelSpec(model=model, random_weights=True, seed=0, context=context, tokenizer=tokenizer,
                     tokenizer_mode="optional")
    compiled = build_ir(spec, target_entry("onnx").quant_config(quant), log=lambda *a: None)
    manifest = onnx_target.export(compiled, options, out, lambda *a: None)
    return compiled, manifest


def token_stream(vocab: int, n: int, seed: int = 7) -> list[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(3, vocab, n)]


def compile_module(model, quant: str):
    """The IR of an in-memory model after the default passes for `quant` (no weights loading, no ONNX)."""
    from elmexport.passes.manager import PassManager
    from elmexport.passes.quant_config import load_quant_config
    from elmexport.passes.registry import build_passes

    from elmexport.frontend import capture

    ir = capture(model)
    PassManager(build_passes(None, load_quant_config(quant))).run(ir)
    return ir
