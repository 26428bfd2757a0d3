"""Decode speed of an OpenELM model (random weights) in onnxruntime, fp32 and int4, vs the PyTorch eager model.

    python benchmarks/onnx_speed.py                      # OpenELM-270M, 2 threads, 3 interleaved rounds
    python benchmarks/onnx_speed.py --size 270M --threads 2 --rounds 5 --decode-tokens 64 --workdir /tmp/onnx_bench

All runners go through the same Runner protocol (prefill the prompt, then one token per call, greedy) in the same
process with the same thread count. The box's memory bandwidth drifts and other jobs share its cores, so the
runners are interleaved round by round and the table shows medians with min-max; the speed-up is computed per
round (same minute for both runners) and its median is reported. Packages are exported once into --workdir
and reused while their manifest matches (model, quant, context, accuracy level).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="270M", help="OpenELM size (default 270M)")
    p.add_argument("--context", type=int, default=None, help="KV-cache length (default: the model's, 2048)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--accuracy-level", type=int, default=4, help="MatMulNBits accuracy level of the int4 export")
    p.add_argument("--quants", default="none,int4", help="ONNX packages to measure (comma-separated)")
    p.add_argument("--workdir", default="/tmp/elmexport-onnx-bench", help="where the packages are exported/reused")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args(argv)


def package(spec_kwargs: dict, quant: str, accuracy_level: int, workdir: Path) -> Path:
    """Export (or reuse) one ONNX package through the target module, exactly as `elmexport onnx` does."""
    from elmexport.targets import onnx as onnx_target

    from elmexport.package import read_manifest
    from elmexport.pipeline import build_ir
    from elmexport.weights.spec import ModelSpec

    spec = ModelSpec(**spec_kwargs)
    out = workdir / f"{spec.preset_name()}-ctx{spec.context or 'default'}-{quant}-acc{accuracy_level}"
    if (out / "manifest.json").exists():
        m = read_manifest(out)
        if m["quantization"]["name"] == quant and m["onnx"]["matmul_nbits_accuracy_level"] == accuracy_level:
            return out
    args = argparse.Namespace(quant=quant, passes=None, accuracy_level=accuracy_level)
    onnx_target.check_arguments(args)

    def log(*a):
        print("  ", *a, file=sys.stderr)

    compiled = build_ir(spec, quant, log=log)
    onnx_target.export(compiled, args, out, log)
    return out


def decode_speed(runner, prompt: list[int], n: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) for a prompt then n greedy single-token steps."""
    runner.reset()
    t0 = time.perf_counter()
    logits = runner.forward(prompt, 0)
    t1 = time.perf_counter()
    pos = len(prompt)
    for _ in range(n):
        token = int(np.argmax(logits[-1]))
        logits = runner.forward([token], pos)
        pos += 1
    t2 = time.perf_counter()
    return len(prompt) / (t1 - t0), n / (t2 - t1)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from elmexport.validation.eager import EagerRunner
    from elmexport.validation.onnx_runner import open_runner

    from elmexport.package import read_manifest
    from elmexport.weights.sources import load_model
    from elmexport.weights.spec import ModelSpec

    spec_kwargs = {"size": args.size, "random_weights": True, "seed": 0, "context": args.context,
                   "tokenizer_mode": "skip"}
    workdir = Path(args.workdir)
    quants = [q for q in args.quants.split(",") if q]
    packages = {q: package(spec_kwargs, q, args.accuracy_level, workdir) for q in quants}
    loaded = load_model(ModelSpec(**spec_kwargs), log=lambda *a: None)
    runners = {"eager fp32 (PyTorch)": EagerRunner(loaded.model)}
    sizes = {}
    for q, path in packages.items():
        m = read_manifest(path)
        runners[f"onnxruntime {'fp32' if q == 'none' else q}"] = open_runner(path, m, threads=args.threads)
        sizes[q] = m["size_bytes"]
    prompt = [int(t) for t in np.random.default_rng(0).integers(3, loaded.cfg.vocab_size, args.prompt_tokens)]
    for r in runners.values():  # warm-up: first-call allocations and prepacking out of the timings
        decode_speed(r, prompt[:4], 2)
    results = {name: {"prefill": [], "decode": []} for name in runners}
    for rnd in range(args.rounds):
        for name, r in runners.items():
            pre, dec = decode_speed(r, prompt, args.decode_tokens)
            results[name]["prefill"].append(pre)
            results[name]["decode"].append(dec)
            print(f"round {rnd + 1}: {name:28s} prefill {pre:7.1f} tok/s  decode {dec:6.1f} tok/s", file=sys.stderr)
    base = results["eager fp32 (PyTorch)"]["decode"]
    print(f"\nOpenELM-{args.size} (random weights), context {loaded.model.context}, {args.threads} threads, "
          f"prompt {args.prompt_tokens}, {args.decode_tokens} decode steps, {args.rounds} rounds (median, min-max)")
    print(f"{'runner':28s} {'decode tok/s':>22s} {'prefill tok/s':>22s} {'x eager':>8s} {'MB on disk':>11s}")
    summary = {}
    for name, res in results.items():
        dec, pre = res["decode"], res["prefill"]
        speedup = statistics.median(d / b for d, b in zip(dec, base))
        q = next((q for q in packages if name.endswith("fp32" if q == "none" else q)), None)
        mb = f"{sizes[q] / 1e6:.1f}" if q else "-"
        print(f"{name:28s} {_fmt(dec):>22s} {_fmt(pre):>22s} {speedup:8.2f} {mb:>11s}")
        summary[name] = {"decode_tok_s": dec, "prefill_tok_s": pre, "speedup_vs_eager_median": speedup,
                         "size_bytes": sizes.get(q) if q else None}
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": summary}, indent=2))
    return 0


def _fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


if __name__ == "__main__":
    sys.exit(main())
