"""Pair checks for `elmexport validate PAIR_DIR`: what a speculative pair adds on top of its two packages.

Why separate from the package validator: a pair's claim is not numeric parity (each package proves that with
`elmexport validate` on its own folder) but that speculative decoding returns the target's greedy tokens exactly
and how much faster it is. So this runs, on the pair's own runtime and in one process: the target alone, then the
pair at each k, on the same prompts; greedy equivalence is token for token, the speed-up is measured in this run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

PROMPTS = ("The quick brown fox", "Once upon a time, in a small village,", "def fibonacci(n):",
           "The capital of France is")


def validate_pair(pair_dir: str | Path, *, k_values: list[int] | None = None, max_new_tokens: int = 32,
                  log: Callable[..., None] | None = None) -> dict:
    """The report dict; `passed` is False when any pair run's tokens differ from the target alone."""
    from .generation import new_token_budget
    from .pair import load_pair
    from .speculative import check_k, speculative_generate
    from .validation.streams import greedy

    log = log or (lambda *a, **kw: None)
    pair_dir = Path(pair_dir)
    pair = load_pair(pair_dir)
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
        for ids, n, (expected, _) in zip(prompts, budgets, baseline):
            t0 = time.perf_counter()
            result = speculative_generate(pair.target.runner, pair.draft.runner, ids, n, k=k)
            seconds += time.perf_counter() - t0
            matched += result.tokens == expected
            proposed, accepted = proposed + result.proposed, accepted + result.accepted
            tokens, calls = tokens + len(result.tokens), calls + result.target_calls
        runs.append({"k": k, "greedy_equivalent": matched == len(prompts), "prompts_matching": matched,
                     "acceptance_rate": accepted / proposed if proposed else 0.0,
                     "tokens_per_target_call": tokens / calls if calls else 0.0,
                     "pair_seconds": seconds, "speedup": target_seconds / seconds if seconds else 0.0})
        log(f"pair k={k}: {matched}/{len(prompts)} prompts equal to the target alone, acceptance "
            f"{runs[-1]['acceptance_rate']:.1%}, speed-up {runs[-1]['speedup']:.2f}x")
    packages = [str(pair_dir / pair.pair[role]["package"]) for role in ("target", "draft")]
    return {"kind": "speculative-pair-validation", "pair": str(pair_dir), "runtime": pair.pair.get("runtime"),
            "random_weights": pair.pair.get("random_weights"), "prompts": len(prompts),
            "new_tokens_per_prompt": max_new_tokens, "target_alone_seconds": target_seconds, "runs": runs,
            "passed": all(r["greedy_equivalent"] for r in runs),
            "not_checked": "the packages' numeric parity with the eager model; run `elmexport validate` on each: "
                           + "; ".join(f"elmexport validate {p}" for p in packages)}


def to_markdown(report: dict) -> str:
    lines = [f"# Speculative pair validation: {report['pair']}", "",
             f"Runtime {report['runtime']}; {report['prompts']} prompts x {report['new_tokens_per_prompt']} greedy "
             f"tokens; target alone {report['target_alone_seconds']:.2f} s in the same run. "
             f"**{'PASSED' if report['passed'] else 'FAILED'}** (greedy equivalence).", "",
             "| k | greedy equal to target | acceptance | tokens per target call | speed-up |",
             "|---|---|---|---|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['k']} | {r['prompts_matching']}/{report['prompts']} | {r['acceptance_rate']:.1%} | "
                     f"{r['tokens_per_target_call']:.2f} | {r['speedup']:.2f}x |")
    lines += ["", f"Not checked here: {report['not_checked']}.", ""]
    return "\n".join(lines)


def write_pair_report(report: dict, out_dir: str | Path) -> list[Path]:
    """pair_validation.json and .md, written in a temp sibling and swapped in (never a half-written report)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if out.is_dir():
        for old in out.iterdir():  # keep what else is there (e.g. the package validator's reports)
            if old.name not in ("pair_validation.json", "pair_validation.md"):
                (shutil.copytree if old.is_dir() else shutil.copy2)(old, tmp / old.name)
    (tmp / "pair_validation.json").write_text(json.dumps(report, indent=2))
    (tmp / "pair_validation.md").write_text(to_markdown(report))
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
    return [out / "pair_validation.json", out / "pair_validation.md"]
