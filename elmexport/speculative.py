"""Speculative decoding over two Runners: a small draft proposes k tokens, the target checks them in one call.

Greedy by default (below); with sampling options, the accept/reject rule of `_AcceptRejectRule` keeps the output
distributed exactly as the target's own sampler, over the same loop and cache invariants.

Why it is exact: the target scores its last accepted token plus the k proposals in ONE forward call, which returns
a logits row for every fed position. Row i is what the target alone would have computed after the same prefix, so
the proposals are kept up to the first one that differs from the target's own argmax, and that argmax (or, when
all k match, the argmax of the last row) is appended. The output is the target's greedy output, token for token;
the draft only decides how many target calls it takes.

Why no cache rewind is needed: every runner feeds explicit positions and attention only reads cache positions at
or before the ones fed, so the cache slots of rejected proposals are simply overwritten by the next call at those
positions (eager, ONNX and ExecuTorch runners all write at `start_pos` and read [0, start_pos + T)).

Invariants of the loop, with `seq` = prompt + accepted tokens and n = len(seq):
- the target's cache holds positions [0, n - 1): seq[-1] is fed first in the next verify call;
- the draft's cache holds positions [0, draft_fed), draft_fed <= n - 1; it catches up with seq[draft_fed:] first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import ElmExportError
from .generation import SamplingOptions, TextStream, new_token_budget
from .sampling import SplitMix64, sample_from, token_distribution
from .validation.runner import last_logits


@dataclass
class SpeculativeResult:
    prompt_tokens: list[int]
    k: int
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    target_calls: int = 0  # the prefill included: the target alone takes one call per new token
    draft_calls: int = 0
    proposed: int = 0
    accepted: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    stopped_by: str = "max_tokens"

    @property
    def acceptance_rate(self) -> float:
        """Share of the draft's proposals the target kept."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_call(self) -> float:
        """New tokens per target forward call (1.0 for the target alone, up to k + 1)."""
        return len(self.tokens) / self.target_calls if self.target_calls else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after the first (which comes from the prefill) per second, as generation.py measures it."""
        steps = max(len(self.tokens) - 1, 0)
        return steps / self.decode_seconds if self.decode_seconds else 0.0

    def summary(self) -> str:
        return (f"{len(self.tokens)} new tokens, k={self.k}: acceptance {self.acceptance_rate:.1%} "
                f"({self.accepted}/{self.proposed}), {self.tokens_per_target_call:.2f} tokens per target call "
                f"({self.target_calls} calls), decode {self.decode_tokens_per_s:.1f} tok/s")


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ElmExportError(f"k={k!r}: the draft must propose at least one token per round; give k >= 1 (e.g. 4)")
    return k


class _GreedyRule:
    """Greedy verification: keep proposals while they equal the target's argmax, then append the target's argmax."""

    def first(self, row, prefix) -> int:
        return int(np.argmax(row))

    def propose(self, row, prefix) -> int:
        return int(np.argmax(row))

    def verify(self, rows, proposals, prefix) -> tuple[int, int]:
        m = 0
        while m < len(proposals) and int(np.argmax(rows[m])) == proposals[m]:
            m += 1
        return m, int(np.argmax(rows[m]))


class _AcceptRejectRule:
    """Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): the output is distributed exactly as the
    target's own sampler, whatever the draft.

    With p and q the target's and the draft's distributions after the same prefix, both transformed by the shared
    sampler (temperature, top-k, top-p, repetition penalty over that prefix): a drafted x ~ q is kept with
    probability min(1, p(x) / q(x)); the first rejected position draws from max(0, p - q) normalised; when all k
    are kept the target's next row gives one more token. Seeded: one SplitMix64 stream drives every draw.
    """

    def __init__(self, options):
        self.options, self.rng, self.q = options, SplitMix64(options.seed), []

    def dist(self, row, prefix) -> np.ndarray:
        o = self.options
        return token_distribution(row, temperature=o.temperature, top_k=o.top_k, top_p=o.top_p,
                                  repetition_penalty=o.repetition_penalty, previous_tokens=prefix)

    def first(self, row, prefix) -> int:
        self.q = []
        return sample_from(self.dist(row, prefix), self.rng)

    def propose(self, row, prefix) -> int:
        q = self.dist(row, prefix)
        self.q.append(q)
        return sample_from(q, self.rng)

    def verify(self, rows, proposals, prefix) -> tuple[int, int]:
        qs, self.q = self.q, []
        for m, (x, q) in enumerate(zip(proposals, qs)):
            p = self.dist(rows[m], list(prefix) + proposals[:m])
            if self.rng.next_double() * q[x] >= p[x]:  # u >= p(x) / q(x), without dividing; q(x) > 0 as x ~ q
                residual = np.maximum(p - q, 0.0)
                return m, sample_from(residual if residual.sum() > 0 else p, self.rng)
        return len(proposals), sample_from(self.dist(rows[len(proposals)], list(prefix) + proposals), self.rng)


def speculative_generate(target, draft, prompt_ids: list[int], max_new_tokens: int, k: int = 4, *,
                         eos_ids: list[int] | tuple = (), tokenizer=None,
                         on_text: Callable[[str], None] | None = None,
                         sampling: SamplingOptions | None = None) -> SpeculativeResult:
    """Tokens of `target` after `prompt_ids`, proposed k at a time by `draft` (both Runners, same vocab).

    Greedy (the target's greedy tokens, exactly) unless `sampling` asks for temperature > 0 or a repetition
    penalty; then the accept/reject rule makes the output follow the target's own sampling distribution.
    Stops at an `eos_ids` token (not included) or after `max_new_tokens`. With a tokenizer, `.text` is filled and
    `on_text` receives decoded pieces as they become stable.
    """
    k = check_k(k)
    greedy = sampling is None or (sampling.temperature <= 0 and sampling.repetition_penalty == 1)
    rule = _GreedyRule() if greedy else _AcceptRejectRule(sampling)
    context = min(target.context, draft.context)
    max_new_tokens = new_token_budget(prompt_ids, context, max_new_tokens, "the pair's context",
                                      "export the pair")
    eos = set(eos_ids)
    result = SpeculativeResult(list(prompt_ids), k)
    seq = list(prompt_ids)
    stream = TextStream(tokenizer, on_text)

    def emit(token: int) -> bool:
        """Append one target token; False when generation must stop."""
        if token in eos:
            result.stopped_by = "eos"
            return False
        result.tokens.append(token)
        seq.append(token)
        stream.update(result.tokens)
        return len(result.tokens) < max_new_tokens

    target.reset()
    draft.reset()
    t0 = time.perf_counter()
    first = rule.first(last_logits(target, seq, 0), seq)
    result.target_calls += 1
    last_logits(draft, seq, 0)  # the draft's prefill: its logits are not needed, only its cache
    result.draft_calls += 1
    draft_fed = len(seq)
    result.prefill_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    going = max_new_tokens > 0 and emit(first)
    while going:
        n = len(seq)
        kk = max(0, min(k, context - n, max_new_tokens - len(result.tokens) - 1))
        proposals: list[int] = []
        if kk:
            logits = last_logits(draft, seq[draft_fed:], draft_fed)  # catch up: at least seq[-1] at n - 1
            result.draft_calls += 1
            proposals.append(rule.propose(logits, seq))
            for i in range(1, kk):
                logits = last_logits(draft, [proposals[-1]], n - 1 + i)
                result.draft_calls += 1
                proposals.append(rule.propose(logits, seq + proposals))
        rows = target.forward([seq[-1]] + proposals, n - 1)
        result.target_calls += 1
        if rows.shape[0] != kk + 1:
            raise ElmExportError(f"{getattr(target, 'name', 'target')}: returned {rows.shape[0]} logits rows for "
                                 f"{kk + 1} tokens; the target must return every fed position's logits")
        m, last = rule.verify(rows, proposals, seq)
        result.proposed += kk
        result.accepted += m
        if kk:
            draft_fed = min(n - 1 + kk, n + m)  # its slots past that hold rejected proposals (or nothing yet)
        for token in proposals[:m] + [last]:
            going = emit(token)
            if not going:
                break
    result.decode_seconds = time.perf_counter() - t1
    if tokenizer is not None:
        result.text = stream.finish(result.tokens)
    return result
