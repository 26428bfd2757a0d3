"""Activation MIL ops (relu, silu, gelu, softmax, ...), computed in float32 for fp16 inputs."""

from __future__ import annotations

import numpy as np

from .ops_common import as_str, f32, norm_axis
from .ops_elementwise import erf
from .optable import register


def _sigmoid(x):
    # Split by sign so exp never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


@register("relu")
def relu(x):
    return np.maximum(f32(x), 0)


@register("relu6")
def relu6(x):
    return np.clip(f32(x), 0, 6)


@register("sigmoid")
def sigmoid(x):
    return _sigmoid(f32(x))


@register("silu")
def silu(x):
    x = f32(x)
    return x * _sigmoid(x)


@register("gelu")
def gelu(x, mode="EXACT"):
    x = f32(x)
    mode = as_str(mode)
    if mode == "EXACT":
        return (0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))).astype(np.float32)
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(1.702 * x)
    raise ValueError(f"unknown gelu mode {mode!r}")


@register("softplus")
def softplus(x):
    x = f32(x)
    return np.logaddexp(0, x)


@register("softsign")
def softsign(x):
    x = f32(x)
    return x / (1 + np.abs(x))


@register("elu")
def elu(x, alpha=1.0):
    x = f32(x)
    return np.where(x > 0, x, np.float32(alpha) * np.expm1(np.minimum(x, 0)))


@register("leaky_relu")
def leaky_relu(x, alpha=0.01):
    x = f32(x)
    return np.where(x >= 0, x, np.float32(alpha) * x)


def _per_channel(alpha, x):
    """Broadcast a per-channel [C] parameter over x's second dimension (MIL's channel axis)."""
    a = f32(alpha)
    if a.ndim == 1 and x.ndim >= 2:
        return a.reshape((1, -1) + (1,) * (x.ndim - 2))
    return a


@register("prelu")
def prelu(x, alpha):
    x = f32(x)
    return np.where(x > 0, x, _per_channel(alpha, x) * x)


@register("clamped_relu")
def clamped_relu(x, alpha, beta):
    x = f32(x)
    return np.minimum(np.where(x >= 0, x, np.float32(alpha) * x), np.float32(beta))


@register("linear_activation")
def linear_activation(x, alpha, beta=0.0):
    return np.float32(alpha) * f32(x) + np.float32(beta)


@register("scaled_tanh")
def scaled_tanh(x, alpha, beta):
    return np.float32(alpha) * np.tanh(np.float32(beta) * f32(x))


@register("sigmoid_hard")
def sigmoid_hard(x, alpha, beta):
    return np.clip(np.float32(alpha) * f32(x) + np.float32(beta), 0, 1)


@register("softplus_parametric")
def softplus_parametric(x, alpha, beta):
    x = f32(x)
    return _per_channel(alpha, x) * np.logaddexp(0, _per_channel(beta, x) * x)


@register("thresholded_relu")
def thresholded_relu(x, alpha=1.0):
    x = f32(x)
    return np.where(x > np.float32(alpha), x, 0).astype(np.float32)


def softmax_f32(x, axis: int):
    x = f32(x)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


@register("softmax")
def softmax(x, axis=-1):
    x = np.asarray(x)
    return softmax_f32(x, norm_axis(axis, x.ndim))
