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


def new_token_budget(prompt_ids: list[int], context: int, max_new_tokens: int, whose: str = "the context",
                     export_hint: str = "export") -> int:
    """How many tokens may follow the prompt: max_new_tokens, capped by what is left of the context."""
    if not prompt_ids:
        raise ElmExportError("the prompt is empty after tokenization; give a non-empty --prompt")
    budget = context - len(prompt_ids)
    if budget <= 0:
        raise ElmExportError(f"prompt of {len(prompt_ids)} tokens does not fit {whose} of {context}; "
                             f"shorten it or {export_hint} with a larger --context")
    return min(max_new_tokens, budget)


class TextStream:
    """Decoded text handed to `on_text` piece by piece as it becomes stable (half of a multi-byte character is held
    back until its other half arrives). Without `on_text` or a tokenizer it decodes nothing until `finish`."""

    def __init__(self, tokenizer, on_text: Callable[[str], None] | None):
        self.tokenizer, self.on_text, self.printed = tokenizer, on_text, ""

    def update(self, tokens: list[int]) -> None:
        if self.on_text is None or self.tokenizer is None:
            return
        text = self.tokenizer.decode(tokens)
        if not text.endswith("\ufffd"):
            self.on_text(text[len(self.printed):])
            self.printed = text

    def finish(self, tokens: list[int]) -> str:
        """The whole text; whatever was held back goes to `on_text` now."""
        text = self.tokenizer.decode(tokens)
        if self.on_text and text != self.printed:
            self.on_text(text[len(self.printed):])
        return text


def generate(runner, tokenizer, prompt_ids: list[int], max_new_tokens: int, options: SamplingOptions | None = None,
             on_text: Callable[[str], None] | None = None, eos_ids: list[int] | None = None) -> GenerationResult:
    """Greedy by default; streams decoded text pieces through `on_text` as soon as they are stable."""
    options = options or SamplingOptions()
    max_new_tokens = new_token_budget(prompt_ids, runner.context, max_new_tokens)
    eos = set(eos_ids if eos_ids is not None else tokenizer.eos_token_ids)
    rng = SplitMix64(options.seed)
    result = GenerationResult(list(prompt_ids))
    runner.reset()
    t0 = time.perf_counter()
    logits = last_logits(runner, list(prompt_ids), 0)
    result.prefill_seconds = time.perf_counter() - t0
    stream = TextStream(tokenizer, on_text)
    t1 = time.perf_counter()
    for step in range(max_new_tokens):
        token = sample_next(np.asarray(logits, dtype=np.float64), temperature=options.temperature, top_k=options.top_k,
                            top_p=options.top_p, repetition_penalty=options.repetition_penalty,
                            previous_tokens=list(prompt_ids) + result.tokens, rng=rng)
        if token in eos:
            result.stopped_by = "eos"
            break
        result.tokens.append(token)
        stream.update(result.tokens)
        if step + 1 < max_new_tokens:
            logits = last_logits(runner, [token], len(prompt_ids) + step)
    result.decode_seconds = time.perf_counter() - t1
    result.text = stream.finish(result.tokens)
    return result
