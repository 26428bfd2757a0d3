"""Gather/scatter MIL ops (embedding lookups, ``index_put`` lowered to ``scatter_nd``, ...).

Indices may be negative (counted from the end), as the iOS17+ ops allow; out-of-range indices raise instead of
silently reading another row, so a wrong position input shows up as an error in validation.
"""

from __future__ import annotations

import numpy as np

from .ops_common import as_int, as_str, fix_negative_indices, norm_axis
from .optable import register

_ACCUMULATE = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.true_divide,
    "max": np.maximum,
    "min": np.minimum,
}


@register("gather")
def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    x = np.asarray(x)
    ax = norm_axis(as_int(axis), x.ndim)
    b = as_int(batch_dims)
    idx = fix_negative_indices(indices, x.shape[ax])
    if b == 0:
        return np.take(x, idx, axis=ax)
    batch = x.shape[:b]
    xf = x.reshape((-1,) + x.shape[b:])
    idf = idx.reshape((-1,) + idx.shape[b:])
    parts = [np.take(xf[i], idf[i], axis=ax - b) for i in range(xf.shape[0])]
    out = np.stack(parts, axis=0)
    return out.reshape(batch + out.shape[1:])


@register("gather_along_axis")
def gather_along_axis(x, indices, axis=0, validate_indices=False):
    x = np.asarray(x)
    ax = norm_axis(as_int(axis), x.ndim)
    return np.take_along_axis(x, fix_negative_indices(indices, x.shape[ax]), axis=ax)


def _nd_index(x_shape, indices):
    idx = np.asarray(indices).astype(np.int64)
    k = idx.shape[-1]
    cols = []
    for d in range(k):
        cols.append(fix_negative_indices(idx[..., d], x_shape[d]))
    return tuple(cols)


@register("gather_nd")
def gather_nd(x, indices, batch_dims=0, validate_indices=False):
    x = np.asarray(x)
    b = as_int(batch_dims)
    if b == 0:
        return x[_nd_index(x.shape, indices)]
    idx = np.asarray(indices)
    batch = x.shape[:b]
    xf = x.reshape((-1,) + x.shape[b:])
    idf = idx.reshape((-1,) + idx.shape[b:])
    parts = [xf[i][_nd_index(xf.shape[1:], idf[i])] for i in range(xf.shape[0])]
    out = np.stack(parts, axis=0)
    return out.reshape(batch + out.shape[1:])


def _apply(out, index, updates, mode):
    mode = as_str(mode)
    if mode == "update":
        out[index] = updates
    elif mode in _ACCUMULATE:
        _ACCUMULATE[mode].at(out, index, updates)
    else:
        raise ValueError(f"unknown scatter mode {mode!r}")
    return out


def _working_copy(data):
    data = np.asarray(data)
    return data.astype(np.float32) if data.dtype == np.float16 else data.copy()


@register("scatter")
def scatter(data, indices, updates, axis=0, mode="add", validate_indices=False):
    out = _working_copy(data)
    ax = norm_axis(as_int(axis), out.ndim)
    idx = fix_negative_indices(indices, out.shape[ax]).reshape(-1)
    moved = np.moveaxis(out, ax, 0)  # a view: writes go to `out`
    upd = np.moveaxis(np.asarray(updates), ax, 0)
    _apply(moved, (idx,), upd.astype(out.dtype, copy=False), mode)
    return out


@register("scatter_along_axis")
def scatter_along_axis(data, indices, updates, axis=0, mode="add", validate_indices=False):
    out = _working_copy(data)
    ax = norm_axis(as_int(axis), out.ndim)
    idx = fix_negative_indices(indices, out.shape[ax])
    grids = list(np.indices(idx.shape, sparse=True))
    grids[ax] = idx
    _apply(out, tuple(grids), np.asarray(updates).astype(out.dtype, copy=False), mode)
    return out


@register("scatter_nd")
def scatter_nd(data, indices, updates, mode="add", validate_indices=False):
    out = _working_copy(data)
    index = _nd_index(out.shape, indices)
    _apply(out, index, np.asarray(updates).astype(out.dtype, copy=False), mode)
    return out
