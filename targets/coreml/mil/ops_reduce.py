"""Reduction MIL ops (reduce_sum/mean/max/..., argmax/argmin), accumulating fp16 inputs in float32."""

from __future__ import annotations

import numpy as np

from .dtypes import STRING_TO_NUMPY
from .ops_common import as_str, f32, fwide, norm_axes, norm_axis
from .optable import register


def _axes(axes, rank):
    return None if axes is None else norm_axes(axes, rank)


def _reduction(fn, widen=f32):
    def impl(x, axes=None, keep_dims=False):
        x = widen(x)
        return fn(x, axis=_axes(axes, x.ndim), keepdims=bool(keep_dims))

    return impl


register("reduce_sum")(_reduction(np.sum, fwide))
register("reduce_mean")(_reduction(np.mean))
register("reduce_max")(_reduction(np.max, fwide))
register("reduce_min")(_reduction(np.min, fwide))
register("reduce_prod")(_reduction(np.prod, fwide))
register("reduce_sum_square")(_reduction(lambda x, axis, keepdims: np.sum(x * x, axis=axis, keepdims=keepdims)))
register("reduce_l1_norm")(_reduction(lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims)))
register("reduce_l2_norm")(
    _reduction(lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims)))
)
register("reduce_log_sum")(_reduction(lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims))))


def _logsumexp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return out


register("reduce_log_sum_exp")(_reduction(_logsumexp))


def _arg(fn):
    def impl(x, axis=-1, keep_dims=False, output_dtype="int32"):
        x = np.asarray(x)
        ax = norm_axis(axis, x.ndim)
        out = fn(x, axis=ax)  # ties -> first index, like torch.argmax on CPU
        if keep_dims:
            out = np.expand_dims(out, ax)
        return out.astype(STRING_TO_NUMPY[as_str(output_dtype)])

    return impl


register("reduce_argmax")(_arg(np.argmax))
register("reduce_argmin")(_arg(np.argmin))
