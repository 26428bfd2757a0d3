"""Per-layer sensitivity: the logit error each quantized weight adds on its own, measured on the IR.

For every weight the quant config would quantize, the float IR is run with only that weight replaced by its
dequantized value (the exact value the elm op's reference kernel computes), then restored. Large entries are
the layers to keep at more bits with a config override.
"""

from __future__ import annotations

import torch

from ..frontend import capture
from ..ir.ops import dequantize_blockwise, dequantize_palettized
from ..ir.quant_math import kmeans_palettize, quantize_blockwise
from .cleanup import Cleanup
from .fuse_rmsnorm import FuseRMSNorm
from .manager import PassManager, check_tokens, compare_logits
from .quant_config import QuantConfig, WeightQuant
from .weight_quant import module_name, weight_uses


def dequantized(w: torch.Tensor, q: WeightQuant) -> torch.Tensor:
    if q.kind == "linear":
        block = q.block_for(w.shape[1])
        return dequantize_blockwise(*quantize_blockwise(w, q.bits, block), block)
    group = q.group_size or w.shape[0]
    return dequantize_palettized(*kmeans_palettize(w, q.bits, group), group)


def sensitivity_table(model, quant: QuantConfig, log=None) -> list[dict]:
    ir = capture(model)
    PassManager([Cleanup(), FuseRMSNorm()]).run(ir)
    tokens = check_tokens(ir.cfg.vocab_size, min(24, ir.context))
    ir.reset_cache()
    reference = ir.logits(tokens)
    rows = []
    if log:
        log("measuring per-layer sensitivity (one weight quantized at a time) ...")
    for target, kinds in weight_uses(ir.gm).items():
        name = module_name(target, kinds)
        q = quant.for_module(name)
        if q.kind == "none":
            continue
        param = ir.gm.get_parameter(target)
        original = param.data
        param.data = dequantized(original, q).to(original.dtype)
        ir.reset_cache()
        err, top1 = compare_logits(reference, ir.logits(tokens))
        rel = ((param.data - original).norm() / original.norm()).item()
        param.data = original
        rows.append({"module": name, "mode": q.mode, "weight_rel_err": rel, "max_abs_logit_err": err, "top1": top1})
    return rows


def print_sensitivity(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="per-layer sensitivity (only this weight quantized)")
    for col in ("module", "mode", "weight rel err", "max abs logit err", "top-1"):
        t.add_column(col)
    for r in sorted(rows, key=lambda r: -r["max_abs_logit_err"]):
        t.add_row(r["module"], r["mode"], f"{r['weight_rel_err']:.4f}", f"{r['max_abs_logit_err']:.4g}", f"{r['top1']:.3f}")
    Console().print(t)
