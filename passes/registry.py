"""Pass names for `--passes`, and the default pipeline for a quant config."""

from __future__ import annotations

from ..errors import ElmExportError
from .cleanup import Cleanup
from .fuse_attention import FuseAttention
from .fuse_rmsnorm import FuseRMSNorm
from .palettize import Palettize
from .quant_config import QuantConfig
from .quantize_linear import QuantizeLinear

PASSES = {
    "cleanup": lambda q: Cleanup(),
    "fuse_rmsnorm": lambda q: FuseRMSNorm(),
    "fuse_attention": lambda q: FuseAttention(),
    "quantize_linear": lambda q: QuantizeLinear(q),
    "palettize": lambda q: Palettize(q),
}


def default_pass_names(quant: QuantConfig) -> list[str]:
    names = ["cleanup", "fuse_rmsnorm", "fuse_attention"]
    modes = {quant.default.kind, quant.embedding.kind} | {q.kind for _, q in quant.overrides}
    if "linear" in modes:
        names.append("quantize_linear")
    if "palettize" in modes:
        names.append("palettize")
    return names


def build_passes(names: list[str] | None, quant: QuantConfig) -> list:
    names = names or default_pass_names(quant)
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise ElmExportError(f"--passes: unknown pass {unknown[0]!r}; known: {', '.join(PASSES)}")
    return [PASSES[n](quant) for n in names]
