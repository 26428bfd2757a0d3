"""Reductions (targets/coreml/mil/ops_reduce.py), one op per case, against numpy or torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .mil_models import CONVERTER_WARNINGS, TOL_RANK4, X_238, X_2436, check_op_case, op_case, torch_ref

mb = pytest.importorskip("coremltools.converters.mil").Builder

pytestmark = CONVERTER_WARNINGS

POS = np.abs(X_2436) + 0.5  # inputs for reductions defined on positive numbers

OP_CASES = [
    op_case("reduce_log_sum_exp", "reduce_log_sum_exp", {"x": X_238},
            lambda x: mb.reduce_log_sum_exp(x=x, axes=[1], keep_dims=False),
            torch_ref(lambda x: torch.logsumexp(x, dim=1))),
    op_case("reduce_sum_square", "reduce_sum_square", {"x": X_238},
            lambda x: mb.reduce_sum_square(x=x, axes=[-1], keep_dims=True), lambda x: (x**2).sum(-1, keepdims=True)),
    op_case("reduce_argmax", "reduce_argmax", {"x": X_238}, lambda x: mb.reduce_argmax(x=x, axis=-1, keep_dims=False),
            lambda x: x.argmax(-1)),
    op_case("reduce_prod", "reduce_prod", {"pos": POS}, lambda pos: mb.reduce_prod(x=pos, axes=[2], keep_dims=False),
            torch_ref(lambda pos: pos.prod(2)), TOL_RANK4),
    op_case("reduce_min", "reduce_min", {"x": X_2436}, lambda x: mb.reduce_min(x=x, axes=[1, 3], keep_dims=True),
            torch_ref(lambda x: x.amin(dim=(1, 3), keepdim=True)), TOL_RANK4),
    op_case("reduce_l1_norm", "reduce_l1_norm", {"x": X_2436}, lambda x: mb.reduce_l1_norm(x=x, axes=[-1]),
            torch_ref(lambda x: x.abs().sum(-1)), TOL_RANK4),
    op_case("reduce_l2_norm", "reduce_l2_norm", {"x": X_2436}, lambda x: mb.reduce_l2_norm(x=x, axes=[-1]),
            torch_ref(lambda x: x.norm(dim=-1)), TOL_RANK4),
    op_case("reduce_log_sum", "reduce_log_sum", {"pos": POS}, lambda pos: mb.reduce_log_sum(x=pos, axes=[-1]),
            torch_ref(lambda pos: pos.sum(-1).log()), TOL_RANK4),
    op_case("reduce_argmin", "reduce_argmin", {"x": X_2436}, lambda x: mb.reduce_argmin(x=x, axis=1, keep_dims=True),
            torch_ref(lambda x: x.argmin(1, keepdim=True)), TOL_RANK4),
    op_case("reduce_sum_all_axes", "reduce_sum", {"x": X_2436}, lambda x: mb.reduce_sum(x=x),
            torch_ref(lambda x: x.sum()), TOL_RANK4),
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.name)
def test_reduce_op_matches_reference(op_runner, case):
    check_op_case(op_runner, case)
