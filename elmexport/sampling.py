"""Reference next-token sampler shared with the iOS demo (ios_demo/Sources/ElmKit/Sampling).

Why this module exists: `elmexport generate` and the Swift app must pick the *same* token for the same
logits and seed, so a device run can be compared with a host run token by token. Everything here is
therefore specified down to the order of floating-point operations, and the Swift port reproduces the
golden outputs that ios_demo/Fixtures/make_fixtures.py writes from this file.

The algorithm of `sample_next`, step by step (all arithmetic in IEEE float64):

1. ``x = float64(logits)``.
2. Repetition penalty (HF / CTRL): for every *distinct* id in ``previous_tokens``,
   ``x[id] = x[id] / penalty`` if ``x[id] > 0`` else ``x[id] * penalty``.
3. ``temperature <= 0`` means greedy: return the arg-max, the lowest id among equal maxima. No random
   number is drawn, and top-k / top-p are ignored.
4. ``x = x / temperature`` (element-wise division, not multiplication by a reciprocal).
5. Candidates are all ids sorted by ``x`` descending; ties are broken by the lower id first.
6. Top-k: if ``0 < top_k < vocab``, keep the first ``top_k`` candidates.
7. Weights ``w[i] = exp(x[c[i]] - x[c[0]])`` with the C library ``exp`` (``math.exp`` here, ``Foundation.exp``
   in Swift: both call libm, whereas numpy's vectorised exp may differ in the last bit).
8. ``cum[i] = cum[i-1] + w[i]``, summed left to right (never pairwise).
9. Top-p (nucleus): if ``top_p < 1``, keep candidates ``0..j`` for the first ``j`` with
   ``cum[j] / cum[-1] >= top_p`` (at least one candidate survives).
10. One uniform ``u`` in [0, 1) from the RNG; ``r = u * cum[last kept]``; the answer is the first kept
    candidate with ``cum[i] > r`` (if rounding leaves none, the last kept candidate with ``w > 0``).
    There is no separate normalisation step: scaling ``u`` by the total is the inverse CDF.

The RNG is SplitMix64 (Steele, Lea & Flood 2014), chosen because it is a dozen lines in any language:
``state += 0x9E3779B97F4A7C15`` then the two xor-shift-multiply rounds; a double is ``(next >> 11) * 2**-53``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import accumulate

import numpy as np

__all__ = ["SplitMix64", "candidate_weights", "apply_repetition_penalty", "sample_next", "token_distribution",
           "sample_from"]

_MASK64 = (1 << 64) - 1


class SplitMix64:
    """Seeded 64-bit generator; the Swift `SplitMix64` yields the same stream for the same seed."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def next_double(self) -> float:
        """Uniform double in [0, 1) from the top 53 bits, exactly representable."""
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))


def apply_repetition_penalty(x: np.ndarray, previous_tokens: Iterable[int], penalty: float) -> np.ndarray:
    """Step 2 above, in place on a float64 vector; each distinct id is penalised once."""
    if penalty == 1.0:
        return x
    if penalty <= 0.0:
        raise ValueError("repetition_penalty must be > 0")
    for token in sorted(set(int(t) for t in previous_tokens)):
        if not 0 <= token < x.shape[0]:
            raise ValueError(f"previous token {token} outside the vocabulary of {x.shape[0]}")
        v = x[token]
        x[token] = v / penalty if v > 0 else v * penalty
    return x


def _as_float64(logits: np.ndarray) -> np.ndarray:
    x = np.array(logits, dtype=np.float64, copy=True).reshape(-1)
    if x.size == 0:
        raise ValueError("empty logits")
    return x


def candidate_weights(
    logits: np.ndarray, *, temperature: float, top_k: int = 0, top_p: float = 1.0,
    repetition_penalty: float = 1.0, previous_tokens: Iterable[int] = (),
) -> tuple[list[int], list[float]]:
    """Steps 1-9: the kept candidate ids (best first) and their running weight sums.

    Exposed so tests can compare the implied distribution ``diff(cum) / cum[-1]`` with a softmax.
    """
    if temperature <= 0:
        raise ValueError("candidate_weights needs temperature > 0 (temperature 0 is greedy)")
    x = apply_repetition_penalty(_as_float64(logits), previous_tokens, repetition_penalty)
    x = x / temperature
    order = np.argsort(-x, kind="stable")  # descending; stable keeps the lower id first among ties
    if 0 < top_k < order.shape[0]:
        order = order[:top_k]
    best = float(x[order[0]])
    if not math.isfinite(best):
        raise ValueError("the largest logit must be finite")
    ids = [int(i) for i in order]
    cum = list(accumulate(math.exp(float(x[i]) - best) for i in ids))
    if top_p < 1.0:
        total = cum[-1]
        cut = next((j for j, c in enumerate(cum) if c / total >= top_p), len(cum) - 1)
        ids, cum = ids[: cut + 1], cum[: cut + 1]
    return ids, cum


def sample_next(
    logits: np.ndarray, *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
    repetition_penalty: float = 1.0, previous_tokens: Iterable[int] = (), rng: SplitMix64 | None = None,
) -> int:
    """Pick the next token id from one row of logits (see the module docstring for the exact algorithm)."""
    previous_tokens = tuple(previous_tokens)
    if temperature <= 0:
        x = apply_repetition_penalty(_as_float64(logits), previous_tokens, repetition_penalty)
        return int(np.argmax(x))  # numpy returns the first (lowest) index among equal maxima
    if rng is None:
        raise ValueError("sampling with temperature > 0 needs an rng")
    ids, cum = candidate_weights(
        logits, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=repetition_penalty, previous_tokens=previous_tokens,
    )
    r = rng.next_double() * cum[-1]
    for token, c in zip(ids, cum):
        if c > r:
            return token
    previous = 0.0
    last_positive = ids[0]
    for token, c in zip(ids, cum):
        if c > previous:
            last_positive = token
        previous = c
    return last_positive


def token_distribution(
    logits: np.ndarray, *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
    repetition_penalty: float = 1.0, previous_tokens: Iterable[int] = (),
) -> np.ndarray:
    """The whole next-token distribution `sample_next` draws from, as float64 probabilities over the vocabulary.

    Speculative sampling needs p(x) and q(x) for any token x, not just one draw; temperature <= 0 gives the
    one-hot of the greedy choice, so the accept/reject rule then reduces to greedy verification.
    """
    previous_tokens = tuple(previous_tokens)
    if temperature <= 0:
        x = apply_repetition_penalty(_as_float64(logits), previous_tokens, repetition_penalty)
        probs = np.zeros_like(x)
        probs[int(np.argmax(x))] = 1.0
        return probs
    ids, cum = candidate_weights(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                 repetition_penalty=repetition_penalty, previous_tokens=previous_tokens)
    probs = np.zeros(np.asarray(logits).size, dtype=np.float64)
    probs[ids] = np.diff(np.asarray([0.0] + cum)) / cum[-1]
    return probs


def sample_from(weights: np.ndarray, rng: SplitMix64) -> int:
    """One id drawn with probability proportional to `weights` (non-negative, not all zero): inverse CDF by id."""
    cum = np.cumsum(weights, dtype=np.float64)
    if not cum[-1] > 0:
        raise ValueError("sample_from needs a positive total weight")
    i = int(np.searchsorted(cum, rng.next_double() * cum[-1], side="right"))
    # the first id whose running sum exceeds r has weight > 0; past the end only by rounding: the last id with weight
    return i if i < cum.size else int(np.flatnonzero(np.asarray(weights) > 0)[-1])
