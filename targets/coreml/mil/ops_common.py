"""Helpers shared by the op implementations: numeric policy and argument normalisation.

Numeric policy (documented once, used everywhere): arithmetic on float16 tensors is carried out in float32 and
rounded back to float16 by the executor, which casts every op result to the dtype the program declares. For a
single elementwise op that equals a correctly rounded fp16 op (float32 has more than twice fp16's precision);
for matmul/linear/conv/einsum, reductions, softmax, norms and attention it means "accumulate in float32, round the
op's result to fp16", which is what Core ML's CPU/GPU kernels approximately do. So fp16 programs here round after
each MIL op, as Core ML does, but do not reproduce its exact summation order or ANE-specific behaviour.
"""

from __future__ import annotations

import numpy as np


def f32(x):
    """Float16 (and bool/int) -> float32 array; float32/float64 unchanged (no copy)."""
    a = np.asarray(x)
    if a.dtype == np.float32 or a.dtype == np.float64:
        return a
    return a.astype(np.float32)


def fwide(x):
    """Like ``f32`` but leaves integer arrays alone (for ops that are valid on ints)."""
    a = np.asarray(x)
    if a.dtype == np.float16:
        return a.astype(np.float32)
    return a


def as_int(v) -> int:
    return int(np.asarray(v).reshape(-1)[0]) if np.ndim(v) else int(v)


def as_ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


def as_bools(v, n: int) -> list[bool]:
    if v is None:
        return [False] * n
    return [bool(b) for b in np.asarray(v).reshape(-1)]


def as_str(v) -> str:
    if isinstance(v, str):
        return v
    a = np.asarray(v)
    return str(a.reshape(-1)[0]) if a.ndim else str(a.item())


def norm_axis(axis: int, rank: int) -> int:
    a = int(axis)
    if not -rank <= a < max(rank, 1):
        raise ValueError(f"axis {a} is out of range for rank {rank}")
    return a + rank if a < 0 else a


def norm_axes(axes, rank: int) -> tuple[int, ...]:
    return tuple(sorted(norm_axis(a, rank) for a in as_ints(axes)))


def fix_negative_indices(indices, dim: int):
    """MIL gather/scatter accept indices in [-dim, dim); numpy's fancy indexing wraps the same way, but we
    make them explicit and bounds-check so a bad index fails loudly instead of reading garbage."""
    idx = np.asarray(indices).astype(np.int64)
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise IndexError(f"index out of range [{-dim}, {dim}): min {idx.min()}, max {idx.max()}")
    return np.where(idx < 0, idx + dim, idx)
