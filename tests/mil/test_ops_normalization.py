"""Normalization ops (targets/coreml/mil/ops_normalization.py), one op per case, against numpy or torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .mil_models import CONVERTER_WARNINGS, TOL_RANK4, X_238, X_256, X_2436, check_op_case, op_case, torch_ref

mb = pytest.importorskip("coremltools.converters.mil").Builder

pytestmark = CONVERTER_WARNINGS

GAMMA = np.linspace(0.5, 1.5, 4, dtype=np.float32)  # per channel of X_2436
BETA = np.linspace(-0.2, 0.2, 4, dtype=np.float32)


def _layer_norm_02(x):
    mean = x.mean(axis=(0, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(0, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5)


def _torch_norm(fn):
    """torch reference that also gets GAMMA and BETA as tensors."""
    return torch_ref(lambda x: fn(x, *map(torch.from_numpy, (GAMMA, BETA))))


OP_CASES = [
    op_case("l2_norm", "l2_norm", {"x": X_238}, lambda x: mb.l2_norm(x=x, epsilon=1e-6),
            lambda x: x / np.sqrt((x.reshape(-1) ** 2).sum() + 1e-6)),
    op_case("layer_norm_axes_0_2", "layer_norm", {"x": X_256}, lambda x: mb.layer_norm(x=x, axes=[0, 2], epsilon=1e-5),
            _layer_norm_02),
    op_case("batch_norm", "batch_norm", {"x": X_2436},
            lambda x: mb.batch_norm(x=x, mean=BETA, variance=GAMMA, gamma=GAMMA, beta=BETA, epsilon=1e-3),
            _torch_norm(lambda x, g, b: F.batch_norm(x, b, g, g, b, training=False, eps=1e-3)), TOL_RANK4),
    op_case("instance_norm", "instance_norm", {"x": X_2436},
            lambda x: mb.instance_norm(x=x, gamma=GAMMA, beta=BETA, epsilon=1e-5),
            _torch_norm(lambda x, g, b: F.instance_norm(x, weight=g, bias=b, eps=1e-5)), TOL_RANK4),
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.name)
def test_normalization_op_matches_reference(op_runner, case):
    check_op_case(op_runner, case)
