"""Error metrics between two stages' logits, computed per step (prefill, then each decode step)."""

from __future__ import annotations

import numpy as np


def step_metrics(reference: np.ndarray, other: np.ndarray) -> dict:
    """reference/other: [T, vocab] logits of one step."""
    ref = reference.astype(np.float64)
    oth = other.astype(np.float64)
    diff = np.abs(ref - oth)
    scale = np.abs(ref).max()
    cos = (ref * oth).sum(-1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(oth, axis=-1) + 1e-30)
    return {
        "max_abs_err": float(diff.max()),
        "max_rel_err": float(diff.max() / scale) if scale else 0.0,
        "cosine_min": float(cos.min()),
        "top1_agreement": float((ref.argmax(-1) == oth.argmax(-1)).mean()),
    }


def summarize(steps: list[dict]) -> dict:
    """Worst case over steps, and top-1 agreement over all positions (weighted by step length)."""
    total = sum(s["positions"] for s in steps)
    return {
        "max_abs_err": max(s["max_abs_err"] for s in steps),
        "max_rel_err": max(s["max_rel_err"] for s in steps),
        "cosine_min": min(s["cosine_min"] for s in steps),
        "top1_agreement": sum(s["top1_agreement"] * s["positions"] for s in steps) / total,
    }


def greedy_match(reference: list[int], other: list[int]) -> int:
    """Tokens generated identically before the first divergence."""
    n = 0
    for a, b in zip(reference, other):
        if a != b:
            break
        n += 1
    return n
