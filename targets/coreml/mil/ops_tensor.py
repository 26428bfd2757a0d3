"""Shape/layout MIL ops: reshape, transpose, concat, split, slicing (incl. ``slice_update``), fill, range, ...

These move data without arithmetic, so they keep the input dtype (fp16 stays fp16).
"""

from __future__ import annotations

import numpy as np

from .ops_common import as_bools, as_int, as_ints, as_str, fwide, norm_axes, norm_axis
from .optable import register


@register("identity")
def identity(x):
    return x


@register("reshape")
def reshape(x, shape):
    x = np.asarray(x)
    target = as_ints(shape)
    k, r = len(target), x.ndim
    out = []
    for i, d in enumerate(target):
        if d == 0:
            # iOS17 rule: a 0 copies the input dim at the same distance from the right (1 if there is none).
            j = r - (k - i)
            out.append(x.shape[j] if 0 <= j < r else 1)
        else:
            out.append(d)
    return x.reshape(out)


@register("reshape_like")
def reshape_like(x, ref_tensors, begins, ends, end_masks):
    shape = []
    for ref, b, e, m in zip(ref_tensors, begins, ends, end_masks):
        s = np.shape(ref)
        shape.extend(s[as_int(b) :] if bool(np.asarray(m).reshape(-1)[0]) else s[as_int(b) : as_int(e)])
    return np.asarray(x).reshape(shape)


@register("flatten2d")
def flatten2d(x, axis=1):
    x = np.asarray(x)
    ax = as_int(axis)
    ax = ax + x.ndim if ax < 0 else ax
    return x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1)


@register("transpose")
def transpose(x, perm):
    x = np.asarray(x)
    return np.transpose(x, [norm_axis(p, x.ndim) for p in as_ints(perm)])


@register("expand_dims")
def expand_dims(x, axes):
    x = np.asarray(x)
    ax = as_ints(axes)
    out_rank = x.ndim + len(ax)
    return np.expand_dims(x, tuple(sorted(a + out_rank if a < 0 else a for a in ax)))


@register("squeeze")
def squeeze(x, axes=None):
    x = np.asarray(x)
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=norm_axes(axes, x.ndim))


@register("concat")
def concat(values, axis, interleave=False):
    arrays = [np.asarray(v) for v in values]
    rank = max(1, max(a.ndim for a in arrays))  # scalars concatenate like [1]-shaped tensors
    arrays = [a.reshape((1,) * (rank - a.ndim) + a.shape) if a.ndim < rank else a for a in arrays]
    ax = norm_axis(as_int(axis), rank)
    dtype = np.result_type(*arrays)
    if bool(interleave):
        stacked = np.stack(arrays, axis=ax + 1)
        shape = list(arrays[0].shape)
        shape[ax] *= len(arrays)
        return stacked.reshape(shape).astype(dtype, copy=False)
    return np.concatenate(arrays, axis=ax).astype(dtype, copy=False)


@register("stack")
def stack(values, axis):
    arrays = [np.asarray(v) for v in values]
    return np.stack(arrays, axis=as_int(axis))


@register("split")
def split(x, axis, num_splits=None, split_sizes=None):
    x = np.asarray(x)
    ax = norm_axis(as_int(axis), x.ndim)
    if split_sizes is not None:
        bounds = np.cumsum(as_ints(split_sizes))[:-1]
        return tuple(np.split(x, bounds, axis=ax))
    return tuple(np.split(x, as_int(num_splits), axis=ax))


@register("tile")
def tile(x, reps):
    return np.tile(np.asarray(x), as_ints(reps))


def _slices(shape, begin, end, stride, begin_mask, end_mask, squeeze_mask):
    """Python slices for MIL's slice_by_index/slice_update arguments (same rules as coremltools' reference)."""
    rank = len(shape)
    begin, end = as_ints(begin), as_ints(end)
    stride = as_ints(stride) if stride is not None else [1] * rank
    bm, em, sm = as_bools(begin_mask, rank), as_bools(end_mask, rank), as_bools(squeeze_mask, rank)
    if not (len(begin) == len(end) == len(stride) == rank):
        raise ValueError(f"begin/end/stride lengths {len(begin)}/{len(end)}/{len(stride)} != rank {rank}")
    slices, squeeze_axes = [], []
    for i in range(rank):
        if sm[i]:
            b = begin[i]
            if not -shape[i] <= b < shape[i]:
                raise IndexError(f"squeezed index {b} out of range for dim {i} of size {shape[i]}")
            b = b + shape[i] if b < 0 else b
            slices.append(slice(b, b + 1, 1))
            squeeze_axes.append(i)
        else:
            slices.append(slice(None if bm[i] else begin[i], None if em[i] else end[i], stride[i]))
    return tuple(slices), tuple(squeeze_axes)


@register("slice_by_index")
def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    x = np.asarray(x)
    sl, sq = _slices(x.shape, begin, end, stride, begin_mask, end_mask, squeeze_mask)
    out = x[sl]
    return np.squeeze(out, axis=sq) if sq else out


@register("slice_by_size")
def slice_by_size(x, begin, size):
    x = np.asarray(x)
    sl = []
    for i, (b, s) in enumerate(zip(as_ints(begin), as_ints(size))):
        b = b + x.shape[i] if b < 0 else b
        sl.append(slice(b, None) if s == -1 else slice(b, b + s))
    return x[tuple(sl)]


