"""Decode speed: ExecuTorch packages (fp32, 8da4w) vs the eager PyTorch model, same model, same run.

    python benchmarks/executorch_speed.py --size 270M [--context 2048] [--steps 64] [--rounds 5] [--out DIR]

Exports `elmexport executorch --size 270M --random-weights --quant {none,8da4w}` into --out (reused when a
package with the same settings is already there), then measures single-token decode after a 16-token prefill, in
interleaved rounds (eager, fp32 .pte, 8da4w .pte, eager, ...) because this machine's memory bandwidth drifts
from minute to minute: medians with min-max. Every runner is warmed up first (the eager model's first decode
steps pay for page faults on freshly allocated weights). Random weights: speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

PREFILL = 16


def export(size: str, quant: str, context: int | None, out: Path) -> float:
    """Export (or reuse) one package; returns the export's wall time in s (0 when reused)."""
    from elmexport.manifest import read_manifest

    if (out / "manifest.json").exists():
        m = read_manifest(out)
        if m["quantization"]["name"] == quant and (context is None or m["context_length"] == context):
            return 0.0
    cmd = [sys.executable, "-m", "elmexport.cli", "executorch", "--size", size, "--random-weights",
           "--quant", quant, "--out", str(out)] + (["--context", str(context)] if context else [])
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        sys.exit(f"export failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def decode_rate(runner, steps: int) -> float:
    runner.reset()
    runner.forward(list(range(100, 100 + PREFILL)), 0)
    t0 = time.perf_counter()
    for i in range(steps):
        runner.forward([7 + i], PREFILL + i)
    return steps / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="270M")
    p.add_argument("--context", type=int, help="KV-cache length (default: the model's, 2048 for OpenELM)")
    p.add_argument("--steps", type=int, default=64, help="decode steps per measurement")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("dist/bench-executorch"))
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    import torch
    from elmexport.validation.eager import EagerRunner
    from elmexport.validation.runners import open_package_runner

    from elmexport.weights.sources import load_model
    from elmexport.weights.spec import ModelSpec

    export_seconds = {}
    for quant in ("none", "8da4w"):
        export_seconds[quant] = round(export(args.size, quant, args.context, args.out / quant), 1)
        print(f"package {args.out / quant}: " + (f"exported in {export_seconds[quant]:.0f} s"
                                                 if export_seconds[quant] else "reused"), file=sys.stderr)
    loaded = load_model(ModelSpec(size=args.size, random_weights=True, context=args.context, tokenizer_mode="skip"),
                        log=lambda *a: None)
    runners = {"eager fp32": EagerRunner(loaded.model),
               "executorch fp32": open_package_runner(args.out / "none"),
               "executorch 8da4w": open_package_runner(args.out / "8da4w")}
    with torch.inference_mode():
        for runner in runners.values():  # warm-up: page faults, allocator, XNNPACK workspace
            decode_rate(runner, 16)
        rates = {name: [] for name in runners}
        for r in range(args.rounds):
            for name, runner in runners.items():
                rates[name].append(decode_rate(runner, args.steps))
            print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in rates.items()), file=sys.stderr)
    base = statistics.median(rates["eager fp32"])
    results = {
        "model": loaded.cfg.name, "context": loaded.model.context, "decode_steps": args.steps, "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(), "export_seconds": export_seconds,
        "decode_tokens_per_s": {n: {"median": round(statistics.median(v), 1), "min": round(min(v), 1),
                                    "max": round(max(v), 1), "vs_eager_fp32": round(statistics.median(v) / base, 2)}
                                for n, v in rates.items()},
    }
    print(f"{'runner':<20} {'decode tok/s (median, min-max)':<32} vs eager fp32")
    for n, r in results["decode_tokens_per_s"].items():
        print(f"{n:<20} {r['median']:>7.1f} ({r['min']:.1f}-{r['max']:.1f}){'':<16} {r['vs_eager_fp32']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
