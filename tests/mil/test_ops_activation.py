"""Activation ops (targets/coreml/mil/ops_activation.py), one op per case, against torch's definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .mil_models import CONVERTER_WARNINGS, TOL_RANK4, X_238, X_2436, check_op_case, op_case, torch_ref

mb = pytest.importorskip("coremltools.converters.mil").Builder

pytestmark = CONVERTER_WARNINGS

ALPHA = np.linspace(0.5, 1.5, 4, dtype=np.float32)  # one slope per channel of X_2436

OP_CASES = [
    op_case("gelu_tanh", "gelu", {"x": X_238}, lambda x: mb.gelu(x=x, mode="TANH_APPROXIMATION"),
            torch_ref(lambda x: F.gelu(x, approximate="tanh"))),
    op_case("gelu_exact", "gelu", {"x": X_238}, lambda x: mb.gelu(x=x, mode="EXACT"), torch_ref(F.gelu)),
    op_case("softmax", "softmax", {"x": X_238}, lambda x: mb.softmax(x=x, axis=1),
            torch_ref(lambda x: torch.softmax(x, dim=1))),
    op_case("elu", "elu", {"x": X_2436}, lambda x: mb.elu(x=x, alpha=0.7),
            torch_ref(lambda x: F.elu(x, alpha=0.7)), TOL_RANK4),
    op_case("leaky_relu", "leaky_relu", {"x": X_2436}, lambda x: mb.leaky_relu(x=x, alpha=0.1),
            torch_ref(lambda x: F.leaky_relu(x, 0.1)), TOL_RANK4),
    op_case("prelu", "prelu", {"x": X_2436}, lambda x: mb.prelu(x=x, alpha=ALPHA),
            torch_ref(lambda x: F.prelu(x, torch.from_numpy(ALPHA))), TOL_RANK4),
    op_case("softplus", "softplus", {"x": X_2436}, lambda x: mb.softplus(x=x), torch_ref(F.softplus), TOL_RANK4),
    op_case("softsign", "softsign", {"x": X_2436}, lambda x: mb.softsign(x=x), torch_ref(F.softsign), TOL_RANK4),
    op_case("relu6", "relu6", {"x": X_2436 * 5}, lambda x: mb.relu6(x=x), torch_ref(F.relu6), TOL_RANK4),
    op_case("sigmoid_hard", "sigmoid_hard", {"x": X_2436}, lambda x: mb.sigmoid_hard(x=x, alpha=0.2, beta=0.5),
            torch_ref(lambda x: torch.clamp(0.2 * x + 0.5, 0, 1)), TOL_RANK4),
    op_case("scaled_tanh", "scaled_tanh", {"x": X_2436}, lambda x: mb.scaled_tanh(x=x, alpha=2.0, beta=0.5),
            torch_ref(lambda x: 2.0 * torch.tanh(0.5 * x)), TOL_RANK4),
    op_case("thresholded_relu", "thresholded_relu", {"x": X_2436}, lambda x: mb.thresholded_relu(x=x, alpha=0.3),
            torch_ref(lambda x: torch.where(x > 0.3, x, torch.zeros(()))), TOL_RANK4),
    op_case("silu", "silu", {"x": X_2436}, lambda x: mb.silu(x=x), torch_ref(F.silu), TOL_RANK4),
    op_case("sigmoid", "sigmoid", {"x": X_2436}, lambda x: mb.sigmoid(x=x), torch_ref(torch.sigmoid), TOL_RANK4),
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.name)
def test_activation_op_matches_torch(op_runner, case):
    check_op_case(op_runner, case)
