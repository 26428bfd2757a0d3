"""palettize: k-means weight palettization (2, 3, 4, 6 or 8 bits), per-grouped-channel or per-tensor LUTs.

Before:  %y = aten.linear.default(%x, %W)
After:   %y = elm.palettized_linear(%x, %lut, %indices, group_size, nbits)
with %lut fp16 [out/group_size, 2^nbits] k-means centroids and %indices uint8 [out, in]; the embedding likewise
through elm.palettized_embedding, sharing %lut/%indices with a tied head. Core ML lowers this to
constexpr_lut_to_dense with exactly these LUTs and indices.
"""

from __future__ import annotations

import torch

from ..ir import ops  # noqa: F401  (registers torch.ops.elm before the class body reads it)
from ..ir.quant_math import kmeans_palettize
from .weight_quant import WeightQuantPass, check_divisible


class Palettize(WeightQuantPass):
    name = "common::palettize"
    kind = "palettize"
    linear_op = torch.ops.elm.palettized_linear.default
    embedding_op = torch.ops.elm.palettized_embedding.default
    tensor_names = ("lut", "indices")
    codes_name = "indices"

    def encode(self, w, q, where):
        group = q.group_size or w.shape[0]
        check_divisible(w.shape[0], group, "out_features", where, "group_size")
        lut, indices = kmeans_palettize(w, q.bits, group)
        return [lut, indices], [group, q.bits]
