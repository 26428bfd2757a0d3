"""quantize_linear: int4 / int8 symmetric weights over the full signed range, per-block or per-channel.

Before:  %y = aten.linear.default(%x, %W)                      %e = aten.embedding.default(%W, %ids)
After:   %y = elm.quantized_linear(%x, %q, %s, block, bits)    %e = elm.quantized_embedding(%q, %s, %ids, block, bits)
with %q int8 codes in [-2^(b-1), 2^(b-1)-1] and %s fp16 scales [out, in/block] (elmexport/ir/quant_math.py).
"""

from __future__ import annotations

import torch

from ..ir import ops  # noqa: F401  (registers torch.ops.elm before the class body reads it)
from ..ir.quant_math import quantize_blockwise
from .weight_quant import WeightQuantPass, check_divisible


class QuantizeLinear(WeightQuantPass):
    name = "common::quantize_linear"
    kind = "linear"
    linear_op = torch.ops.elm.quantized_linear.default
    embedding_op = torch.ops.elm.quantized_embedding.default
    tensor_names = ("qweight", "scales")
    codes_name = "qweight"

    def encode(self, w, q, where):
        block = q.block_for(w.shape[1])
        check_divisible(w.shape[1], block, "in_features", where, "block_size")
        qweight, scales = quantize_blockwise(w, q.bits, block, self.config.positive_scales)
        return [qweight, scales], [block, q.bits]
