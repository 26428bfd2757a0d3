"""Pair checks for `elmexport validate PAIR_DIR`: what a speculative pair adds on top of its two packages.

Why separate from the package validator: a pair's claim is not numeric parity (each package proves that with
`elmexport validate` on its own folder) but that speculative decoding returns the target's greedy tokens exactly
and how much faster it is. So this runs, on the pair's own runtime and in one process: the target alone, then the
pair at each k, on the same prompts; greedy equivalence is token for token, the speed-up is measured in this run.
The reports (JSON, Markdown, HTML with a speed-up figure) are written by validation/pair_report.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

PROMPTS = ("The quick brown fox", "Once upon a time, in a small village,", "def fibonacci(n):",
           "The capital of France is")


def validate_pair(pair_dir: str | Path, *, k_values: list[int] | None = None, max_new_tokens: int = 32,
                  threads: int | None = None, log: Callable[..., None] | None = None) -> dict:
    """The report dict; `passed` is False when any pair run's tokens differ from the target alone. `threads`
    goes to both runtimes (None: each runtime's own choice), the same for the target alone and the pair."""
    from .generation import new_token_budget
    from .pair import load_pair
    from .speculative import check_k, speculative_generate
    from .validation.streams import greedy

    log = log or (lambda *a, **kw: None)
    pair_dir = Path(pair_dir)
    pair = load_pair(pair_dir, threads=threads)
    k_values = [check_k(k) for k in (k_values or [pair.pair["k"]])]
    prompts = [pair.target.prompt_ids(text, chat=False) for text in PROMPTS]
    context = min(pair.target.runner.context, pair.draft.runner.context)
    budgets = [new_token_budget(ids, context, max_new_tokens, "the pair's context", "export the pair")
               for ids in prompts]
    baseline = []
    for ids, n in zip(prompts, budgets):
        t0 = time.perf_counter()
        baseline.append((greedy(pair.target.runner, ids, n), time.perf_counter() - t0))
    target_seconds = sum(s for _, s in baseline)
    runs = []
    for k in k_values:
        matched, seconds, proposed, accepted, tokens, calls = 0, 0.0, 0, 0, 0, 0
        per_prompt = []
        for ids, n, (expected, alone) in zip(prompts, budgets, baseline):
            t0 = time.perf_counter()
            result = speculative_generate(pair.target.runner, pair.draft.runner, ids, n, k=k)
            took = time.perf_counter() - t0
            seconds += took
            per_prompt.append(alone / took if took else 0.0)
            matched += result.tokens == expected
            proposed, accepted = proposed + result.proposed, accepted + result.accepted
            tokens, calls = tokens + len(result.tokens), calls + result.target_calls
        runs.append({"k": k, "greedy_equivalent": matched == len(prompts), "prompts_matching": matched,
                     "acceptance_rate": accepted / proposed if proposed else 0.0,
                     "tokens_per_target_call": tokens / calls if calls else 0.0,
                     "pair_seconds": seconds, "speedup": target_seconds / seconds if seconds else 0.0,
                     "speedup_per_prompt": per_prompt})
        log(f"pair k={k}: {matched}/{len(prompts)} prompts equal to the target alone, acceptance "
            f"{runs[-1]['acceptance_rate']:.1%}, speed-up {runs[-1]['speedup']:.2f}x")
    packages = [str(pair_dir / pair.pair[role]["package"]) for role in ("target", "draft")]
    return {"kind": "speculative-pair-validation", "pair": str(pair_dir), "runtime": pair.pair.get("runtime"),
            "random_weights": pair.pair.get("random_weights"), "threads": threads, "prompts": len(prompts),
            "new_tokens_per_prompt": max_new_tokens, "target_alone_seconds": target_seconds, "runs": runs,
            "passed": all(r["greedy_equivalent"] for r in runs),
            "not_checked": "the packages' numeric parity with the eager model; run `elmexport validate` on each: "
                           + "; ".join(f"elmexport validate {p}" for p in packages)}
