"""Under load: every runtime, ours and the peers', quiet and with one core held busy, in one interleaved run.

    flock /work/bench.lock python benchmarks/contention.py --model smollm2-135m-instruct --rounds 3 \\
        --new-tokens 64 --out /work/bench-pos --json benchmarks/results/contention_smollm2.json

Why one run and not four: running the quiet and the busy condition (and each thread count) as separate
side_by_side.py runs lets drift of a shared box land on one condition only. Here every round visits every
(threads, condition) cell, the order of cells and of configurations reversed every other round, so the
busy/quiet ratio compares numbers taken minutes apart, not runs apart. Ours and its peer always get the same
thread count in the same cell.

Intra-op spinning is not a setting here: onnxruntime-genai's genai_config has no key for it (an overlay with
`config_entries` is refused as an unknown value), so it cannot be set the same way for our ONNX package and the
peer's in the generator both run in; the busy process (`while True: pass` pinned to the last CPU, side_by_side's
busy_core) is started for each busy cell and killed after it, nothing is left running.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from side_by_side import busy_core, build_peer, export_package, prompt_ids, run_in_fresh_process  # noqa: E402

from elmexport.models.config import get_preset  # noqa: E402

CONFIGS = ["peer-a", "onnx:int4", "peer-b", "executorch:8da4w"]
RUNTIME = {"peer-a": "onnxruntime-genai", "onnx:int4": "onnxruntime-genai", "peer-b": "ExecuTorch",
           "executorch:8da4w": "ExecuTorch"}


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def summarize(rounds: list[dict]) -> list[dict]:
    """Per (config, threads, condition): median and min-max of decode and prefill tok/s, and busy/quiet."""
    cells: dict[tuple, dict[str, list[float]]] = {}
    for r in rounds:
        c = cells.setdefault((r["config"], r["threads"], r["condition"]), {"decode": [], "prefill": []})
        c["decode"].append(r["decode_tok_s"])
        c["prefill"].append(r["prefill_tok_s"])
    rows = []
    for (config, threads, condition), c in cells.items():
        rows.append({"config": config, "threads": threads, "condition": condition,
                     **{f"{k}_median": statistics.median(v) for k, v in c.items()},
                     **{f"{k}_min": min(v) for k, v in c.items()}, **{f"{k}_max": max(v) for k, v in c.items()}})
    med = {(r["config"], r["threads"], r["condition"]): r for r in rows}
    for r in rows:
        quiet = med.get((r["config"], r["threads"], "quiet"))
        if quiet:
            for k in ("decode", "prefill"):
                r[f"{k}_busy_over_quiet"] = (med[(r["config"], r["threads"], "busy")][f"{k}_median"]
                                             / quiet[f"{k}_median"]) if (r["config"], r["threads"], "busy") in med else None
    return rows


def most_graceful(rows: list[dict], config: str) -> int:
    """The thread count whose busy decode speed is highest: what an app that cannot know its load should pick."""
    busy = [r for r in rows if r["config"] == config and r["condition"] == "busy"]
    return max(busy, key=lambda r: r["decode_median"])["threads"]


def print_tables(rows: list[dict]) -> None:
    for runtime in ("onnxruntime-genai", "ExecuTorch"):
        print(f"\n{runtime}: tok/s median (min-max)")
        print("| config | threads | condition | decode tok/s | prefill tok/s | decode busy/quiet | prefill busy/quiet |")
        print("|---|---|---|---|---|---|---|")
        for r in sorted((r for r in rows if RUNTIME[r["config"]] == runtime),
                        key=lambda r: (CONFIGS.index(r["config"]), -r["threads"], r["condition"] != "quiet")):
            ratio = (f"{r['decode_busy_over_quiet']:.2f} | {r['prefill_busy_over_quiet']:.2f}"
                     if r["condition"] == "busy" else "- | -")
            print(f"| {r['config']} | {r['threads']} | {r['condition']} | {r['decode_median']:.1f} "
                  f"({r['decode_min']:.1f}-{r['decode_max']:.1f}) | {r['prefill_median']:.0f} "
                  f"({r['prefill_min']:.0f}-{r['prefill_max']:.0f}) | {ratio} |")
        for config in (c for c in CONFIGS if RUNTIME[c] == runtime):
            if any(r["config"] == config and r["condition"] == "busy" for r in rows):
                print(f"  {config}: fastest with a core busy at {most_graceful(rows, config)} thread(s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--threads", default="1,2", help="thread counts to compare, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--out", default="dist/bench", help="package folder (reused when its build records exist)")
    ap.add_argument("--json", help="write every round here")
    args = ap.parse_args()

    cfg = get_preset(args.model)
    out = Path(args.out) / args.model
    configs = args.configs.split(",")
    paths = {}
    for name in configs:
        if name.startswith("peer-"):
            paths[name] = build_peer(name, out / name)["path"]
        else:
            target, quant = name.split(":")
            paths[name] = export_package(target, quant, ["--model", args.model], out / f"{target}-{quant}")["path"]
    prompt = prompt_ids(cfg, False, args.prompt_tokens)
    cells = [(t, c) for t in (int(x) for x in args.threads.split(",")) for c in ("quiet", "busy")]
    load_before = loadavg()
    started = time.strftime("%H:%M:%S", time.gmtime())
    print(f"start {started} UTC, load {load_before:.2f}", flush=True)
    rounds = []
    for r in range(args.rounds):
        for threads, condition in (cells if r % 2 == 0 else cells[::-1]):
            with busy_core(condition == "busy"):
                for name in (configs if r % 2 == 0 else configs[::-1]):
                    spec = {"name": name, "path": paths[name], "preset": args.model, "random_weights": False,
                            "own_runners": False, "prompt": prompt, "new_tokens": args.new_tokens, "threads": threads}
                    res = run_in_fresh_process(spec)
                    rounds.append({"round": r + 1, "config": name, "threads": threads, "condition": condition,
                                   "decode_tok_s": res["decode_tok_s"], "prefill_tok_s": res["prefill_tok_s"],
                                   "ttft_ms": res["ttft_ms"], "new_tokens": len(res["tokens"])})
        print(f"round {r + 1}/{args.rounds} done {time.strftime('%H:%M:%S', time.gmtime())}, load {loadavg():.2f}",
              flush=True)
    load_after = loadavg()
    print(f"end {time.strftime('%H:%M:%S', time.gmtime())} UTC, load {load_after:.2f}")
    rows = summarize(rounds)
    print_tables(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": args.model, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
            "started_utc": started, "load_before": load_before, "load_after": load_after,
            "spinning": "onnxruntime-genai default (no genai_config key for it)",
            "rounds": rounds, "summary": rows}, indent=2))


if __name__ == "__main__":
    main()
