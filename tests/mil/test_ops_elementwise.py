"""Elementwise ops (targets/coreml/mil/ops_elementwise.py), one op per case, against torch or numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .mil_models import CONVERTER_WARNINGS, TOL_RANK4, X_238, X_2436, check_op_case, op_case, torch_ref

mb = pytest.importorskip("coremltools.converters.mil").Builder

pytestmark = CONVERTER_WARNINGS

POS = np.abs(X_2436) + 0.5  # inputs for ops defined on positive numbers

OP_CASES = [
    op_case("erf", "erf", {"x": X_238}, lambda x: mb.erf(x=x), torch_ref(torch.erf)),
    op_case("clip", "clip", {"x": X_238}, lambda x: mb.clip(x=x, alpha=-0.5, beta=0.5),
            lambda x: np.clip(x, -0.5, 0.5)),
    op_case("mul", "mul", {"x": X_238}, lambda x: mb.mul(x=x, y=10.0), lambda x: x * 10),
    op_case("abs", "abs", {"x": X_2436}, lambda x: mb.abs(x=x), np.abs, TOL_RANK4),
    op_case("add", "add", {"x": X_2436}, lambda x: mb.add(x=x, y=0.5), lambda x: x + 0.5, TOL_RANK4),
    op_case("greater", "greater cast", {"x": X_2436}, lambda x: mb.cast(x=mb.greater(x=x, y=1.0), dtype="int32"),
            lambda x: (x > 1.0).astype(np.int32), TOL_RANK4),
    op_case("inverse", "inverse", {"pos": POS}, lambda pos: mb.inverse(x=pos),
            torch_ref(lambda pos: 1 / (pos + 1e-4)), TOL_RANK4),
    op_case("log", "log", {"pos": POS}, lambda pos: mb.log(x=pos), torch_ref(torch.log), TOL_RANK4),
    op_case("rsqrt", "rsqrt", {"pos": POS}, lambda pos: mb.rsqrt(x=pos),
            torch_ref(lambda pos: torch.rsqrt(pos + 1e-12)), TOL_RANK4),
    op_case("exp2", "exp2", {"x": X_2436}, lambda x: mb.exp2(x=x), torch_ref(torch.exp2), TOL_RANK4),
    op_case("floor_div", "floor_div", {"x": X_2436 * 3}, lambda x: mb.floor_div(x=x, y=2.0),
            torch_ref(lambda x: torch.floor_divide(x, 2.0)), TOL_RANK4),
    op_case("mod", "mod", {"x": X_2436 * 3}, lambda x: mb.mod(x=x, y=2.0),
            torch_ref(lambda x: torch.remainder(x, 2.0)), TOL_RANK4),
    op_case("pow", "pow", {"pos": POS}, lambda pos: mb.pow(x=pos, y=1.5), torch_ref(lambda pos: pos**1.5), TOL_RANK4),
    op_case("sign", "sign", {"x": X_2436}, lambda x: mb.sign(x=x), torch_ref(torch.sign), TOL_RANK4),
    op_case("round", "round", {"x": X_2436 * 3}, lambda x: mb.round(x=x), torch_ref(torch.round), TOL_RANK4),
    op_case("atan", "atan", {"x": X_2436}, lambda x: mb.atan(x=x), torch_ref(torch.atan), TOL_RANK4),
    op_case("cast_fp32_to_int32_truncates", "cast", {"x": X_2436 * 4}, lambda x: mb.cast(x=x, dtype="int32"),
            torch_ref(lambda x: torch.trunc(x).int()), TOL_RANK4),
    op_case("cast_int32_to_fp32", "cast", {"i": np.trunc(X_2436 * 4).astype(np.int32)},
            lambda i: mb.cast(x=i, dtype="fp32"), lambda i: i.astype(np.float32), TOL_RANK4),
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.name)
def test_elementwise_op_matches_reference(op_runner, case):
    check_op_case(op_runner, case)
