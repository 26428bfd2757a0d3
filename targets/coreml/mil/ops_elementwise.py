"""Elementwise MIL ops: binary arithmetic/comparison/logical ops, unary math, ``cast``.

Broadcasting follows numpy, which is MIL's rule too. Float16 inputs are widened to float32 (see ops_common);
the executor rounds the result to the declared output dtype.
"""

from __future__ import annotations

import numpy as np

from .dtypes import STRING_TO_NUMPY
from .ops_common import as_str, fwide
from .optable import register


def _binary(ufunc):
    def impl(x, y):
        return ufunc(fwide(x), fwide(y))

    return impl


for _name, _uf in {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "floor_div": np.floor_divide,
    "mod": np.mod,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "less": np.less,
    "less_equal": np.less_equal,
}.items():
    register(_name)(_binary(_uf))


@register("real_div")
def real_div(x, y):
    x, y = fwide(x), fwide(y)
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer):
        # Integer real_div: Core ML truncates toward zero like C.
        return np.trunc(np.true_divide(x, y))
    return np.true_divide(x, y)


@register("pow")
def pow_(x, y):
    x, y = fwide(x), fwide(y)
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer) and np.any(y < 0):
        return np.power(x.astype(np.float32), y)
    return np.power(x, y)


@register("logical_and")
def logical_and(x, y):
    return np.logical_and(x, y)


@register("logical_or")
def logical_or(x, y):
    return np.logical_or(x, y)


@register("logical_xor")
def logical_xor(x, y):
    return np.logical_xor(x, y)


@register("logical_not")
def logical_not(x):
    return np.logical_not(x)


def _unary(fn):
    def impl(x):
        return fn(fwide(x))

    return impl


for _name, _fn in {
    "abs": np.abs,
    "acos": np.arccos,
    "asin": np.arcsin,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "ceil": np.ceil,
    "cos": np.cos,
    "cosh": np.cosh,
    "exp": np.exp,
    "exp2": np.exp2,
    "floor": np.floor,
    "round": np.round,  # half to even, as coremltools' reference does
    "sign": np.sign,
    "sin": np.sin,
    "sinh": np.sinh,
    "sqrt": np.sqrt,
    "square": np.square,
    "tan": np.tan,
    "tanh": np.tanh,
}.items():
    register(_name)(_unary(_fn))


def erf(x):
    """erf in float64 (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7: below fp32 resolution for gelu's use).

    numpy has no erf and scipy is not a dependency of this package.
    """
    z = np.asarray(x, dtype=np.float64)
    s = np.sign(z)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


@register("erf")
def erf_op(x):
    return erf(x).astype(np.float32)


@register("rsqrt")
def rsqrt(x, epsilon=1e-12):
    x = fwide(x)
    return 1.0 / np.sqrt(x + np.float32(epsilon))


@register("inverse")
def inverse(x, epsilon=1e-4):
    x = fwide(x)
    return 1.0 / (x + np.float32(epsilon))


@register("log")
def log(x, epsilon=1e-45):
    x = fwide(x)
    with np.errstate(divide="ignore"):
        return np.log(x + np.asarray(epsilon, dtype=x.dtype))


@register("clip")
def clip(x, alpha, beta):
    x = fwide(x)
    return np.minimum(np.maximum(x, fwide(alpha)), fwide(beta))


@register("threshold")
def threshold(x, alpha):
    x = fwide(x)
    return np.maximum(x, fwide(alpha))


@register("cast")
def cast(x, dtype):
    target = STRING_TO_NUMPY.get(as_str(dtype))
    if target is None:
        raise ValueError(f"cast to unsupported dtype {as_str(dtype)!r}")
    a = np.asarray(x)
    if np.issubdtype(target, np.integer) and np.issubdtype(a.dtype, np.floating):
        # float -> int truncates toward zero (C semantics); out-of-range values saturate instead of wrapping.
        info = np.iinfo(target)
        return np.clip(np.trunc(a.astype(np.float64)), info.min, info.max).astype(target)
    return a.astype(target)
