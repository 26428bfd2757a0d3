"""Gather/scatter ops (targets/coreml/mil/ops_scatter_gather.py), one op per case, against numpy or torch:
negative indices, batch dims, index tensors and accumulating modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .mil_models import CONVERTER_WARNINGS, IDX_23, IDX_234, X_238, X_256, check_op_case, op_case

mb = pytest.importorskip("coremltools.converters.mil").Builder

pytestmark = CONVERTER_WARNINGS

ROWS = IDX_23[0]  # [0, -1, 3]: indices into the last axis of X_256, one negative
GATHER_ND_IDX = np.array([[0, 4], [1, -1]], np.int32)
SCATTER_ND_IDX = np.array([[1, 0], [0, 2]], np.int32)


def _torch_axis_ref(fn):
    """torch reference for *_along_axis ops: indices in [-8, 8) made non-negative along the last axis (size 8)."""

    def ref(x, idx, *rest):
        ti = torch.from_numpy(np.where(idx < 0, idx + 8, idx).astype(np.int64))
        return fn(torch.from_numpy(x), ti, *map(torch.from_numpy, rest)).numpy()

    return ref


def _scatter_nd_ref(x, updates):
    out = x.copy()
    out[tuple(SCATTER_ND_IDX.T)] = updates
    return out


def _scatter_add_ref(x, rows, updates):
    out = x.copy()
    for k, r in enumerate(rows):
        out[:, :, r] += updates[:, :, k]
    return out


OP_CASES = [
    op_case("gather_along_axis", "gather_along_axis", {"x": X_238, "idx": IDX_234},
            lambda x, idx: mb.gather_along_axis(x=x, indices=idx, axis=2),
            _torch_axis_ref(lambda t, ti: torch.gather(t, 2, ti))),
    op_case("scatter_along_axis_add", "scatter_along_axis",
            {"x": X_238, "idx": IDX_234, "updates": X_238[..., :4] * 10},
            lambda x, idx, updates: mb.scatter_along_axis(data=x, indices=idx, updates=updates, axis=2, mode="add"),
            _torch_axis_ref(lambda t, ti, u: t.scatter_add(2, ti, u))),
    op_case("gather_negative_indices", "gather", {"x": X_256, "rows": ROWS},
            lambda x, rows: mb.gather(x=x, indices=rows, axis=-1), lambda x, rows: x[:, :, rows]),
    op_case("gather_batch_dims", "gather", {"x": X_256, "idx": IDX_23},
            lambda x, idx: mb.gather(x=x, indices=idx, axis=1, batch_dims=1),
            lambda x, idx: np.stack([x[b][idx[b] % 5] for b in range(2)])),
    op_case("gather_nd", "gather_nd", {"x": X_256}, lambda x: mb.gather_nd(x=x, indices=mb.const(val=GATHER_ND_IDX)),
            lambda x: np.stack([x[0, 4], x[1, -1]])),
    op_case("scatter_nd_update", "scatter_nd", {"x": X_256, "updates": np.full((2, 6), 7.0, np.float32)},
            lambda x, updates: mb.scatter_nd(data=x, indices=mb.const(val=SCATTER_ND_IDX), updates=updates,
                                             mode="update"),
            _scatter_nd_ref),
    op_case("scatter_add_negative_indices", "scatter",
            {"x": X_256, "rows": ROWS, "updates": np.ones((2, 5, 3), np.float32)},
            lambda x, rows, updates: mb.scatter(data=x, indices=rows, updates=updates, axis=2, mode="add"),
            _scatter_add_ref),
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.name)
def test_scatter_gather_op_matches_reference(op_runner, case):
    check_op_case(op_runner, case)
