"""Token generation over any Runner: prefill the prompt, then decode one token at a time, streaming text."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import ElmExportError
from .sampling import SplitMix64, sample_next
from .validation.runner import last_logits


@dataclass
class SamplingOptions:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0


@dataclass
class GenerationResult:
    prompt_tokens: list[int]
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    stopped_by: str = "max_tokens"

    @property
    def prefill_tokens_per_s(self) -> float:
        return len(self.prompt_tokens) / self.prefill_seconds if self.prefill_seconds else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        steps = max(len(self.tokens) - 1, 0)  # the first new token comes from prefill
        return steps / self.decode_seconds if self.decode_seconds else 0.0


def generate(runner, tokenizer, prompt_ids: list[int], max_new_tokens: int, options: SamplingOptions | None = None,
             on_text: Callable[[str], None] | None = None, eos_ids: list[int] | None = None) -> GenerationResult:
    """Greedy by default; streams decoded text pieces through `on_text` as soon as they are stable."""
    options = options or SamplingOptions()
    if not prompt_ids:
        raise ElmExportError("the prompt is empty after tokenization; give a non-empty --prompt")
    budget = runner.context - len(prompt_ids)
    if budget <= 0:
        raise ElmExportError(f"prompt of {len(prompt_ids)} tokens does not fit the context of {runner.context}; "
                             f"shorten it or export with a larger --context")
    max_new_tokens = min(max_new_tokens, budget)
    eos = set(eos_ids if eos_ids is not None else tokenizer.eos_token_ids)
    rng = SplitMix64(options.seed)
    result = GenerationResult(list(prompt_ids))
    runner.reset()
    t0 = time.perf_counter()
    logits = last_logits(runner, list(prompt_ids), 0)
    result.prefill_seconds = time.perf_counter() - t0
    printed = ""
    t1 = time.perf_counter()
    for step in range(max_new_tokens):
        token = sample_next(np.asarray(logits, dtype=np.float64), temperature=options.temperature, top_k=options.top_k,
                            top_p=options.top_p, repetition_penalty=options.repetition_penalty,
                            previous_tokens=list(prompt_ids) + result.tokens, rng=rng)
        if token in eos:
            result.stopped_by = "eos"
            break
        result.tokens.append(token)
        text = tokenizer.decode(result.tokens)
        if on_text and not text.endswith("\ufffd"):  # hold back half of a multi-byte character
            on_text(text[len(printed):])
            printed = text
        if step + 1 < max_new_tokens:
            logits = last_logits(runner, [token], len(prompt_ids) + step)
    result.decode_seconds = time.perf_counter() - t1
    result.text = tokenizer.decode(result.tokens)
    if on_text and result.text != printed:
        on_text(result.text[len(printed):])
    return result
