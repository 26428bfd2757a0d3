"""Tensor layout, slicing and construction ops (targets/coreml/mil/ops_tensor.py), one op per case, against
numpy or torch: negative indices and strides, masks, flexible output shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .mil_models import (
    CONVERTER_WARNINGS,
    IDX_23,
    IDX_234,
    TOL_RANK4,
    X_238,
    X_256,
    X_2436,
    check_op_case,
    op_case,
    torch_ref,
)

mb = pytest.importorskip("coremltools.converters.mil").Builder

pytestmark = CONVERTER_WARNINGS

_BAND = np.tril(np.ones((3, 8), dtype=bool)) & ~np.tril(np.ones((3, 8), dtype=bool), -2)  # lower=1, upper=0


def _space_to_depth_tf_order(x, b):
    """out[n, (i*b + j)*C + c, h, w] = x[n, c, h*b + i, w*b + j]: TensorFlow's order, which coremltools' TF
    frontend assumes for MIL space_to_depth (torch's pixel_unshuffle lowers to a different MIL op)."""
    n, c, h, w = x.shape
    out = np.empty((n, c * b * b, h // b, w // b), x.dtype)
    for i in range(b):
        for j in range(b):
            out[:, (i * b + j) * c : (i * b + j + 1) * c] = x[:, :, i::b, j::b]
    return out


X_NCHW = X_2436.reshape(2, 3, 4, 6)


def _slice_update_ref(x, update):
    out = x.copy()
    out[:, 1:5:2, 1:4] = update
    return out


OP_CASES = [
    op_case("band_part", "band_part", {"x": X_238}, lambda x: mb.band_part(x=x, lower=1, upper=0),
            lambda x: np.where(_BAND, x, 0)),
    op_case("cumsum_exclusive_reverse", "cumsum", {"x": X_238},
            lambda x: mb.cumsum(x=x, axis=2, exclusive=True, reverse=True),
            lambda x: np.flip(np.cumsum(np.flip(x, 2), 2), 2) - x),
    op_case("topk", "topk", {"x": X_238}, lambda x: mb.topk(x=x, k=3, axis=-1, ascending=False),
            torch_ref(lambda x: tuple(torch.topk(x, 3, dim=-1)))),
    op_case("pad_reflect", "pad", {"x": X_238}, lambda x: mb.pad(x=x, pad=[1, 2], mode="reflect"),
            lambda x: np.pad(x, [(0, 0), (0, 0), (1, 2)], mode="reflect")),
    op_case("select", "select greater", {"x": X_238, "b": X_238 * 0.1},
            lambda x, b: mb.select(cond=mb.greater(x=x, y=0.0), a=x, b=b), lambda x, b: np.where(x > 0, x, b)),
    op_case("split", "split", {"x": X_238}, lambda x: mb.split(x=x, num_splits=2, axis=2),
            lambda x: (x[..., :4], x[..., 4:])),
    op_case("concat_interleave", "concat", {"a": X_238[..., :4], "b": X_238[..., 4:]},
            lambda a, b: mb.concat(values=(a, b), axis=0, interleave=True),
            lambda a, b: np.stack([a, b], axis=1).reshape(4, 3, 4)),
    op_case("tile", "tile", {"x": X_238}, lambda x: mb.tile(x=x, reps=[1, 2, 1]), lambda x: np.tile(x, (1, 2, 1))),
    op_case("range_1d_runtime_end", "range_1d reduce_argmax", {"idx": IDX_234.reshape(-1)},
            lambda idx: mb.range_1d(end=mb.reduce_argmax(x=idx, axis=0), start=0, step=1),
            lambda idx: np.arange(int(idx.argmax()))),
    op_case("slice_by_index_negative_stride", "slice_by_index", {"x": X_256},
            lambda x: mb.slice_by_index(x=x, begin=[1, -1, 0], end=[2, 0, 6], stride=[1, -2, 2],
                                        end_mask=[False, True, False]),
            lambda x: x[1:2, -1::-2, 0:6:2]),
    op_case("slice_by_index_squeeze_mask", "slice_by_index", {"idx": IDX_23},
            lambda idx: mb.slice_by_index(x=idx, begin=[0, 0], end=[1, 3], squeeze_mask=[True, False]),
            lambda idx: idx[0]),
    op_case("slice_update_stride", "slice_update", {"x": X_256, "update": np.full((2, 2, 3), -3.0, np.float32)},
            lambda x, update: mb.slice_update(x=x, update=update, begin=[0, 1, 1], end=[2, 5, 4], stride=[1, 2, 1]),
            _slice_update_ref),
    op_case("slice_by_size", "slice_by_size", {"x": X_256}, lambda x: mb.slice_by_size(x=x, begin=[0, 2, 1],
                                                                                        size=[-1, 2, 3]),
            lambda x: x[:, 2:4, 1:4]),
    op_case("expand_dims", "expand_dims", {"x": X_256}, lambda x: mb.expand_dims(x=x, axes=[0, -1]),
            lambda x: x[None, ..., None]),
    op_case("reshape_zero_copies_dim", "reshape", {"x": X_256}, lambda x: mb.reshape(x=x, shape=[2, 1, 0, 0]),
            lambda x: x[:, None]),
    op_case("squeeze", "squeeze", {"x": X_256[:, None]}, lambda x: mb.squeeze(x=x, axes=[1]), lambda x: x[:, 0]),
    op_case("one_hot", "one_hot", {"ind": np.abs(IDX_23[0])},
            lambda ind: mb.one_hot(indices=ind, one_hot_vector_size=6, axis=0, on_value=2.0, off_value=-1.0),
            lambda ind: np.where(np.arange(6)[:, None] == ind[None, :], 2.0, -1.0)),
    op_case("argsort", "argsort", {"x": X_256}, lambda x: mb.argsort(x=x, axis=1, ascending=True),
            lambda x: np.argsort(x, axis=1, kind="stable")),
    op_case("reverse", "reverse", {"x": X_256}, lambda x: mb.reverse(x=x, axes=[0, 2]), lambda x: x[::-1, :, ::-1]),
    op_case("stack", "stack", {"x": X_256}, lambda x: mb.stack(values=(x, x), axis=1),
            lambda x: np.stack([x, x], axis=1)),
    op_case("sliding_windows", "sliding_windows", {"x": X_256},
            lambda x: mb.sliding_windows(x=x, axis=1, size=2, stride=2),
            lambda x: np.stack([x[:, 0:2], x[:, 2:4]], axis=1)),
    op_case("transpose", "transpose", {"x": X_256}, lambda x: mb.transpose(x=x, perm=[2, 0, 1]),
            lambda x: x.transpose(2, 0, 1)),
    op_case("non_zero", "non_zero", {"x": np.where(X_256 > 1.0, X_256, 0)}, lambda x: mb.non_zero(x=x),
            np.argwhere),
    op_case("fill_runtime_shape", "fill", {"shape": np.array([2, 6], np.int32)},
            lambda shape: mb.fill(shape=shape, value=7.0), lambda shape: np.full(shape, 7.0, np.float32)),
    op_case("flatten2d", "flatten2d", {"x": X_2436}, lambda x: mb.flatten2d(x=x, axis=2),
            lambda x: x.reshape(8, 18), TOL_RANK4),
    op_case("pixel_shuffle", "pixel_shuffle", {"x": X_2436.reshape(2, 4, 6, 3)},
            lambda x: mb.pixel_shuffle(x=x, upscale_factor=2),
            torch_ref(lambda x: torch.nn.functional.pixel_shuffle(x, 2)), TOL_RANK4),
    op_case("space_to_depth", "space_to_depth", {"x": X_NCHW}, lambda x: mb.space_to_depth(x=x, block_size=2),
            lambda x: _space_to_depth_tf_order(x, 2), TOL_RANK4),
    # depth_to_space undoes space_to_depth: fed the reference space_to_depth of X_NCHW, it gives X_NCHW back.
    op_case("depth_to_space", "depth_to_space", {"x": _space_to_depth_tf_order(X_NCHW, 2)},
            lambda x: mb.depth_to_space(x=x, block_size=2), lambda x: X_NCHW, TOL_RANK4),
    op_case("fill_like", "fill_like", {"x": X_2436}, lambda x: mb.fill_like(ref_tensor=x, value=3.5),
            lambda x: np.full(x.shape, 3.5), TOL_RANK4),
    op_case("shape", "shape", {"x": X_2436}, lambda x: mb.shape(x=x), lambda x: np.array(x.shape), TOL_RANK4),
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.name)
def test_tensor_op_matches_reference(op_runner, case):
    check_op_case(op_runner, case)
