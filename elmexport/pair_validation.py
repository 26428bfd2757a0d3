"""Pair checks for `elmexport validate PAIR_DIR`: what a speculative pair adds on top of its two packages.

Why separate from the package validator: a pair's claim is not numeric parity (each package proves that with
`elmexport validate` on its own folder) but that speculative decoding returns the target's greedy tokens exactly
and how much faster it is. So this runs, on the pair's own runtime and in one process: the target alone, then the
pair at each k, on the same prompts; greedy equivalence is token for token, the speed-up is measured in this run.

One divergence is not a failure: an exact tie. Verifying k + 1 tokens in one call computes the same logits as k + 1
single-token calls only up to rounding, so where the target's own top two logits are equal at the runtime's
precision (one fp16 step is 1/64 at a logit of 20, and Core ML computes in fp16) the two calls may pick different
tokens, both the target's greedy choice, and the texts part from there. A run is therefore "equal", "tied" (the
first difference is a token whose logit in the target alone's own call is within one step of the precision of
the chosen one; the report shows the gap) or "different" (anything else: a real defect, and the check fails).
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
    from .validation.streams import greedy_with_logits

    log = log or (lambda *a, **kw: None)
    pair_dir = Path(pair_dir)
    pair = load_pair(pair_dir, threads=threads)
    k_values = [check_k(k) for k in (k_values or [pair.pair["k"]])]
    prompts = [pair.target.prompt_ids(text, chat=False) for text in PROMPTS]
    context = min(pair.target.runner.context, pair.draft.runner.context)
    budgets = [new_token_budget(ids, context, max_new_tokens, "the pair's context", "export the pair")
               for ids in prompts]
    precision = logit_precision(pair.target.package.manifest)
    baseline = []
    for ids, n in zip(prompts, budgets):
        t0 = time.perf_counter()
        tokens, rows = greedy_with_logits(pair.target.runner, ids, n)
        baseline.append((tokens, rows, time.perf_counter() - t0))
    target_seconds = sum(s for _, _, s in baseline)
    runs = []
    for k in k_values:
        matched, seconds, proposed, accepted, tokens, calls = 0, 0.0, 0, 0, 0, 0
        per_prompt, ties, different = [], [], []
        for p_index, (ids, n, (expected, rows, alone)) in enumerate(zip(prompts, budgets, baseline)):
            t0 = time.perf_counter()
            result = speculative_generate(pair.target.runner, pair.draft.runner, ids, n, k=k)
            took = time.perf_counter() - t0
            seconds += took
            per_prompt.append(alone / took if took else 0.0)
            divergence = first_divergence(result.tokens, expected, rows, precision)
            if divergence is None:
                matched += 1
            else:
                (ties if divergence["tie"] else different).append({"prompt": p_index, **divergence})
            proposed, accepted = proposed + result.proposed, accepted + result.accepted
            tokens, calls = tokens + len(result.tokens), calls + result.target_calls
        runs.append({"k": k, "greedy_equivalent": not different, "prompts_matching": matched,
                     "prompts_tied": len(ties), "ties": ties, "differences": different,
                     "acceptance_rate": accepted / proposed if proposed else 0.0,
                     "tokens_per_target_call": tokens / calls if calls else 0.0,
                     "pair_seconds": seconds, "speedup": target_seconds / seconds if seconds else 0.0,
                     "speedup_per_prompt": per_prompt})
        tied = f" (+{len(ties)} parting at an exact {precision} tie)" if ties else ""
        log(f"pair k={k}: {matched}/{len(prompts)} prompts equal to the target alone{tied}, acceptance "
            f"{runs[-1]['acceptance_rate']:.1%}, speed-up {runs[-1]['speedup']:.2f}x")
    packages = [str(pair_dir / pair.pair[role]["package"]) for role in ("target", "draft")]
    return {"kind": "speculative-pair-validation", "pair": str(pair_dir), "runtime": pair.pair.get("runtime"),
            "random_weights": pair.pair.get("random_weights"), "threads": threads, "logit_precision": precision,
            "prompts": len(prompts),
            "new_tokens_per_prompt": max_new_tokens, "target_alone_seconds": target_seconds, "runs": runs,
            "passed": all(r["greedy_equivalent"] for r in runs),
            "not_checked": "the packages' numeric parity with the eager model; run `elmexport validate` on each: "
                           + "; ".join(f"elmexport validate {p}" for p in packages)}


def logit_precision(manifest: dict) -> str:
    """The precision the target computes its logits in: fp16 for Core ML (the package or ExecuTorch's Core ML
    delegate), fp32 otherwise."""
    if manifest.get("compute_precision"):
        return "float16" if "16" in str(manifest["compute_precision"]) else "float32"
    return "float16" if manifest.get("target") == "coreml" or manifest.get("delegate") == "coreml" else "float32"


def first_divergence(tokens: list[int], expected: list[int], rows: list, precision: str) -> dict | None:
    """None when the pair's tokens are the target alone's; else where they part, the two tokens, the gap between
    their logits in the target alone's own call there, and whether that gap is a tie at `precision` (at most
    one representable step at that magnitude)."""
    import numpy as np

    if tokens == expected:
        return None
    at = next((i for i, (a, b) in enumerate(zip(tokens, expected)) if a != b), min(len(tokens), len(expected)))
    if at >= min(len(tokens), len(expected)):  # one is a prefix of the other: a length difference, never a tie
        return {"index": at, "target_token": None, "pair_token": None, "logit_gap": None, "tie": False}
    row = rows[at]
    chosen, other = float(row[expected[at]]), float(row[tokens[at]])
    step = float(np.spacing(np.dtype(precision).type(abs(chosen))))
    return {"index": at, "target_token": expected[at], "pair_token": tokens[at], "logit_gap": chosen - other,
            "tie": chosen - other <= step}
