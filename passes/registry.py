"""Every pass by its namespaced name, and the default IR pipeline for a quant config.

Namespaces: `common::` passes work on any graph (the IR pipeline, and target pipelines that share a rewrite);
`onnx::`, `executorch::`, `coreml::` passes are a target's own rewrites. A target declares its pipeline as a
list of these names (`pipeline(options)` in its module) and the one PassManager runs it, with the numeric check
after each pass, `--dump-ir` and each pass's error in the manifest. Target passes are imported only when a
pipeline asks for them, so `elmexport --help` does not load executorch or coremltools.

A pass is a class with `name` and `run(program) -> dict[str, int]`, built with the target's options (or None).
Adding one: write its file, add its line here.
"""

from __future__ import annotations

import importlib

from ..errors import ElmExportError
from .quant_config import QuantConfig

# IR passes: built from the quant config
IR_PASSES = {
    "common::cleanup": ("elmexport.passes.cleanup", "Cleanup"),
    "common::fuse_rmsnorm": ("elmexport.passes.fuse_rmsnorm", "FuseRMSNorm"),
    "common::fuse_attention": ("elmexport.passes.fuse_attention", "FuseAttention"),
    "common::quantize_linear": ("elmexport.passes.quantize_linear", "QuantizeLinear"),
    "common::palettize": ("elmexport.passes.palettize", "Palettize"),
}
_TAKES_QUANT = {"common::quantize_linear", "common::palettize"}

# target passes: built from the target's options
TARGET_PASSES = {
    "common::last_position_logits": ("elmexport.passes.last_position_logits", "LastPositionLogits"),
    "onnx::explicit_cache": ("elmexport.targets.onnx.form", "ExplicitCache"),
    "onnx::skip_norm": ("elmexport.targets.onnx.skip_norm", "SkipNorm"),
    "onnx::matmul_nbits": ("elmexport.targets.onnx.quant", "MatMulNBits"),
    "executorch::lower_attention": ("elmexport.targets.executorch.attention", "LowerAttention"),
    "executorch::xnnpack_form": ("elmexport.targets.executorch.xnnpack_form", "XnnpackForm"),
    "executorch::token_rows": ("elmexport.targets.executorch.token_rows", "TokenRows"),
    "executorch::quantized_weights": ("elmexport.targets.executorch.quant", "QuantizedWeights"),
    "executorch::rms_norm_reference": ("elmexport.targets.executorch.coreml_delegate", "RMSNormReference"),
    "coreml::lower_attention": ("elmexport.targets.coreml.attention", "LowerAttention"),
    "coreml::row_logits": ("elmexport.targets.coreml.row_logits", "RowLogits"),
}


def _load(table: dict, name: str):
    module, cls = table[name]
    return getattr(importlib.import_module(module), cls)


def canonical_name(name: str) -> str:
    """IR passes may be named without their namespace (`--passes cleanup,fuse_rmsnorm`, older manifests)."""
    return name if "::" in name else f"common::{name}"


def default_pass_names(quant: QuantConfig) -> list[str]:
    names = ["common::cleanup", "common::fuse_rmsnorm", "common::fuse_attention"]
    modes = {quant.default.kind, quant.embedding.kind} | {q.kind for _, q in quant.overrides}
    if "linear" in modes:
        names.append("common::quantize_linear")
    if "palettize" in modes:
        names.append("common::palettize")
    return names


def build_passes(names: list[str] | None, quant: QuantConfig) -> list:
    """The IR pipeline: `names` (default: default_pass_names) as pass objects."""
    names = [canonical_name(n) for n in names] if names else default_pass_names(quant)
    unknown = [n for n in names if n not in IR_PASSES]
    if unknown:
        raise ElmExportError(f"--passes: unknown pass {unknown[0]!r}; known: "
                             f"{', '.join(n.removeprefix('common::') for n in IR_PASSES)}")
    return [_load(IR_PASSES, n)(quant) if n in _TAKES_QUANT else _load(IR_PASSES, n)() for n in names]


def target_passes(names: list[str], options) -> list:
    """A target pipeline's pass objects, each built with the target's options."""
    unknown = [n for n in names if n not in TARGET_PASSES]
    if unknown:
        raise ValueError(f"unknown target pass {unknown[0]!r}; known: {', '.join(TARGET_PASSES)}")
    return [_load(TARGET_PASSES, n)(options) for n in names]