@register("slice_update")
def slice_update(x, update, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    x = np.asarray(x)
    sl, _ = _slices(x.shape, begin, end, stride, begin_mask, end_mask, squeeze_mask)
    out = x.copy()
    region = out[sl]
    update = np.asarray(update)
    if update.size != region.size:
        raise ValueError(f"update of shape {update.shape} does not fit the slice of shape {region.shape}")
    out[sl] = update.reshape(region.shape)
    return out


@register("fill")
def fill(shape, value=0.0):
    return np.full(as_ints(shape), value)


@register("fill_like")
def fill_like(ref_tensor, value=0.0):
    return np.full(np.shape(ref_tensor), value)


@register("range_1d")
def range_1d(end, start, step):
    return np.arange(np.asarray(start).item(), np.asarray(end).item(), np.asarray(step).item())


@register("shape")
def shape(x):
    return np.array(np.shape(x), dtype=np.int32)


@register("select")
def select(cond, a, b):
    return np.where(np.asarray(cond).astype(bool), a, b)


@register("band_part")
def band_part(x, lower=-1, upper=-1):
    x = np.asarray(x)
    lower, upper = as_int(lower), as_int(upper)
    m, n = x.shape[-2], x.shape[-1]
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    keep = np.ones((m, n), dtype=bool)
    if lower >= 0:
        keep &= (i - j) <= lower
    if upper >= 0:
        keep &= (j - i) <= upper
    return np.where(keep, x, np.zeros((), dtype=x.dtype))


@register("cumsum")
def cumsum(x, axis=0, exclusive=False, reverse=False):
    x = fwide(x)
    ax = norm_axis(as_int(axis), x.ndim)
    if bool(reverse):
        x = np.flip(x, ax)
    out = np.cumsum(x, axis=ax)
    if bool(exclusive):
        out = out - x
    if bool(reverse):
        out = np.flip(out, ax)
    return out


@register("pad")
def pad(x, pad, mode="constant", constant_val=0.0):
    x = np.asarray(x)
    p = as_ints(pad)
    n = len(p) // 2
    widths = [(0, 0)] * (x.ndim - n) + [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    mode = as_str(mode)
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=np.asarray(constant_val).item())
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    raise ValueError(f"unknown pad mode {mode!r}")


@register("one_hot")
def one_hot(indices, one_hot_vector_size, axis=-1, on_value=1, off_value=0):
    idx = np.asarray(indices).astype(np.int64)
    depth = as_int(one_hot_vector_size)
    hot = idx[..., None] == np.arange(depth)
    out = np.where(hot, np.asarray(on_value), np.asarray(off_value))
    ax = as_int(axis)
    rank = idx.ndim + 1
    ax = ax + rank if ax < 0 else ax
    return np.moveaxis(out, -1, ax)


@register("reverse")
def reverse(x, axes=None):
    x = np.asarray(x)
    return np.flip(x) if axes is None else np.flip(x, axis=norm_axes(axes, x.ndim))


@register("reverse_sequence")
def reverse_sequence(x, lengths, seq_axis=0, batch_axis=0):
    x = np.asarray(x)
    out = x.copy()
    sa, ba = norm_axis(as_int(seq_axis), x.ndim), norm_axis(as_int(batch_axis), x.ndim)
    for b, n in enumerate(as_ints(lengths)):
        src = [slice(None)] * x.ndim
        src[ba] = b
        src[sa] = slice(0, n)
        dst = list(src)
        out[tuple(dst)] = np.flip(x[tuple(src)], axis=sa - (1 if ba < sa else 0))
    return out


@register("sliding_windows")
def sliding_windows(x, axis, size, stride=1):
    x = np.asarray(x)
    ax = norm_axis(as_int(axis), x.ndim)
    size, stride = as_int(size), as_int(stride)
    n = (x.shape[ax] - size) // stride + 1
    windows = [np.take(x, range(i * stride, i * stride + size), axis=ax) for i in range(n)]
    return np.stack(windows, axis=ax)


@register("non_zero")
def non_zero(x):
    return np.argwhere(np.asarray(x)).astype(np.int32)


@register("argsort")
def argsort(x, axis=-1, ascending=False):
    x = fwide(x)
    ax = norm_axis(as_int(axis), x.ndim)
    key = x if bool(ascending) else -x
    return np.argsort(key, axis=ax, kind="stable").astype(np.int32)


@register("topk")
def topk(x, k=1, axis=-1, ascending=False, sort=True, return_indices=True, output_indices_dtype="int32"):
    x = np.asarray(x)
    ax = norm_axis(as_int(axis), x.ndim)
    key = fwide(x) if bool(ascending) else -fwide(x)
    order = np.argsort(key, axis=ax, kind="stable")
    kk = as_int(k)
    kk = x.shape[ax] if kk == -1 else kk
    idx = np.take(order, np.arange(kk), axis=ax)
    vals = np.take_along_axis(x, idx, axis=ax)
    if not bool(return_indices):
        return vals
    from .dtypes import STRING_TO_NUMPY  # noqa: PLC0415

    return vals, idx.astype(STRING_TO_NUMPY[as_str(output_indices_dtype)])


@register("space_to_depth")
def space_to_depth(x, block_size):
    x = np.asarray(x)
    b = as_int(block_size)
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


@register("depth_to_space")
def depth_to_space(x, block_size):
    x = np.asarray(x)
    b = as_int(block_size)
    n, c, h, w = x.shape
    y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


@register("pixel_shuffle")
def pixel_shuffle(x, upscale_factor):
    x = np.asarray(x)
    r = as_int(upscale_factor)
    n, c, h, w = x.shape
    y = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (r * r), h * r, w * r)


@register("pixel_unshuffle")
def pixel_unshuffle(x, downscale_factor):
    x = np.asarray(x)
    r = as_int(downscale_factor)
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4)
    return y.reshape(n, c * r * r, h // r, w // r)
