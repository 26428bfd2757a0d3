"""Perplexity of any Runner on a text, in non-overlapping windows (each window starts from an empty cache)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DEFAULT_TEXT = Path("/usr/share/common-licenses/GPL-3")


def token_nll(logits: np.ndarray, targets: list[int]) -> np.ndarray:
    """Negative log-likelihood of each target under the matching row of logits (float64, stable log-softmax)."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    logz = np.log(np.exp(x).sum(axis=-1))
    return logz - x[np.arange(len(targets)), targets]


def perplexity(runner, ids: list[int], window: int = 512, max_tokens: int | None = None) -> dict:
    """exp(mean NLL) over `ids` scored window by window; returns the value and how many tokens were scored."""
    if max_tokens:
        ids = ids[:max_tokens]
    window = min(window, runner.context)
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window + 1]
        if len(chunk) < 2:
            break
        runner.reset()
        logits = runner.forward(chunk[:-1], 0)
        nll = token_nll(logits, chunk[1:])
        total += float(nll.sum())
        count += len(nll)
    return {"perplexity": math.exp(total / count), "tokens": count, "window": window}
