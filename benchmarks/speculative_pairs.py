"""Speculative pairs vs the target alone, on the pair's own runtime: acceptance rate and decode speed-up by k.

    elmexport pair --target smollm2-135m-instruct --draft smollm2-135m-instruct --to onnx --context 512 \
        --out dist/pair-onnx            # target fp32 (every position's logits), draft int4
    python benchmarks/speculative_pairs.py dist/pair-onnx [--ks 2,3,4,5,6] [--rounds 2] [--new-tokens 128] [--threads 2]

Each round runs, for every prompt, the target alone (generation.py's loop: one call per token) and the pair at
every k, in an order rotated from round to round, so the machine's drift hits every configuration alike. The
speed-up is the median over (round, prompt) of pair decode tok/s / target-alone decode tok/s of the same round and
prompt. Decode tok/s counts the tokens after the first, which the prefill gives (as `elmexport generate` does).
EOS is ignored, so every run makes exactly --new-tokens tokens. Each pair run's tokens are compared with the
target alone's for the same prompt: they must be equal (the target scores T = k + 1 positions per call instead of
one, so a near-tie between two logits could in principle flip; any such case is printed).

The pair is opened as `elmexport generate PAIR` opens it (pair.load_pair): onnxruntime sessions with intra-op
spinning off, since a pair alternates two sessions and the idle one's spinning threads would take the cores from
the one running; the target alone is that same target session, so the comparison stays like for like.

Threads: --threads N (default 2) for both packages, onnxruntime's intra-op pool or ExecuTorch's pool; for
ExecuTorch, MKL_NUM_THREADS=1 is set before torch loads (see targets/executorch/runner.py).

Prompts: three chat questions rendered with the target's chat template, and the first 128 tokens of the GPL-3
(benchmarks/prompts.py's text) fed raw.
"""

from __future__ import annotations

import os

os.environ.setdefault("MKL_NUM_THREADS", "1")  # before anything imports torch: see the docstring

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prompts import PROMPT_TEXT  # noqa: E402

CHAT_QUESTIONS = [
    "What is the capital of France?",
    "Explain in a few sentences how a rainbow forms.",
    "Write a short Python function that returns the n-th Fibonacci number.",
]


def prompts_for(pair) -> dict[str, list[int]]:
    from elmexport.chat import render_chat

    target = pair.target
    out = {f"chat{i + 1}": target.tokenizer.encode(render_chat(target.chat_template, [{"role": "user", "content": q}],
                                                                target.system_prompt))
           for i, q in enumerate(CHAT_QUESTIONS)}
    out["gpl3"] = target.tokenizer.encode(PROMPT_TEXT.read_text())[:128]
    return out


def run_alone(pair, prompt: list[int], n: int) -> dict:
    from elmexport.generation import generate

    r = generate(pair.target.runner, pair.target.tokenizer, prompt, n, eos_ids=[])
    return {"tokens": r.tokens, "decode_tok_s": r.decode_tokens_per_s, "tokens_per_target_call": 1.0}


def run_pair(pair, prompt: list[int], n: int, k: int) -> dict:
    from elmexport.speculative import speculative_generate

    r = speculative_generate(pair.target.runner, pair.draft.runner, prompt, n, k=k)
    return {"tokens": r.tokens, "decode_tok_s": r.decode_tokens_per_s, "acceptance": r.acceptance_rate,
            "accepted": r.accepted, "proposed": r.proposed, "tokens_per_target_call": r.tokens_per_target_call}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pair", type=Path, help="a pair folder written by `elmexport pair`")
    ap.add_argument("--ks", default="2,3,4,5,6", help="comma-separated k values (default 2..6)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--json", type=Path, help="also write every run here")
    ap.add_argument("--threads", type=int, default=2, help="threads of both runtimes (default 2)")
    args = ap.parse_args()
    ks = [int(k) for k in args.ks.split(",") if k]

    from elmexport.pair import load_pair

    pair = load_pair(args.pair, threads=args.threads)
    prompts = prompts_for(pair)
    configs = ["alone"] + [f"k={k}" for k in ks]
    runs: list[dict] = []
    run_pair(pair, prompts["chat1"], 8, ks[0])  # warm-up: first calls allocate and pack weights
    t0, load_before = time.time(), os.getloadavg()[0]
    for rnd in range(args.rounds):
        for p_index, (pname, prompt) in enumerate(prompts.items()):
            shift = (rnd * len(prompts) + p_index) % len(configs)
            for config in configs[shift:] + configs[:shift]:
                if config == "alone":
                    r = run_alone(pair, prompt, args.new_tokens)
                else:
                    r = run_pair(pair, prompt, args.new_tokens, int(config[2:]))
                runs.append({"round": rnd, "prompt": pname, "config": config, **r})
    wall = time.time() - t0

    alone = {(r["round"], r["prompt"]): r for r in runs if r["config"] == "alone"}
    runtime = pair.pair["runtime"]
    print(f"\n{runtime} pair {args.pair}: target {pair.pair['target']['package']}, draft {pair.pair['draft']['package']}; "
          f"{len(prompts)} prompts x {args.rounds} rounds, {args.new_tokens} new tokens, {args.threads} threads, {wall:.0f} s, "
          f"1-minute load {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print("| config | acceptance | tokens per target call | decode tok/s (median, min-max) | speed-up vs target alone "
          "(median of per-run ratios, min-max) | greedy equal to target alone |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for config in configs:
        mine = [r for r in runs if r["config"] == config]
        speeds = [r["decode_tok_s"] for r in mine]
        ratios = [r["decode_tok_s"] / alone[(r["round"], r["prompt"])]["decode_tok_s"] for r in mine]
        equal = sum(r["tokens"] == alone[(r["round"], r["prompt"])]["tokens"] for r in mine)
        for r in mine:
            ref = alone[(r["round"], r["prompt"])]["tokens"]
            if r["tokens"] != ref:
                at = next(i for i, (a, b) in enumerate(zip(r["tokens"], ref)) if a != b)
                print(f"  note: {config} {r['prompt']} round {r['round']}: differs from the target alone at token {at}")
        if config == "alone":
            acc = "-"
        else:
            acc = f"{sum(r['accepted'] for r in mine) / max(1, sum(r['proposed'] for r in mine)):.1%}"
        tpc = statistics.median(r["tokens_per_target_call"] for r in mine)
        summary[config] = {"acceptance": acc, "median_tok_s": statistics.median(speeds),
                           "median_speedup": statistics.median(ratios)}
        print(f"| {config} | {acc} | {tpc:.2f} | {statistics.median(speeds):.1f} ({min(speeds):.1f}-{max(speeds):.1f}) "
              f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | {equal}/{len(mine)} |")
    for pname in prompts:
        rates = []
        for config in configs[1:]:
            mine = [r for r in runs if r["prompt"] == pname and r["config"] == config]
            rates.append(f"{config} {sum(r['accepted'] for r in mine) / max(1, sum(r['proposed'] for r in mine)):.0%}")
        print(f"acceptance on {pname}: {', '.join(rates)}")
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        args.json.write_text(json.dumps({"pair": pair.pair, "commit": commit, "machine": platform.machine(),
                                         "threads": args.threads, "load": os.getloadavg(), "summary": summary, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
