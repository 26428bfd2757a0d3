"""Linear-algebra ops (targets/coreml/mil/ops_linear.py), one op per case, against numpy or torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .mil_models import CONVERTER_WARNINGS, X_238, check_op_case, op_case, torch_ref

mb = pytest.importorskip("coremltools.converters.mil").Builder

pytestmark = CONVERTER_WARNINGS

EINSUM_Y = np.linspace(-1, 1, 8 * 3 * 5, dtype=np.float32).reshape(8, 3, 5)
CONV_W = np.linspace(-1, 1, 4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3)

OP_CASES = [
    op_case("einsum", "einsum", {"x": X_238}, lambda x: mb.einsum(values=(x, mb.const(val=EINSUM_Y)),
                                                                   equation="chw,whu->chu"),
            lambda x: np.einsum("chw,whu->chu", x, EINSUM_Y)),
    op_case("matmul_transpose_y", "matmul", {"x": X_238}, lambda x: mb.matmul(x=x, y=x, transpose_y=True),
            lambda x: x @ x.transpose(0, 2, 1)),
    op_case("conv1d_same", "conv", {"x": X_238}, lambda x: mb.conv(x=x, weight=CONV_W, pad_type="same"),
            torch_ref(lambda x: torch.nn.functional.conv1d(x, torch.from_numpy(CONV_W), padding="same"))),
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.name)
def test_linear_op_matches_reference(op_runner, case):
    check_op_case(op_runner, case)
