"""Normalisation MIL ops (layer_norm, l2_norm, batch_norm, instance_norm), computed in float32."""

from __future__ import annotations

import numpy as np

from .ops_common import f32, norm_axes
from .optable import register


def _param_shape(p, x, axes):
    """Reshape a gamma/beta of the normalised dims' shape so it broadcasts against x."""
    p = f32(p)
    if p.ndim == len(axes) and axes == tuple(range(x.ndim - len(axes), x.ndim)):
        return p
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    return p.reshape(shape)


@register("layer_norm")
def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    x = f32(x)
    ax = tuple(range(x.ndim)) if axes is None else norm_axes(axes, x.ndim)
    mean = np.mean(x, axis=ax, keepdims=True)
    var = np.mean(np.square(x - mean), axis=ax, keepdims=True)
    out = (x - mean) / np.sqrt(var + np.float32(epsilon))
    if gamma is not None:
        out = out * _param_shape(gamma, x, ax)
    if beta is not None:
        out = out + _param_shape(beta, x, ax)
    return out


@register("l2_norm")
def l2_norm(x, epsilon=1e-6):
    """x / sqrt(sum(x^2) + eps) over the last three dims (leading dims are batch), per the MIL spec."""
    x = f32(x)
    ax = tuple(range(max(x.ndim - 3, 0), x.ndim))
    return x / np.sqrt(np.sum(x * x, axis=ax, keepdims=True) + np.float32(epsilon))


def _channel(p, x):
    return f32(p).reshape((1, -1) + (1,) * (x.ndim - 2))


@register("batch_norm")
def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    x = f32(x)
    out = (x - _channel(mean, x)) / np.sqrt(_channel(variance, x) + np.float32(epsilon))
    if gamma is not None:
        out = out * _channel(gamma, x)
    if beta is not None:
        out = out + _channel(beta, x)
    return out


@register("instance_norm")
def instance_norm(x, gamma=None, beta=None, epsilon=1e-5):
    x = f32(x)
    ax = tuple(range(2, x.ndim))
    mean = np.mean(x, axis=ax, keepdims=True)
    var = np.mean(np.square(x - mean), axis=ax, keepdims=True)
    out = (x - mean) / np.sqrt(var + np.float32(epsilon))
    if gamma is not None:
        out = out * _channel(gamma, x)
    if beta is not None:
        out = out + _channel(beta, x)
    return out
